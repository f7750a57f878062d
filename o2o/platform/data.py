"""Datasets: one canonical transition table, the readers that fill it, and the checks on it.

Every source o2o reads — a local Minari dataset, a D4RL HDF5 file (read with h5py: the `d4rl`
package cannot be installed beside Gymnasium 1.x), or Parquet — becomes the same table of
transitions in RLlib's column names (`CANONICAL_COLUMNS`), so RLlib's offline reader reads it
as is and every algorithm sees one layout. `resolve_dataset` converts a source once into a
Parquet file in o2o's cache, named by the content hash (the hash a checkpoint records, so a run
refuses to continue on different data), and reuses it while the source is unchanged.

Bad data fails here, before any training starts, with one `DatasetError` line naming the source
and the problem: missing keys or columns, unreadable files, shapes that disagree with the
environment's spaces, NaN/inf, empty tables, actions outside the action bounds.

Normalized scores use D4RL's reference returns: 100 · (R − min) / (max − min).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from o2o.platform.actions import action_bounds

CANONICAL_COLUMNS: tuple[str, ...] = ("obs", "actions", "rewards", "new_obs", "terminateds", "truncateds", "eps_id", "t")
"""RLlib's column names, in the order of the table (and of the content hash)."""

_VECTOR_COLUMNS = ("obs", "actions", "new_obs")
_FLOAT_COLUMNS = ("obs", "actions", "rewards", "new_obs")
_DTYPES: dict[str, np.dtype] = {
    "obs": np.dtype(np.float32),
    "actions": np.dtype(np.float32),
    "rewards": np.dtype(np.float32),
    "new_obs": np.dtype(np.float32),
    "terminateds": np.dtype(np.bool_),
    "truncateds": np.dtype(np.bool_),
    "eps_id": np.dtype(np.int64),
    "t": np.dtype(np.int64),
}
_D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
ACTION_TOLERANCE = 1e-4
"""How far an action may lie outside the action space's bounds (float round-off of clipping)."""


class DatasetError(ValueError):
    """A dataset o2o cannot use; the message is one line naming the source and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _error(source: object, problem: str) -> DatasetError:
    return DatasetError(f"dataset {source}: {problem}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Transitions:
    """The canonical table as numpy arrays, one row per transition.

    `truncateds` is True on the last transition of an episode cut by a time limit or by the end
    of the data; `terminateds` on the last transition of an episode that reached a terminal state.
    """

    obs: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    new_obs: np.ndarray  # (N, obs_dim) float32
    terminateds: np.ndarray  # (N,) bool
    truncateds: np.ndarray  # (N,) bool
    eps_id: np.ndarray  # (N,) int64
    t: np.ndarray  # (N,) int64, step index within the episode

    def __len__(self) -> int:
        return int(len(self.rewards))

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def to_table(self) -> pa.Table:
        """The canonical Arrow table: fixed-size float32 lists for obs, new_obs and actions."""
        columns = {}
        for name in CANONICAL_COLUMNS:
            values = np.ascontiguousarray(getattr(self, name), dtype=_DTYPES[name])
            if name in _VECTOR_COLUMNS:
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
            else:
                columns[name] = pa.array(values)
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table, source: str) -> Transitions:
        """Arrays from an Arrow table in the canonical schema (lists of any float width are cast).

        Raises DatasetError on missing columns, nulls, ragged vectors or non-numeric types.
        """
        missing = [name for name in CANONICAL_COLUMNS if name not in table.column_names]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            raise _error(source, f"missing column(s) {names} (has: {', '.join(table.column_names) or 'none'})")
        return cls(**{name: _column_to_numpy(table.column(name), name, source) for name in CANONICAL_COLUMNS})

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (rows grouped by eps_id), in order of first appearance."""
        ids, first, inverse = np.unique(self.eps_id, return_index=True, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=self.rewards.astype(np.float64), minlength=len(ids))
        return sums[np.argsort(first)]

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """Discounted Monte-Carlo return from each transition to the end of its episode.

        Cal-QL calibrates its Q-values against this. Like Cal-QL's reference code it sums the
        observed rewards only: an episode cut by a time limit is not bootstrapped. Rows are
        ordered by (eps_id, t) internally; the result is aligned with the table's rows.
        """
        n = len(self)
        order = np.lexsort((self.t, self.eps_id))
        eps = self.eps_id[order]
        rewards = self.rewards[order].astype(np.float64)
        last = np.r_[eps[1:] != eps[:-1], True] if n else np.zeros(0, bool)
        episode = np.r_[0, np.cumsum(last[:-1])] if n else np.zeros(0, np.int64)
        steps_to_end = np.flatnonzero(last)[episode] - np.arange(n)
        # One vectorized step per position-from-the-end, across all episodes at once.
        by_steps = np.argsort(steps_to_end, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(steps_to_end))]
        returns = np.empty(n, np.float64)
        for k in range(len(bounds) - 1):
            rows = by_steps[bounds[k] : bounds[k + 1]]
            returns[rows] = rewards[rows] if k == 0 else rewards[rows] + gamma * returns[rows + 1]
        out = np.empty(n, np.float32)
        out[order] = returns
        return out


