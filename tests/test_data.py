"""The canonical transition table: readers (Minari, D4RL HDF5, Parquet), the cache, validation,
normalized scores — on real files made from a random policy in Hopper-v5."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pyarrow as pa
import pytest

from o2o.platform.data import (
    CANONICAL_COLUMNS,
    DatasetError,
    Transitions,
    content_hash,
    env_family,
    minari_id_for,
    normalized_score,
    read_d4rl_hdf5,
    read_minari,
    read_parquet,
    resolve_dataset,
    validate,
    write_parquet,
)

MAX_STEPS = 30  # short episodes: with these seeds some fall (terminated), some hit the limit


def _rollout(env: gym.Env, episodes: int = 6) -> Transitions:
    """Random-policy episodes as canonical transitions (the ground truth every reader must match)."""
    env.action_space.seed(0)
    cols: dict[str, list] = {name: [] for name in CANONICAL_COLUMNS}
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        for t in range(MAX_STEPS):
            action = env.action_space.sample()
            new_obs, reward, terminated, truncated, _ = env.step(action)
            for name, value in zip(CANONICAL_COLUMNS, (obs, action, reward, new_obs, terminated, truncated, ep, t)):
                cols[name].append(value)
            obs = new_obs
            if terminated or truncated:
                break
    return Transitions(
        obs=np.asarray(cols["obs"], np.float32),
        actions=np.asarray(cols["actions"], np.float32),
        rewards=np.asarray(cols["rewards"], np.float32),
        new_obs=np.asarray(cols["new_obs"], np.float32),
        terminateds=np.asarray(cols["terminateds"], bool),
        truncateds=np.asarray(cols["truncateds"], bool),
        eps_id=np.asarray(cols["eps_id"], np.int64),
        t=np.asarray(cols["t"], np.int64),
    )


@pytest.fixture(scope="module")
def hopper() -> Transitions:
    data = _rollout(gym.make("Hopper-v5", max_episode_steps=MAX_STEPS))
    assert data.terminateds.any() and data.truncateds.any()
    return data


@pytest.fixture(scope="module")
def spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    env = gym.make("Hopper-v5")
    return env.observation_space, env.action_space


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh o2o home and Minari root per test; returns the cache directory."""
    monkeypatch.setenv("O2O_HOME", str(tmp_path / "o2o"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "o2o" / "cache"


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def _assert_equal(a: Transitions, b: Transitions) -> None:
    for name in CANONICAL_COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def _write_d4rl(path: Path, data: Transitions, next_observations: bool = True, drop: str | None = None, **override) -> Path:
    """A D4RL-layout HDF5 file of `data` (episodes end at terminals | timeouts)."""
    keys = {
        "observations": data.obs,
        "actions": data.actions,
        "rewards": data.rewards,
        "terminals": data.terminateds,
        "timeouts": data.truncateds,
        **({"next_observations": data.new_obs} if next_observations else {}),
        **override,
    }
    with h5py.File(path, "w") as f:
        for key, value in keys.items():
            if key != drop:
                f.create_dataset(key, data=value)
    return path


def _make_minari(data: Transitions, dataset_id: str = "o2o/hopper/test-v0") -> None:
    """A real local Minari dataset of `data`'s episodes, written by Minari itself.

    Built from EpisodeBuffers (as o2o's factory does): Minari's DataCollector needs jax, which
    o2o does not depend on.
    """
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for ep in np.unique(data.eps_id):
        rows = np.flatnonzero(data.eps_id == ep)
        buffers.append(
            EpisodeBuffer(
                id=int(ep),
                observations=np.concatenate([data.obs[rows], data.new_obs[rows[-1:]]]),
                actions=data.actions[rows],
                rewards=data.rewards[rows].astype(np.float64),
                terminations=data.terminateds[rows],
                truncations=data.truncateds[rows],
                infos={},
            )
        )
    minari.create_dataset_from_buffers(dataset_id, buffers, env="Hopper-v5", algorithm_name="random")


def _with(data: Transitions, **columns: np.ndarray) -> Transitions:
    return Transitions(**{name: columns.get(name, getattr(data, name)) for name in CANONICAL_COLUMNS})


# --- readers ---------------------------------------------------------------------------------


def test_minari_round_trip_and_env_id(hopper: Transitions, homes: Path) -> None:
    _make_minari(hopper)
    _assert_equal(read_minari("o2o/hopper/test-v0"), hopper)
    resolved = resolve_dataset("hopper-test")
    assert resolved.env_id == "Hopper-v5"
    assert (resolved.num_transitions, resolved.obs_dim, resolved.act_dim) == (len(hopper), 11, 3)
    assert resolved.parquet_path == homes / f"{content_hash(hopper)}.parquet"
    _assert_equal(read_parquet(resolved.parquet_path), hopper)
    # The same dataset by explicit id, with or without the minari: prefix, is the same cache entry.
    for name in ("o2o/hopper/test-v0", "minari:o2o/hopper/test-v0"):
        again = resolve_dataset(name)
        assert again.dataset_id == name and again.content_hash == resolved.content_hash


def test_hdf5_with_next_observations_is_exact(hopper: Transitions, tmp_path: Path) -> None:
    _assert_equal(read_d4rl_hdf5(_write_d4rl(tmp_path / "d.hdf5", hopper)), hopper)


def test_hdf5_without_next_observations_drops_the_unobserved_last_step(hopper: Transitions, tmp_path: Path) -> None:
    data = read_d4rl_hdf5(_write_d4rl(tmp_path / "d.hdf5", hopper, next_observations=False))
    truncated_eps = np.unique(hopper.eps_id[hopper.truncateds])
    assert len(data) == len(hopper) - len(truncated_eps)
    keep = ~hopper.truncateds
    # Every kept row is the original transition: new_obs is the recorded next observation.
    for name in ("obs", "actions", "rewards", "terminateds", "eps_id", "t"):
        np.testing.assert_array_equal(getattr(data, name), getattr(hopper, name)[keep], err_msg=name)
    np.testing.assert_array_equal(data.new_obs[~data.terminateds], hopper.new_obs[keep][~data.terminateds])
    # Terminal rows are kept; the row before a dropped timeout step is the episode's truncated end.
    assert data.terminateds.sum() == hopper.terminateds.sum()
    assert data.truncateds.sum() == len(truncated_eps)
    last_rows = np.flatnonzero(np.r_[data.eps_id[1:] != data.eps_id[:-1], True])
    np.testing.assert_array_equal(data.terminateds[last_rows] | data.truncateds[last_rows], True)
    assert not (data.terminateds & data.truncateds).any()


def test_hdf5_last_row_without_terminal_or_timeout_ends_the_data(hopper: Transitions, tmp_path: Path) -> None:
    n = int(np.flatnonzero(hopper.eps_id == 1)[-1])  # cut in the middle of episode 1's final step
    cut = Transitions(**{name: getattr(hopper, name)[:n] for name in CANONICAL_COLUMNS})
    data = read_d4rl_hdf5(_write_d4rl(tmp_path / "d.hdf5", cut))
    assert data.truncateds[-1] and not data.terminateds[-1]
    assert len(data) == n
    without_next = read_d4rl_hdf5(_write_d4rl(tmp_path / "e.hdf5", cut, next_observations=False))
    assert without_next.truncateds[-1] and len(without_next) == n - 1 - int(hopper.truncateds[:n].sum())


def test_parquet_write_read_equality_file_and_directory(hopper: Transitions, tmp_path: Path) -> None:
    write_parquet(hopper, tmp_path / "one.parquet")
    _assert_equal(read_parquet(tmp_path / "one.parquet"), hopper)
    half = len(hopper) // 2
    for i, rows in enumerate((slice(0, half), slice(half, None))):
        write_parquet(Transitions(**{n: getattr(hopper, n)[rows] for n in CANONICAL_COLUMNS}), tmp_path / "dir" / f"part-{i}.parquet")
    _assert_equal(read_parquet(tmp_path / "dir"), hopper)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_table_schema_is_canonical(hopper: Transitions) -> None:
    table = hopper.to_table()
    assert tuple(table.column_names) == CANONICAL_COLUMNS
    assert table.schema.field("obs").type == pa.list_(pa.float32(), 11)
    assert table.schema.field("actions").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("terminateds").type == pa.bool_()
    assert table.schema.field("eps_id").type == pa.int64()


def test_from_table_names_missing_columns_and_wrong_types(hopper: Transitions) -> None:
    table = hopper.to_table()
    with pytest.raises(DatasetError, match=r"dataset src: missing column\(s\) 'new_obs'"):
        Transitions.from_table(table.drop_columns(["new_obs"]), "src")
    wrong = table.set_column(2, "rewards", pa.array(["x"] * len(hopper)))
    with pytest.raises(DatasetError, match="dataset src: column 'rewards' has type string"):
        Transitions.from_table(wrong, "src")


# --- the cache -------------------------------------------------------------------------------


def test_cache_is_reused_while_the_source_is_unchanged(hopper: Transitions, tmp_path: Path, homes: Path) -> None:
    source = _write_d4rl(tmp_path / "d.hdf5", hopper)
    first = resolve_dataset(str(source))
    assert first.env_id is None and first.content_hash == content_hash(hopper)
    assert first.parquet_path.is_file() and (homes / f"{first.content_hash}.json").is_file()
    index_mtime = (homes / "index.json").stat().st_mtime_ns
    parquet_mtime = first.parquet_path.stat().st_mtime_ns
    # Garbage of the same size and mtime: a cache hit must not read the source at all.
    stat = source.stat()
    source.write_bytes(b"\0" * stat.st_size)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resolve_dataset(str(source)) == first
    assert (homes / "index.json").stat().st_mtime_ns == index_mtime
    assert first.parquet_path.stat().st_mtime_ns == parquet_mtime
    # A changed source (new mtime) is read again — and here it is now garbage.
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        resolve_dataset(str(source))


def test_cache_is_keyed_by_content(hopper: Transitions, tmp_path: Path, homes: Path) -> None:
    from_hdf5 = resolve_dataset(str(_write_d4rl(tmp_path / "d.h5", hopper)))
    write_parquet(hopper, tmp_path / "same.parquet")
    from_parquet = resolve_dataset(str(tmp_path / "same.parquet"))
    assert from_parquet.parquet_path == from_hdf5.parquet_path
    assert len(list(homes.glob("*.parquet"))) == 1
    other = _with(hopper, rewards=hopper.rewards + 1)
    write_parquet(other, tmp_path / "other.parquet")
    assert resolve_dataset(str(tmp_path / "other.parquet")).content_hash == content_hash(other) != from_hdf5.content_hash
    # Resolving the cache's own Parquet keeps the env id its sidecar recorded.
    _make_minari(hopper)
    minari_resolved = resolve_dataset("hopper-test")
    assert resolve_dataset(str(minari_resolved.parquet_path)).env_id == "Hopper-v5"


def test_content_hash_is_deterministic_and_sensitive(hopper: Transitions) -> None:
    copy = Transitions(**{n: getattr(hopper, n).copy() for n in CANONICAL_COLUMNS})
    assert content_hash(copy) == content_hash(hopper) and len(content_hash(hopper)) == 16
    flipped = hopper.terminateds.copy()
    flipped[0] = not flipped[0]
    assert content_hash(_with(hopper, terminateds=flipped)) != content_hash(hopper)


# --- errors: one line, the source named, nothing cached -----------------------------------------


def test_resolve_errors_are_specific_and_cache_nothing(hopper: Transitions, tmp_path: Path, homes: Path) -> None:
    nan_obs = hopper.obs.copy()
    nan_obs[7, 2] = np.nan
    inf_rewards = hopper.rewards.copy()
    inf_rewards[4] = np.inf
    truncated = _write_d4rl(tmp_path / "truncated.hdf5", hopper)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    (tmp_path / "text.hdf5").write_text("not hdf5")
    write_parquet(hopper, tmp_path / "corrupt.parquet")
    (tmp_path / "corrupt.parquet").write_bytes((tmp_path / "corrupt.parquet").read_bytes()[:500])
    empty = Transitions(**{n: getattr(hopper, n)[:0] for n in CANONICAL_COLUMNS})
    write_parquet(empty, tmp_path / "empty.parquet")
    (tmp_path / "nothing").mkdir()
    cases = {
        str(_write_d4rl(tmp_path / "k.hdf5", hopper, drop="timeouts")): "k.hdf5: missing key(s) 'timeouts'",
        str(_write_d4rl(tmp_path / "nan.hdf5", hopper, observations=nan_obs)): "nan.hdf5: column 'obs' has NaN at row 7",
        str(_write_d4rl(tmp_path / "inf.hdf5", hopper, rewards=inf_rewards)): "inf.hdf5: column 'rewards' has inf at row 4",
        str(_write_d4rl(tmp_path / "rows.hdf5", hopper, actions=hopper.actions[:-1])): f"'actions' has {len(hopper) - 1} rows; 'observations' has {len(hopper)}",
        str(truncated): "truncated.hdf5: not a readable HDF5 file",
        str(tmp_path / "text.hdf5"): "text.hdf5: not a readable HDF5 file",
        str(tmp_path / "corrupt.parquet"): "corrupt.parquet: not a readable Parquet file",
        str(tmp_path / "empty.parquet"): "empty.parquet: empty (0 transitions)",
        str(tmp_path / "nothing"): "nothing: directory holds no .parquet files",
        "hopper-nonexistent": "dataset 'hopper-nonexistent': not found (looked for a local Minari dataset o2o/hopper/nonexistent-v0",
        "mujoco/hopper/medium-v0": "dataset 'mujoco/hopper/medium-v0': not found (no local Minari dataset mujoco/hopper/medium-v0",
        str(tmp_path / "absent.hdf5"): "not found",
    }
    for source, message in cases.items():
        with pytest.raises(DatasetError) as info:
            resolve_dataset(source)
        assert message in str(info.value), (source, str(info.value))
        assert "\n" not in str(info.value)
        assert _cache_files(homes) == [], source
    with pytest.raises(DatasetError, match=r"make it with `o2o datasets make hopper-nonexistent`"):
        resolve_dataset("hopper-nonexistent")


def test_validate_names_each_problem(hopper: Transitions, spaces: tuple) -> None:
    obs_space, act_space = spaces
    validate(hopper, obs_space, act_space, "ok")  # the rollout itself is valid
    nan = hopper.new_obs.copy()
    nan[5, 0] = np.nan
    inf = hopper.actions.copy()
    inf[3, 1] = -np.inf
    outside = hopper.actions.copy()
    outside[9, 2] = 1.5
    within_tolerance = np.clip(hopper.actions + 5e-5, -1 - 5e-5, 1 + 5e-5)
    cases = [
        (Transitions(**{n: getattr(hopper, n)[:0] for n in CANONICAL_COLUMNS}), "dataset src: empty (0 transitions)"),
        (_with(hopper, obs=hopper.obs[:, :10]), "dataset src: obs has dimension 10, the environment's observation space (11,) has 11"),
        (_with(hopper, new_obs=hopper.new_obs[:, :10]), "new_obs has dimension 10"),
        (_with(hopper, actions=hopper.actions[:, :2]), "dataset src: actions have dimension 2, the environment's action space (3,) has 3"),
        (_with(hopper, new_obs=nan), "dataset src: column 'new_obs' has NaN at row 5"),
        (_with(hopper, actions=inf), "dataset src: column 'actions' has -inf at row 3"),
        (_with(hopper, actions=outside), "dataset src: column 'actions' row 9 dimension 2 is 1.5, outside the action space bounds [-1, 1]"),
        (_with(hopper, rewards=np.stack([hopper.rewards, hopper.rewards], 1)), "column 'rewards' has shape"),
        (_with(hopper, terminateds=hopper.terminateds[:-1]), "column 'terminateds' has shape"),
    ]
    for data, message in cases:
        with pytest.raises(DatasetError) as info:
            validate(data, obs_space, act_space, "src")
        assert message in str(info.value), (message, str(info.value))
    validate(_with(hopper, actions=within_tolerance.astype(np.float32)), obs_space, act_space, "ok")


def test_validation_of_hdf5_against_hopper(hopper: Transitions, tmp_path: Path, spaces: tuple) -> None:
    """A D4RL file of another task reads fine but fails against Hopper-v5's spaces."""
    wide = np.concatenate([hopper.obs, hopper.obs[:, :6]], axis=1)
    path = _write_d4rl(tmp_path / "walker.hdf5", hopper, observations=wide, next_observations=False)
    with pytest.raises(DatasetError, match=r"walker.hdf5: obs has dimension 17"):
        validate(read_d4rl_hdf5(path), *spaces, str(path))


# --- episodes, returns, scores ---------------------------------------------------------------


def test_episode_returns_and_returns_to_go_by_hand() -> None:
    data = Transitions(
        obs=np.zeros((5, 1), np.float32),
        actions=np.zeros((5, 1), np.float32),
        rewards=np.array([1.0, 2.0, 3.0, 10.0, 20.0], np.float32),
        new_obs=np.zeros((5, 1), np.float32),
        terminateds=np.array([0, 0, 1, 0, 0], bool),
        truncateds=np.array([0, 0, 0, 0, 1], bool),
        eps_id=np.array([4, 4, 4, 2, 2]),
        t=np.array([0, 1, 2, 0, 1]),
    )
    np.testing.assert_allclose(data.episode_returns(), [6.0, 30.0])
    # Episode 4: G2 = 3, G1 = 2 + 0.5·3 = 3.5, G0 = 1 + 0.5·3.5 = 2.75; episode 2: 20, 10 + 10.
    np.testing.assert_allclose(data.returns_to_go(0.5), [2.75, 3.5, 3.0, 20.0, 20.0])
    # Rows out of time order within an episode give the same per-row values.
    order = np.array([2, 0, 4, 1, 3])
    shuffled = Transitions(**{n: getattr(data, n)[order] for n in CANONICAL_COLUMNS})
    np.testing.assert_allclose(shuffled.returns_to_go(0.5), data.returns_to_go(0.5)[order])


def test_returns_to_go_matches_a_loop(hopper: Transitions) -> None:
    expected = np.empty(len(hopper))
    for ep in np.unique(hopper.eps_id):
        rows = np.flatnonzero(hopper.eps_id == ep)
        g = 0.0
        for row in rows[::-1]:
            g = hopper.rewards[row] + 0.99 * g
            expected[row] = g
    np.testing.assert_allclose(hopper.returns_to_go(0.99), expected, rtol=1e-5)
    np.testing.assert_allclose(hopper.episode_returns().sum(), hopper.rewards.sum(dtype=np.float64), rtol=1e-6)


def test_normalized_score_by_hand() -> None:
    assert normalized_score("Hopper-v5", 3234.3) == pytest.approx(100.0)
    assert normalized_score("Hopper-v5", -20.272305) == pytest.approx(0.0)
    assert normalized_score("Walker2d-v5", (1.629008 + 4592.3) / 2) == pytest.approx(50.0)
    np.testing.assert_allclose(normalized_score("HalfCheetah-v5", np.array([-280.178953, 12135.0])), [0.0, 100.0])
    assert isinstance(normalized_score("Ant-v5", 0.0), float)
    with pytest.raises(ValueError, match="'CartPole-v1': no D4RL reference returns"):
        normalized_score("CartPole-v1", 1.0)


def test_names() -> None:
    assert [env_family(e) for e in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5")] == ["hopper", "halfcheetah", "walker2d", "ant"]
    assert env_family("AntMaze_UMaze-v5") == "antmaze" and env_family("AdroitHandPen-v1") == "pen"
    assert minari_id_for("hopper-medium") == "o2o/hopper/medium-v0"
    assert minari_id_for("walker2d-medium-replay") == "o2o/walker2d/medium-replay-v0"
    with pytest.raises(DatasetError, match="<task>-<level>"):
        minari_id_for("hopper")