def _column_to_numpy(column: pa.ChunkedArray, name: str, source: str) -> np.ndarray:
    """One canonical column as a numpy array of its canonical dtype."""
    array = column.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):  # e.g. Ray Data's tensor columns
        array = array.storage
    if array.null_count:
        raise _error(source, f"column {name!r} has {array.null_count} null value(s)")
    n = len(array)
    if name in _VECTOR_COLUMNS:
        if pa.types.is_fixed_size_list(array.type):
            width = array.type.list_size
        elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
            width = int(lengths[0]) if n else 0
            if n and not (lengths == width).all():
                row = int(np.flatnonzero(lengths != width)[0])
                raise _error(source, f"column {name!r} has vectors of different lengths ({width} at row 0, {lengths[row]} at row {row})")
        else:
            raise _error(source, f"column {name!r} has type {array.type}; expected a fixed-size list of float32")
        values = array.flatten()
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise _error(source, f"column {name!r} holds {values.type}; expected float32")
        return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, width)
    expected = _DTYPES[name]
    numeric = pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)
    if expected == np.float32:
        numeric = numeric or pa.types.is_floating(array.type)
    if not numeric:
        raise _error(source, f"column {name!r} has type {array.type}; expected {expected}")
    return array.to_numpy(zero_copy_only=False).astype(expected, copy=False)


def _concat(parts: list[Transitions], sources: list[str], source: str) -> Transitions:
    """Rows of several tables in order; their vector widths must agree."""
    for part, part_source in zip(parts[1:], sources[1:]):
        if (part.obs_dim, part.act_dim) != (parts[0].obs_dim, parts[0].act_dim):
            raise _error(
                source,
                f"{part_source} has obs/action dims {part.obs_dim}/{part.act_dim}, "
                f"{sources[0]} has {parts[0].obs_dim}/{parts[0].act_dim}",
            )
    return Transitions(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in CANONICAL_COLUMNS})


# --- readers -----------------------------------------------------------------------------------


def read_minari(dataset_id: str) -> Transitions:
    """All episodes of a local Minari dataset (Box observations and actions) as transitions.

    Minari stores T+1 observations per episode: obs are the first T, new_obs the last T. An
    episode that ends neither terminated nor truncated (cut by the end of collection) is marked
    truncated on its last step. eps_id is Minari's episode id.
    """
    source = f"minari:{dataset_id}"
    return _minari_transitions(_load_minari(dataset_id, source), source)


def _minari_transitions(dataset: Any, source: str, episodes: Iterable[Any] | None = None) -> Transitions:
    """The transitions of a loaded MinariDataset, read from its file or, given `episodes`, from
    those (the dataset's episodes in memory, e.g. Minari's EpisodeBuffers it was written from)."""
    for role, space in (("observation", dataset.observation_space), ("action", dataset.action_space)):
        if not isinstance(space, gymnasium.spaces.Box):
            raise _error(source, f"{role} space {space} is not a Box; o2o reads flat continuous spaces")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in CANONICAL_COLUMNS}
    try:
        for episode in dataset.iterate_episodes() if episodes is None else episodes:
            steps = len(episode.rewards)
            observations = np.asarray(episode.observations, np.float32).reshape(steps + 1, -1)
            truncations = np.asarray(episode.truncations, bool).copy()
            terminations = np.asarray(episode.terminations, bool)
            if steps and not (terminations[-1] or truncations[-1]):
                truncations[-1] = True
            columns["obs"].append(observations[:-1])
            columns["new_obs"].append(observations[1:])
            columns["actions"].append(np.asarray(episode.actions, np.float32).reshape(steps, -1))
            columns["rewards"].append(np.asarray(episode.rewards, np.float32).reshape(steps))
            columns["terminateds"].append(terminations)
            columns["truncateds"].append(truncations)
            columns["eps_id"].append(np.full(steps, int(episode.id), np.int64))
            columns["t"].append(np.arange(steps, dtype=np.int64))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise _error(source, f"cannot read its episodes ({_first_line(exc)})") from None
    if not columns["rewards"]:
        obs_dim = int(np.prod(dataset.observation_space.shape))
        act_dim = int(np.prod(dataset.action_space.shape))
        return _empty(obs_dim, act_dim)
    return Transitions(**{name: np.concatenate(parts).astype(_DTYPES[name], copy=False) for name, parts in columns.items()})


def _load_minari(dataset_id: str, source: str) -> Any:
    """minari.load_dataset with its failures as DatasetError."""
    import minari

    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        root = minari.storage.get_dataset_path()
        raise _error(source, f"no local Minari dataset {dataset_id} under {root}") from None
    except (OSError, KeyError, ValueError, TypeError, AssertionError) as exc:
        raise _error(source, f"cannot read the Minari dataset {dataset_id} ({_first_line(exc)})") from None


def _empty(obs_dim: int, act_dim: int) -> Transitions:
    vectors = {"obs": obs_dim, "actions": act_dim, "new_obs": obs_dim}
    return Transitions(
        **{name: np.zeros((0, vectors[name]) if name in vectors else 0, _DTYPES[name]) for name in CANONICAL_COLUMNS}
    )


def read_d4rl_hdf5(path: str | Path) -> Transitions:
    """A D4RL HDF5 file (keys observations, actions, rewards, terminals, timeouts; optional
    next_observations) as transitions; episodes end at rows where terminals or timeouts is set.

    With next_observations every row is kept. Without it, new_obs is the next row's observation
    within the episode, and an episode's last row is handled as D4RL's `qlearning_dataset`
    (used by CORL) does: a row ending in a timeout — or the file's last row, which has no
    successor either — is dropped, since its next observation was never recorded, and the row
    before it becomes the episode's truncated last step. A terminal row is kept (its reward and
    `terminateds` are the signal); its new_obs is a copy of its obs, a placeholder that
    bootstrapping never reads because the transition is terminal. Where a row is both terminal
    and a timeout, terminal wins.
    """
    source = str(path)
    try:
        import h5py

        with h5py.File(path, "r") as file:
            missing = [key for key in _D4RL_KEYS if key not in file]
            if missing:
                raise _error(source, f"missing key(s) {', '.join(repr(k) for k in missing)}")
            keys = [*_D4RL_KEYS, *(["next_observations"] if "next_observations" in file else [])]
            raw = {}
            for key in keys:
                if not isinstance(file[key], h5py.Dataset):
                    raise _error(source, f"key {key!r} is a group, not an array")
                raw[key] = file[key][()]
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise _error(source, f"not a readable HDF5 file ({_first_line(exc)})") from None
    n = len(raw["observations"])
    for key, value in raw.items():
        if np.ndim(value) == 0 or len(value) != n:
            rows = "a scalar" if np.ndim(value) == 0 else f"{len(value)} rows"
            raise _error(source, f"key {key!r} has {rows}; 'observations' has {n}")
    obs = np.asarray(raw["observations"], np.float32).reshape(n, -1)
    actions = np.asarray(raw["actions"], np.float32).reshape(n, -1)
    rewards = _flat(raw["rewards"], "rewards", source).astype(np.float32)
    terminals = _flat(raw["terminals"], "terminals", source).astype(bool)
    timeouts = _flat(raw["timeouts"], "timeouts", source).astype(bool) & ~terminals
    if n == 0:
        return _empty(obs.shape[1], actions.shape[1])
    ends = terminals | timeouts
    ends[-1] = True
    eps_id = np.r_[0, np.cumsum(ends[:-1])].astype(np.int64)
    t = np.arange(n) - np.flatnonzero(np.r_[True, ends[:-1]])[eps_id]
    if "next_observations" in raw:
        new_obs = np.asarray(raw["next_observations"], np.float32).reshape(n, -1)
        return Transitions(obs, actions, rewards, new_obs, terminals, ends & ~terminals, eps_id, t)
    new_obs = obs.copy()  # terminal rows keep this placeholder; every other kept row is overwritten
    inner = np.flatnonzero(~ends)
    new_obs[inner] = obs[inner + 1]
    cut = np.flatnonzero(ends & ~terminals)
    truncateds = np.zeros(n, bool)
    truncateds[cut[t[cut] > 0] - 1] = True
    keep = ~(ends & ~terminals)
    renumbered = np.unique(eps_id[keep], return_inverse=True)[1].reshape(-1).astype(np.int64)
    return Transitions(obs[keep], actions[keep], rewards[keep], new_obs[keep], terminals[keep], truncateds[keep], renumbered, t[keep])


def _flat(value: np.ndarray, key: str, source: str) -> np.ndarray:
    """A per-row scalar key as (N,), accepting D4RL's occasional (N, 1)."""
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
        return value[:, 0]
    if value.ndim != 1:
        raise _error(source, f"key {key!r} has shape {value.shape}; expected ({len(value)},)")
    return value


def read_parquet(path: str | Path) -> Transitions:
    """A canonical Parquet file, or every .parquet file under a directory (sorted by path)."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        files = _parquet_files(path)
        if not files:
            raise _error(source, "directory holds no .parquet files")
    else:
        files = [path]
    parts = []
    for file in files:
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise _error(file, f"not a readable Parquet file ({_first_line(exc)})") from None
        parts.append(Transitions.from_table(table, str(file)))
    return parts[0] if len(parts) == 1 else _concat(parts, [str(f) for f in files], source)


def _parquet_files(directory: Path) -> list[Path]:
    """The Parquet files under a directory, sorted, without hidden or temporary ones."""
    return sorted(f for f in directory.rglob("*.parquet") if not f.name.startswith((".", "_")))


def write_parquet(data: Transitions, path: str | Path) -> None:
    """Write the canonical table to `path` atomically (temp file in the same directory, then
    os.replace), so a reader never sees a half-written file."""
    table = data.to_table()
    _write_atomic(Path(path), lambda tmp: pq.write_table(table, tmp))


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, payload: dict) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, sort_keys=True)))


# --- validation --------------------------------------------------------------------------------


def validate(
    data: Transitions,
    observation_space: gymnasium.spaces.Box,
    action_space: gymnasium.spaces.Box,
    source: str,
) -> None:
    """Check a dataset against the environment it will train for; DatasetError on the first problem.

    Checks, in order: not empty, column shapes, obs/new_obs and action dims against the spaces,
    no NaN/inf in float columns, finite action bounds (the replay holds actions mapped from them
    into [−1, 1]), actions within them (± ACTION_TOLERANCE).
    """
    _check_content(data, source)
    obs_dim = int(np.prod(observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    for name in ("obs", "new_obs"):
        width = getattr(data, name).shape[1]
        if width != obs_dim:
            raise _error(source, f"{name} has dimension {width}, the environment's observation space {observation_space.shape} has {obs_dim}")
    if data.act_dim != act_dim:
        raise _error(source, f"actions have dimension {data.act_dim}, the environment's action space {action_space.shape} has {act_dim}")
    try:
        low, high = (b.astype(np.float64) for b in action_bounds(action_space))
    except ValueError as exc:
        raise _error(source, str(exc)) from None
    outside = (data.actions < low - ACTION_TOLERANCE) | (data.actions > high + ACTION_TOLERANCE)
    if outside.any():
        row, dim = (int(i[0]) for i in np.nonzero(outside))
        raise _error(
            source,
            f"column 'actions' row {row} dimension {dim} is {data.actions[row, dim]:.6g}, outside the "
            f"action space bounds [{low[dim]:g}, {high[dim]:g}] (tolerance {ACTION_TOLERANCE:g})",
        )


def _check_content(data: Transitions, source: str) -> None:
    """The checks that need no environment: rows, shapes, finite floats."""
    n = len(data)
    if n == 0:
        raise _error(source, "empty (0 transitions)")
    for name in CANONICAL_COLUMNS:
        column = getattr(data, name)
        expected_ndim = 2 if name in _VECTOR_COLUMNS else 1
        if column.ndim != expected_ndim or len(column) != n:
            expected = f"({n}, width)" if expected_ndim == 2 else f"({n},)"
            raise _error(source, f"column {name!r} has shape {column.shape}; expected {expected}")
    for name in _FLOAT_COLUMNS:
        column = getattr(data, name)
        finite = np.isfinite(column)
        if not finite.all():
            bad = ~finite if finite.ndim == 1 else ~finite.all(axis=1)
            row = int(np.flatnonzero(bad)[0])
            value = column[row] if column.ndim == 1 else column[row][~finite[row]][0]
            raise _error(source, f"column {name!r} has {'NaN' if np.isnan(value) else value} at row {row}")


def check_minibatch(data: Transitions, source: str, batch_size: int) -> None:
    """Refuse a dataset with fewer transitions than one minibatch of `batch_size`.

    That is the smallest dataset a learner trains on: minibatches are drawn with replacement,
    so from fewer rows every minibatch repeats transitions, and every update fits the same
    handful of rows again — the dataset cannot fill a single minibatch.
    """
    if len(data) < batch_size:
        raise _error(
            source,
            f"{len(data)} transition(s) cannot fill one minibatch (train_batch_size_per_learner="
            f"{batch_size}): every minibatch would repeat the same rows; use at least {batch_size} "
            "transitions, or a smaller train_batch_size_per_learner",
        )


MIN_RETURN_RANGE = 1e-6
"""The smallest spread of episode returns, relative to the largest |return| (at least 1),
that return-range reward scaling divides by; below it the spread is float round-off."""


def return_range(data: Transitions, source: str) -> float:
    """max − min of the dataset's episode returns, the divisor of `reward_normalization:
    return_range` (rewards × 1000 / range, IQL's locomotion setting).

    DatasetError where the returns do not vary (one episode, or all alike) beyond
    MIN_RETURN_RANGE: the scale would divide by zero, or blow rewards up by 1000 / round-off.
    """
    returns = data.episode_returns()
    spread = float(returns.max() - returns.min())
    if spread <= MIN_RETURN_RANGE * max(1.0, float(np.abs(returns).max())):
        raise _error(
            source,
            f"its episode returns do not vary (max − min = {spread:.3g} over {len(returns)} "
            "episode(s)), and reward_normalization: return_range divides rewards by that range; "
            "use a dataset whose episodes differ in return, or set reward_normalization: none",
        )
    return spread


# --- normalized scores -------------------------------------------------------------------------

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.833),
    "door": (-56.512833, 2880.569),
    "hammer": (-274.856578, 12794.135),
    "relocate": (-6.425911, 4233.878),
}
"""D4RL's (random, expert) reference returns per environment family."""


def env_family(env_id: str) -> str:
    """The environment family of a Gymnasium id: the lowercase name before the version.

    'Hopper-v5' → 'hopper', 'HalfCheetah-v5' → 'halfcheetah'; Gymnasium-Robotics names map to
    D4RL's families too: 'AntMaze_UMaze-v5' → 'antmaze', 'AdroitHandPen-v1' → 'pen'.
    """
    name = re.sub(r"-v\d+$", "", env_id.rsplit("/", 1)[-1]).lower()
    return name.split("-")[0].split("_")[0].removeprefix("adroithand")


def normalized_score(env_id: str, episode_return: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalized score, 100 · (R − min) / (max − min); ValueError for unknown families."""
    family = env_family(env_id)
    if family not in REFERENCE_RETURNS:
        raise DatasetError(f"environment {env_id!r}: no D4RL reference returns (known families: {', '.join(REFERENCE_RETURNS)})")
    low, high = REFERENCE_RETURNS[family]
    score = 100.0 * (np.asarray(episode_return, np.float64) - low) / (high - low)
    return float(score) if score.ndim == 0 else score


# --- content hash and the Parquet cache --------------------------------------------------------


def content_hash(data: Transitions) -> str:
    """sha256 over every column's dtype, shape and bytes in canonical order; 16 hex characters."""
    digest = hashlib.sha256()
    for name in CANONICAL_COLUMNS:
        column = np.ascontiguousarray(getattr(data, name), dtype=_DTYPES[name])
        digest.update(f"{name}:{column.dtype.str}:{column.shape};".encode())
        digest.update(column.data)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedDataset:
    """A source converted to the canonical Parquet in the cache, with what a run needs to know."""

    dataset_id: str  # the name the user gave, e.g. "hopper-medium"
    parquet_path: Path  # canonical Parquet file in the cache
    content_hash: str
    env_id: str | None  # from Minari metadata or a sidecar; None if unknown
    num_transitions: int
    obs_dim: int
    act_dim: int


def o2o_home() -> Path:
    """o2o's state directory: $O2O_HOME, or ~/.o2o."""
    return Path(os.environ.get("O2O_HOME") or "~/.o2o").expanduser()


def minari_id_for(alias: str) -> str:
    """The local Minari id of an o2o dataset name: 'walker2d-medium-replay' → 'o2o/walker2d/medium-replay-v0'."""
    task, _, level = alias.partition("-")
    if not task or not level or "/" in alias:
        raise DatasetError(f"dataset {alias!r}: an o2o dataset name is <task>-<level>, e.g. hopper-medium")
    return f"o2o/{task}/{level}-v0"


_MINARI_ID = re.compile(r"^[\w.-]+(/[\w.-]+)*-v\d+$")
_ALIAS = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)+$")


def resolve_dataset(
    source: str,
    check: Callable[[Transitions, str | None], None] | None = None,
    episodes: Iterable[Any] | None = None,
) -> ResolvedDataset:
    """Find a dataset, convert it once to the cache's canonical Parquet, and describe it.

    `source` is, in this order of lookup: `minari:<id>`; a local Minari id
    (`mujoco/hopper/medium-v0`) or o2o name (`hopper-medium` → `o2o/hopper/medium-v0`); a D4RL
    `.hdf5`/`.h5` file; a `.parquet` file or a directory of them. The data is checked (not
    empty, consistent shapes, finite; for Minari also against its recorded spaces) before
    anything is written. The cache (`o2o_home()/cache`) holds `<hash>.parquet` with a sidecar
    `<hash>.json`, and `index.json` maps each source's identity (path, and size/mtime of its
    files) to its hash, so an unchanged source is not read again.

    `check(data, env_id)` is the caller's own refusal (a sweep's: against the environment it
    trains for, which a Parquet or HDF5 file does not record): it runs before anything is
    written, so data it refuses never enters the cache, and again on a cached conversion, which
    is therefore never trusted without it.

    `episodes`, for a Minari source only, are its episodes as the caller has just written them
    (the dataset factory): converted from memory instead of read back from Minari's file, which
    took as long as writing it.
    """
    kind, location = _locate(source)
    key, fingerprint = _identity(kind, location)
    cache = o2o_home() / "cache"
    entry = _read_index(cache).get(key)
    if entry is not None and entry.get("fingerprint") == fingerprint and _cached(cache, entry):
        resolved = _resolved(source, cache, entry)
        if check is not None:
            check(read_parquet(resolved.parquet_path), resolved.env_id)
        return resolved

    env_id = None
    if kind == "minari":
        dataset = _load_minari(location, source)
        data = _minari_transitions(dataset, source, episodes)
        env_id = dataset.env_spec.id if dataset.env_spec is not None else None
        validate(data, dataset.observation_space, dataset.action_space, source)
    else:
        path = Path(location)
        data = read_d4rl_hdf5(path) if kind == "hdf5" else read_parquet(path)
        _check_content(data, source)
        if kind == "parquet" and path.with_suffix(".json").is_file():
            env_id = _sidecar_env_id(path.with_suffix(".json"))
    if check is not None:
        check(data, env_id)

    digest = content_hash(data)
    parquet, sidecar = cache / f"{digest}.parquet", cache / f"{digest}.json"
    fresh = not parquet.is_file()
    if fresh:
        write_parquet(data, parquet)
    entry = {
        "fingerprint": fingerprint,
        "content_hash": digest,
        "parquet_bytes": parquet.stat().st_size,
        "dataset_id": source,
        "env_id": env_id,
        "num_transitions": len(data),
        "obs_dim": data.obs_dim,
        "act_dim": data.act_dim,
    }
    # The sidecar describes the content's first conversion, and gains an env id once one is known.
    if fresh or not sidecar.is_file() or (env_id is not None and _sidecar_env_id(sidecar) is None):
        described = ("dataset_id", "env_id", "num_transitions", "obs_dim", "act_dim", "content_hash")
        _write_json(sidecar, {**{k: entry[k] for k in described}, "source": key})
    index = _read_index(cache)  # re-read: another process may have added entries meanwhile
    index[key] = entry
    _write_json(cache / "index.json", index)
    return _resolved(source, cache, entry)


def _locate(source: str) -> tuple[str, str]:
    """(kind, location): ("minari", id), ("hdf5", absolute path) or ("parquet", absolute path)."""
    import minari

    explicit = source.startswith("minari:")
    name = source.removeprefix("minari:")
    is_alias = not explicit and bool(_ALIAS.match(name))
    minari_id = None
    if is_alias:
        minari_id = minari_id_for(name)
    elif explicit or _MINARI_ID.match(name):
        minari_id = name
    if minari_id is not None and (minari.storage.get_dataset_path(minari_id) / "data").is_dir():
        return "minari", minari_id
    path = Path(source).expanduser()
    if not explicit and path.exists():
        suffix = path.suffix.lower()
        if path.is_dir() or suffix == ".parquet":
            return "parquet", str(path.resolve())
        if suffix in (".hdf5", ".h5"):
            return "hdf5", str(path.resolve())
        raise _error(source, f"unsupported file type {suffix or '(no suffix)'!r}; expected a D4RL .hdf5/.h5 file or .parquet")
    root = minari.storage.get_dataset_path()
    if is_alias:
        raise DatasetError(
            f"dataset {source!r}: not found (looked for a local Minari dataset {minari_id} under {root}, "
            f"a file, a directory); make it with `o2o datasets make {source}`"
        )
    if minari_id is not None:
        raise DatasetError(f"dataset {source!r}: not found (no local Minari dataset {minari_id} under {root}, no file or directory of that name)")
    raise DatasetError(f"dataset {source!r}: not found (no such file or directory, and not a Minari id or o2o dataset name)")


def _identity(kind: str, location: str) -> tuple[str, str]:
    """(cache key, fingerprint): the source's place, and a digest of its files' sizes and mtimes."""
    if kind == "minari":
        import minari

        root = minari.storage.get_dataset_path(location).resolve()
        key, files = f"minari:{root}", sorted(p for p in (root / "data").rglob("*") if p.is_file())
    else:
        path = Path(location)
        key = f"{kind}:{path}"
        files = _parquet_files(path) if path.is_dir() else [path]
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return key, hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def _read_index(cache: Path) -> dict[str, Any]:
    """The cache index; a missing or unreadable one is empty (the cache rebuilds itself)."""
    try:
        index = json.loads((cache / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _cached(cache: Path, entry: dict[str, Any]) -> bool:
    parquet = cache / f"{entry.get('content_hash')}.parquet"
    return parquet.is_file() and parquet.stat().st_size == entry.get("parquet_bytes")


def _resolved(source: str, cache: Path, entry: dict[str, Any]) -> ResolvedDataset:
    return ResolvedDataset(
        dataset_id=source,
        parquet_path=cache / f"{entry['content_hash']}.parquet",
        content_hash=entry["content_hash"],
        env_id=entry["env_id"],
        num_transitions=int(entry["num_transitions"]),
        obs_dim=int(entry["obs_dim"]),
        act_dim=int(entry["act_dim"]),
    )


def _sidecar_env_id(path: Path) -> str | None:
    """The env id a sidecar JSON beside a Parquet file records (the cache writes one)."""
    try:
        env_id = json.loads(path.read_text()).get("env_id")
    except (OSError, ValueError, AttributeError):
        return None
    return env_id if isinstance(env_id, str) else None
