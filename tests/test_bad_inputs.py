"""The bad-input catalogue: tune specs, datasets, environments and command-line arguments that
`o2o` must refuse the way a user meets them — exit status 2, one line `o2o: error: …` naming
the problem and the key, file or value — before any resource is spent and with nothing
half-written: no Tune directory, MLflow store, experiment or report, no Minari dataset made,
replaced or deleted, no Parquet added to the cache for data that is refused, no Ray. Faults
met from outside — a cluster without the GPUs a spec asks for, a Ray that cannot start or is
not there, an MLflow server that refuses connections — are refused the same way, in seconds.

Everything is real: files written with pyarrow and h5py from the factory's hopper-random
dataset, MuJoCo environments made by Gymnasium, sqlite MLflow stores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import minari
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from o2o.platform.cli import main
from o2o.platform.data import (
    CANONICAL_COLUMNS,
    Transitions,
    o2o_home,
    read_parquet,
    write_parquet,
)
from o2o.platform.factory import POLICY_DIR, rollout

SPEC = {
    "name": "x",
    "algorithm": "iql",
    "datasets": "[hopper-random]",
    "budgets": "{offline_updates: 1, online_env_steps: 0}",
}
"""A spec that runs (given storage), as raw YAML per top-level key."""

D4RL_KEYS = {
    "observations": "obs",
    "actions": "actions",
    "rewards": "rewards",
    "terminals": "terminateds",
    "timeouts": "truncateds",
}
"""D4RL's HDF5 key → the canonical column it holds."""

UNREACHABLE = "http://127.0.0.1:9"
"""An MLflow server that is not there (the discard port; nothing listens on it here)."""

GPUS = torch.cuda.device_count()
"""The GPUs of this machine, as Ray counts them; a trial asking for one more fits no node."""


@dataclass
class Workspace:
    """What an item's argv builder may use: a temporary directory whose `runs/` is the sweeps'
    storage, and the hopper-random transitions to derive bad files from."""

    root: Path
    data: Transitions

    @property
    def storage(self) -> Path:
        return self.root / "runs"

    def spec(self, text: str | None = None, **keys: str | None) -> str:
        """A spec file: `text` as is, or SPEC with `keys` replaced (None removes a key) and
        storage in this workspace unless given."""
        if text is None:
            fields = {**SPEC, "storage": str(self.storage), **keys}
            text = "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None)
        path = self.root / "spec.yaml"
        path.write_text(text)
        return str(path)

    def sweep(self, *options: str, **keys: str | None) -> list[str]:
        return ["sweep", self.spec(**keys), *options]

    def sweep_on(self, dataset: str, env: str | None = "Hopper-v5") -> list[str]:
        """A sweep of `dataset` (a file) for `env` (None: the env the dataset records)."""
        return self.sweep(datasets=f"[{dataset}]", env=env)

    def parquet(self, name: str, rows: int | None = None, **columns: np.ndarray) -> str:
        """The first `rows` transitions (all: None) with `columns` replaced, as a canonical Parquet file."""
        data = Transitions(**{c: columns.get(c, getattr(self.data, c))[:rows] for c in CANONICAL_COLUMNS})
        write_parquet(data, self.root / name)
        return str(self.root / name)

    def d4rl(self, name: str, without: str | None = None, **arrays: np.ndarray) -> str:
        """The transitions as a D4RL HDF5 file, with `arrays` replacing keys and `without` left out."""
        with h5py.File(self.root / name, "w") as file:
            for key, column in D4RL_KEYS.items():
                if key != without:
                    file.create_dataset(key, data=arrays.get(key, getattr(self.data, column)))
        return str(self.root / name)

    def loud_actions(self) -> np.ndarray:
        """The actions with the first one's first dimension at 1.5, outside Hopper's [−1, 1]."""
        actions = self.data.actions.copy()
        actions[0, 0] = 1.5
        return actions

    def nan(self, column: str, row: int, dim: int | None = None) -> np.ndarray:
        """`column` of the transitions with a NaN at `row` (and `dim` of a vector column)."""
        values = getattr(self.data, column).copy()
        values[(row,) if dim is None else (row, dim)] = np.nan
        return values


class Bad(NamedTuple):
    """One catalogue item: what `o2o` is run with (files made in the workspace first) and what
    its one line must say; `{root}` and `{runs}` stand for the workspace and its storage."""

    id: str
    argv: Callable[[Workspace], list[str]]
    message: str


def _truncated_parquet(w: Workspace) -> str:
    path = Path(w.parquet("truncated.parquet"))
    path.write_bytes(path.read_bytes()[:400])
    return str(path)


def _without_column(w: Workspace) -> str:
    path = Path(w.parquet("no_terminateds.parquet"))
    pq.write_table(pq.read_table(path).drop_columns(["terminateds"]), path)
    return str(path)


def _csv(w: Workspace) -> str:
    path = w.root / "hopper.csv"
    path.write_text("obs,actions,rewards\n")
    return str(path)


def _existing_sweep(w: Workspace) -> list[str]:
    (w.storage / "x").mkdir(parents=True)
    return w.sweep()


def _storage_file(w: Workspace) -> list[str]:
    w.storage.write_text("not a directory")
    return w.sweep()


def _store_without(w: Workspace) -> list[str]:
    """An MLflow store that holds another experiment only."""
    w.storage.mkdir()
    MlflowClient(f"sqlite:///{w.storage / 'mlflow.db'}").create_experiment("other")
    return ["report", "nosuch", "--storage", str(w.storage)]


def _directory(w: Workspace, name: str) -> str:
    (w.root / name).mkdir()
    return str(w.root / name)


def _one_episode(w: Workspace) -> str:
    """300 transitions as one episode: one return, so no range to scale rewards by."""
    return w.parquet("one_episode.parquet", rows=300, eps_id=np.zeros(len(w.data), np.int64))


def _small_for_the_grid(w: Workspace) -> list[str]:
    """300 transitions: enough for minibatches of 256, not for the grid's other point, 512."""
    small = w.parquet("small.parquet", rows=300)
    return w.sweep(datasets=f"[{small}]", env="Hopper-v5", grid="{train_batch_size_per_learner: [256, 512]}")


def _no_env_sweep(w: Workspace) -> list[str]:
    """A Parquet file without a sidecar recording its env (other rewards: its own cache entry)."""
    return w.sweep_on(w.parquet("no_env.parquet", rewards=w.data.rewards + 1), env=None)


CATALOGUE = [
    # --- tune specs ---------------------------------------------------------------------------------
    Bad("spec-typo-key", lambda w: w.sweep(hyperparams="{}"),
        "spec spec.yaml: unknown key 'hyperparams' (allowed: name, algorithm, datasets, env, budgets, hyperparameters, grid,"),
    Bad("spec-typo-nested-key", lambda w: w.sweep(resources="{gpus: 1}"),
        "resources: unknown key 'gpus' (allowed: cpus_per_trial, gpus_per_trial, max_concurrent_trials)"),
    Bad("spec-unknown-algorithm", lambda w: w.sweep(algorithm="dqn"),
        "algorithm: unknown algorithm 'dqn' (known: apl, awac, baq_td3bc, calql, cql, e2o, famo2o_cql, famo2o_iql, iql, opt_spot, opt_td3bc, pex, sac, spot, td3, td3bc)"),
    Bad("spec-unknown-hyperparameter", lambda w: w.sweep(hyperparameters="{expectil: 0.7}"),
        "hyperparameters: unknown hyperparameter 'expectil' for iql; did you mean 'expectile'?"),
    Bad("spec-grid-key-also-fixed", lambda w: w.sweep(hyperparameters="{expectile: 0.7}", grid="{expectile: [0.7, 0.9]}"),
        "grid: 'expectile' is also in hyperparameters; fix it or sweep it"),
    Bad("spec-empty-grid-list", lambda w: w.sweep(grid="{temperature: []}"),
        "grid: 'temperature' has no values; give at least one"),
    Bad("spec-negative-seed", lambda w: w.sweep(seeds="[0, -1]"),
        "seeds: seeds must be >= 0 (got [0, -1])"),
    Bad("spec-duplicate-seeds", lambda w: w.sweep(seeds="[1, 1]"),
        "seeds: duplicate seeds in [1, 1]"),
    Bad("spec-negative-budget", lambda w: w.sweep(budgets="{offline_updates: -5, online_env_steps: 0}"),
        "budgets.offline_updates: Input should be greater than or equal to 0 (got -5)"),
    Bad("spec-both-budgets-zero", lambda w: w.sweep(budgets="{offline_updates: 0, online_env_steps: 0}"),
        "budgets: offline_updates and online_env_steps are both 0; nothing would run"),
    Bad("spec-budget-yaml-string", lambda w: w.sweep(budgets="{offline_updates: 1e6, online_env_steps: 0}"),
        "budgets.offline_updates: Input should be a valid integer, unable to parse string as an integer (got '1e6')"),
    Bad("spec-invalid-yaml", lambda w: ["sweep", w.spec("name: [unclosed\n")],
        "spec spec.yaml: invalid YAML: expected ',' or ']', but got '<stream end>' (line 2)"),
    Bad("spec-python-tag", lambda w: ["sweep", w.spec("!!python/object/apply:os.system ['echo pwned']\n")],
        "spec spec.yaml: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    Bad("spec-file-missing", lambda w: ["sweep", str(w.root / "nope.yaml")],
        "spec nope.yaml: file not found"),
    Bad("spec-is-a-directory", lambda w: ["sweep", _directory(w, "specs")],
        "spec specs: is a directory; give the path of a spec file (YAML)"),
    Bad("spec-datasets-string", lambda w: w.sweep(datasets="hopper-random"),
        "datasets: must be a list of dataset ids; write [hopper-random]"),
    Bad("spec-uri-storage-without-tracking", lambda w: w.sweep(storage="s3://bucket/runs"),
        "tracking.uri: required when storage is a URI (s3://bucket/runs)"),
    Bad("spec-tracking-credentials", lambda w: w.sweep(tracking="{uri: 'http://u:p@mlflow:5000'}"),
        "tracking.uri: credentials in the tracking URI would be printed and saved with the sweep; remove them and set MLFLOW_TRACKING_USERNAME"),
    Bad("spec-tracking-unsupported-scheme", lambda w: w.sweep(tracking="{uri: 'foo://bar'}"),
        "spec x: tracking.uri foo://bar cannot be used: Model registry functionality is unavailable; got unsupported URI 'foo://bar'"),
    Bad("spec-tracking-unreachable", lambda w: w.sweep(tracking=f"{{uri: '{UNREACHABLE}'}}"),
        f"spec x: tracking.uri {UNREACHABLE} cannot be used: API request to {UNREACHABLE}"),
    Bad("spec-value-yaml-string", lambda w: w.sweep(hyperparameters="{lr: 3e-4}"),
        "hyperparameters.lr: must be a number like its default 0.0003 (got '3e-4'); YAML reads 3e-4 as a string, write 0.0003"),
    Bad("spec-value-not-integer", lambda w: w.sweep(hyperparameters="{updates_per_iteration: 1e3}"),
        "hyperparameters.updates_per_iteration: must be an integer like its default 1000 (got '1e3'); YAML reads 1e3 as a string, write 1000"),
    Bad("spec-value-not-list", lambda w: w.sweep(hyperparameters="{hidden_sizes: 256}"),
        "hyperparameters.hidden_sizes: must be a list like its default [256, 256] (got 256)"),
    Bad("spec-dataset-override-yaml-string", lambda w: w.sweep(dataset_overrides="{hopper-random: {expectile: 8e-1}}"),
        "dataset_overrides.hopper-random.expectile: must be a number like its default 0.7 (got '8e-1'); YAML reads 8e-1 as a string, write 0.8"),
    Bad("spec-dataset-override-out-of-range", lambda w: w.sweep(dataset_overrides="{hopper-random: {expectile: 1.5}}"),
        "spec x: trial {'dataset': 'hopper-random', 'seed': 0}: expectile must lie in (0, 1), got 1.5"),
    Bad("spec-grid-value-bool", lambda w: w.sweep(grid="{expectile: [0.7, yes]}"),
        "grid.expectile: must be a number like its default 0.7 (got True)"),
    Bad("spec-value-out-of-range", lambda w: w.sweep(hyperparameters="{expectile: 1.5}"),
        "spec x: trial {'dataset': 'hopper-random', 'seed': 0}: expectile must lie in (0, 1), got 1.5"),
    Bad("spec-grid-value-out-of-range", lambda w: w.sweep(grid="{expectile: [0.7, 1.5]}"),
        "spec x: trial {'dataset': 'hopper-random', 'seed': 0, 'expectile': 1.5}: expectile must lie in (0, 1), got 1.5"),
    Bad("spec-phase-value-out-of-range", lambda w: w.sweep(hyperparameters="{phase_overrides: {online: {expectile: 1.9}}}"),
        "phase_overrides['online']: expectile must lie in (0, 1), got 1.9"),
    Bad("spec-unknown-phase", lambda w: w.sweep(hyperparameters="{phase_overrides: {onlin: {expectile: 0.9}}}"),
        "phase_overrides['onlin']: IQLAlgorithm has no such phase (its phases: offline, online)"),
    Bad("spec-unknown-sampling-rule", lambda w: w.sweep(hyperparameters="{sampling_rule: mixed}"),
        "sampling_rule 'mixed' is not one of ('offline', 'union', 'ratio', 'online', 'prioritized', 'balanced')"),
    Bad("spec-prioritized-without-a-source", lambda w: w.sweep(hyperparameters="{sampling_rule: prioritized}"),
        "sampling_rule prioritized draws rows by priorities the method sets, and iql sets none"),
    Bad("spec-seeds-per-trial-apl-on-balanced-replay", lambda w: w.sweep(algorithm="apl", seeds="2", seeds_per_trial="2", hyperparameters="{sampling_rule: balanced}"),
        "spec x: trial {'dataset': 'hopper-random', 'seed': 0}: seeds_per_trial 2 with sampling_rule balanced: each seed "
        "picks its buffer apart"),
    Bad("spec-seeds-per-trial-with-a-critic-subset", lambda w: w.sweep(seeds="2", seeds_per_trial="2", hyperparameters="{num_critics: 4, target_critic_subset: 2}"),
        "spec x: trial {'dataset': 'hopper-random', 'seed': 0}: seeds_per_trial 2 with target_critic_subset: the random "
        "subset of target critics is drawn once per update, for one seed"),
    Bad("spec-seeds-per-trial-not-dividing-the-seeds", lambda w: w.sweep(seeds="3", seeds_per_trial="2"),
        "seeds_per_trial: 2 needs the seed count to be a multiple of 2 (got 3 seeds)"),
    Bad("spec-sweep-exists", _existing_sweep,
        "spec x: a sweep already exists at {runs}/x; resume it with --resume, or change `name` or `storage`"),
    Bad("spec-resume-nothing", lambda w: w.sweep("--resume"),
        "spec x: nothing to resume at {runs}/x"),
    Bad("spec-storage-is-a-file", _storage_file,
        "spec x: storage {runs} is a file; it must be a directory (or a URI)"),
    Bad("spec-more-gpus-than-any-node", lambda w: w.sweep(resources=f"{{gpus_per_trial: {GPUS + 1}}}"),
        f"spec x: resources.gpus_per_trial={GPUS + 1} cannot be met: "),
    # --- datasets -----------------------------------------------------------------------------------
    Bad("data-not-found", lambda w: w.sweep(datasets="[hopper-nonexistent]"),
        "dataset 'hopper-nonexistent': not found (looked for a local Minari dataset o2o/hopper/nonexistent-v0"),
    Bad("data-minari-id-not-found", lambda w: w.sweep(datasets="[mujoco/hopper/medium-v0]"),
        "dataset 'mujoco/hopper/medium-v0': not found (no local Minari dataset mujoco/hopper/medium-v0"),
    Bad("data-corrupt-parquet", lambda w: w.sweep_on(_truncated_parquet(w)),
        "dataset {root}/truncated.parquet: not a readable Parquet file (Could not open Parquet input source"),
    Bad("data-parquet-missing-column", lambda w: w.sweep_on(_without_column(w)),
        "no_terminateds.parquet: missing column(s) 'terminateds' (has: obs, actions, rewards, new_obs, truncateds, eps_id, t)"),
    Bad("data-empty-parquet", lambda w: w.sweep_on(w.parquet("empty.parquet", rows=0)),
        "dataset {root}/empty.parquet: empty (0 transitions)"),
    Bad("data-nan-rewards", lambda w: w.sweep_on(w.parquet("nan_rewards.parquet", rewards=w.nan("rewards", 17))),
        "nan_rewards.parquet: column 'rewards' has NaN at row 17"),
    Bad("data-d4rl-missing-key", lambda w: w.sweep_on(w.d4rl("no_timeouts.hdf5", without="timeouts")),
        "dataset {root}/no_timeouts.hdf5: missing key(s) 'timeouts'"),
    Bad("data-d4rl-nan-observation", lambda w: w.sweep_on(w.d4rl("nan_obs.hdf5", observations=w.nan("obs", 5, 3))),
        "nan_obs.hdf5: column 'obs' has NaN at row 5"),
    Bad("data-d4rl-row-counts-differ", lambda w: w.sweep_on(w.d4rl("short.hdf5", actions=w.data.actions[:-1])),
        "short.hdf5: key 'actions' has 2999 rows; 'observations' has 3000"),
    Bad("data-unsupported-file-type", lambda w: w.sweep_on(_csv(w)),
        "dataset {root}/hopper.csv: unsupported file type '.csv'; expected a D4RL .hdf5/.h5 file or .parquet"),
    Bad("data-actions-outside-bounds", lambda w: w.sweep_on(w.parquet("loud.parquet", actions=w.loud_actions())),
        "loud.parquet: column 'actions' row 0 dimension 0 is 1.5, outside the action space bounds [-1, 1]"),
    Bad("data-no-env-recorded", _no_env_sweep,
        "no_env.parquet': no environment recorded in it; set `env:` in the spec"),
    Bad("data-one-transition", lambda w: w.sweep_on(w.parquet("one.parquet", rows=1)),
        "dataset {root}/one.parquet: 1 transition(s) cannot fill one minibatch (train_batch_size_per_learner=256)"),
    Bad("data-smaller-than-a-grid-minibatch", _small_for_the_grid,
        "small.parquet: 300 transition(s) cannot fill one minibatch (train_batch_size_per_learner=512)"),
    Bad("data-returns-do-not-vary", lambda w: w.sweep_on(_one_episode(w)),
        "one_episode.parquet: its episode returns do not vary (max − min = 0 over 1 episode(s)), and "
        "reward_normalization: return_range divides rewards by that range"),
    Bad("data-no-rewards-at-all", lambda w: w.sweep_on(w.parquet("no_reward.parquet", rewards=np.zeros_like(w.data.rewards))),
        "no_reward.parquet: its episode returns do not vary (max − min = 0 over"),
    Bad("data-info-missing-path", lambda w: ["datasets", "info", str(w.root / "absent.parquet")],
        "dataset '{root}/absent.parquet': not found (no such file or directory, and not a Minari id or o2o dataset name)"),
    Bad("data-info-corrupt-parquet", lambda w: ["datasets", "info", _truncated_parquet(w)],
        "truncated.parquet: not a readable Parquet file"),
    # --- environments -------------------------------------------------------------------------------
    Bad("env-unknown-id", lambda w: w.sweep(env="NoSuchEnv-v0"),
        "dataset 'hopper-random': environment 'NoSuchEnv-v0' cannot be made: Environment `NoSuchEnv` doesn't exist."),
    Bad("env-deprecated-version", lambda w: w.sweep(env="Hopper-v1"),
        "environment 'Hopper-v1' cannot be made: Environment version v1 for `Hopper` is deprecated. Please use `Hopper-v5` instead."),
    Bad("env-namespace-not-installed", lambda w: w.sweep(env="ALE/Pong-v5"),
        "environment 'ALE/Pong-v5' cannot be made: Namespace ALE not found."),
    Bad("env-module-not-installed", lambda w: w.sweep(env="'nosuchpkg:Env-v0'"),
        "environment 'nosuchpkg:Env-v0' cannot be made: No module named 'nosuchpkg'."),
    Bad("env-observation-dim-mismatch", lambda w: w.sweep(env="HalfCheetah-v5"),
        "dataset hopper-random: obs has dimension 11, the environment's observation space (17,) has 17"),
    Bad("env-discrete-actions", lambda w: w.sweep(env="CartPole-v1"),
        "environment 'CartPole-v1' has the action space Discrete(2); o2o trains on continuous (Box) observation and action spaces"),
    # --- command-line arguments ---------------------------------------------------------------------
    Bad("cli-tracking-uri-credentials", lambda w: w.sweep("--tracking-uri", "http://u:p@mlflow:5000"),
        "tracking.uri: credentials in the tracking URI would be printed and saved with the sweep; remove them and set MLFLOW_TRACKING_USERNAME"),
    Bad("cli-storage-uri-without-tracking", lambda w: w.sweep("--storage", "s3://bucket/runs"),
        "tracking.uri: required when storage is a URI (s3://bucket/runs)"),
    Bad("cli-make-unknown-task", lambda w: ["datasets", "make", "ant-medium"],
        "dataset 'ant-medium': unknown task 'ant' (known: hopper, halfcheetah, walker2d)"),
    Bad("cli-make-unknown-level", lambda w: ["datasets", "make", "hopper-superb"],
        "dataset 'hopper-superb': unknown level 'superb' (known: random, medium, medium-replay, medium-expert, expert; "
        "a size may follow, e.g. hopper-medium-200k)"),
    Bad("cli-make-two-sizes", lambda w: ["datasets", "make", "hopper-random-200", "--size", "100"],
        "dataset 'hopper-random-200': its name says 200 transitions, --size says 100"),
    Bad("cli-make-no-level", lambda w: ["datasets", "make", "hopper"],
        "dataset 'hopper': no level; a dataset name is <task>-<level>, e.g. hopper-medium"),
    Bad("cli-make-level-not-reached", lambda w: ["datasets", "make", "hopper-expert"],
        "hopper: training did not reach expert level on this machine"),
    Bad("cli-make-size-zero", lambda w: ["datasets", "make", "hopper-random", "--size", "0"],
        "dataset 'hopper-random': --size must be at least 1 (got 0)"),
    Bad("cli-make-overwrite-negative-size", lambda w: ["datasets", "make", "hopper-random", "--size", "-5", "--overwrite"],
        "dataset 'hopper-random': --size must be at least 1 (got -5)"),
    Bad("cli-make-existing-other-size", lambda w: ["datasets", "make", "hopper-random", "--size", "5000"],
        "dataset 'hopper-random' already exists with 3000 transitions, not 5000; pass --overwrite to replace it"),
    Bad("cli-train-unknown-task", lambda w: ["datasets", "train-policies", "ant"],
        "unknown task 'ant' (known: hopper, halfcheetah, walker2d)"),
    Bad("cli-train-no-steps", lambda w: ["datasets", "train-policies", "hopper", "--env-steps", "0"],
        "--env-steps must be at least 1 (got 0)"),
    Bad("cli-report-no-store", lambda w: ["report", "x", "--storage", str(w.storage)],
        "no MLflow store at {runs}/mlflow.db"),
    Bad("cli-report-spec-never-run", lambda w: ["report", w.spec()],
        "no MLflow store at {runs}/mlflow.db"),
    Bad("cli-report-spec-is-a-directory", lambda w: ["report", _directory(w, "dir.yaml")],
        "spec dir.yaml: is a directory; give the path of a spec file (YAML)"),
    Bad("cli-report-directory", lambda w: ["report", _directory(w, "specs"), *_store_without(w)[2:]],
        "MLflow experiment '{root}/specs' not found at sqlite:///{runs}/mlflow.db; {root}/specs is a directory: give a spec file (YAML) or an experiment name"),
    Bad("cli-report-experiment-missing", _store_without,
        "MLflow experiment 'nosuch' not found at sqlite:///{runs}/mlflow.db"),
    Bad("cli-report-credentials", lambda w: ["report", "x", "--tracking-uri", "http://u:p@mlflow:5000"],
        "--tracking-uri: credentials in the tracking URI would be printed and saved with the sweep; remove them and set MLFLOW_TRACKING_USERNAME"),
    Bad("cli-report-unreachable", lambda w: ["report", "x", "--tracking-uri", UNREACHABLE],
        f"MLflow at {UNREACHABLE} cannot be read: API request to {UNREACHABLE}"),
]


@pytest.fixture(scope="module")
def hopper_data(hopper_random) -> Transitions:
    return read_parquet(hopper_random.parquet_path)


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file under `root` with its size and mtime, and every directory (an empty Tune or
    training directory is something left behind too)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in root.rglob("*")
    }


def _ray_started() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _refuse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `o2o argv`; assert exit status 2 and one line on stderr, no Python warning either
    (a user sees one as lines on stderr); return that line."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        assert main(argv) == 2
    assert [str(w.message) for w in caught] == []
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("o2o: error: "), err
    return err.strip()


@pytest.mark.parametrize("item", CATALOGUE, ids=[item.id for item in CATALOGUE])
def test_bad_input_is_refused_with_one_line_and_nothing_written(
    item: Bad, hopper_data: Transitions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = Workspace(tmp_path, hopper_data)
    argv = item.argv(workspace)
    cache, minari_root = o2o_home() / "cache", Path(minari.storage.get_dataset_path())
    before = {place: _tree(place) for place in (tmp_path, cache, minari_root, POLICY_DIR)}
    ray_before = _ray_started()

    line = _refuse(argv, capsys)
    message = item.message.replace("{runs}", str(workspace.storage)).replace("{root}", str(tmp_path))
    assert message in line, line

    # Nothing half-written: the workspace (Tune directory, MLflow store, report) as it was, no
    # dataset made or touched, no policies, no Ray started.
    assert _tree(tmp_path) == before[tmp_path]
    assert _tree(minari_root) == before[minari_root]
    assert _tree(POLICY_DIR) == before[POLICY_DIR]
    assert _ray_started() == ray_before
    # Refused data never enters the cache, where a later run would find it.
    assert _tree(cache) == before[cache]


def test_overwrite_that_cannot_be_made_keeps_the_existing_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`o2o datasets make hopper-expert --overwrite` where a hopper-expert exists (made elsewhere)
    but this machine's policies never reached expert level: refused before the dataset is deleted."""
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("O2O_HOME", str(tmp_path / "o2o"))
    episodes = rollout("Hopper-v5", None, 100, seed=0, num_envs=1)
    buffers = [EpisodeBuffer(id=i, infos={}, **episode) for i, episode in enumerate(episodes)]
    minari.create_dataset_from_buffers("o2o/hopper/expert-v0", buffers, env="Hopper-v5", algorithm_name="elsewhere")
    before = _tree(tmp_path / "minari")

    line = _refuse(["datasets", "make", "hopper-expert", "--overwrite"], capsys)
    assert "hopper: training did not reach expert level on this machine" in line
    assert _tree(tmp_path / "minari") == before
    assert minari.load_dataset("o2o/hopper/expert-v0").total_steps == 100


def test_data_refused_for_its_env_is_checked_again_when_it_comes_from_the_cache(
    hopper_data: Transitions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`o2o datasets info` caches a file it cannot check against an environment (a Parquet file
    records none); a sweep that finds it in the cache still refuses its out-of-bounds actions."""
    workspace = Workspace(tmp_path, hopper_data)
    loud = workspace.parquet("loud.parquet", actions=workspace.loud_actions())
    cache = o2o_home() / "cache"
    before = _tree(cache)
    assert main(["datasets", "info", loud]) == 0
    converted = _tree(cache)
    assert any(name.endswith(".parquet") for name in converted.keys() - before.keys()), "info converted it"
    line = _refuse(workspace.sweep_on(loud), capsys)
    assert _tree(cache) == converted
    assert "loud.parquet: column 'actions' row 0 dimension 0 is 1.5, outside the action space bounds" in line, line
    assert not (tmp_path / "runs").exists()


def test_learner_refuses_a_dataset_whose_returns_do_not_vary(hopper_data: Transitions) -> None:
    """The driver's check, repeated where the reward scale is taken: a learner built elsewhere
    (a benchmark, a test) on one episode divides by no return range, instead of scaling every
    reward by 1000 / 1e-6."""
    import gymnasium as gym

    from o2o.algorithms.iql import IQLConfig
    from o2o.platform.data import DatasetError

    one_episode = Transitions(
        **{c: getattr(hopper_data, c)[:300] for c in CANONICAL_COLUMNS if c != "eps_id"},
        eps_id=np.zeros(300, np.int64),
    )
    learner = IQLConfig().environment("Hopper-v5").o2o(dataset_id="one-episode").build_learner(env=gym.make("Hopper-v5"))
    with pytest.raises(DatasetError, match=r"dataset one-episode: its episode returns do not vary \(max − min = 0 over 1"):
        learner.build_replay(one_episode, 11, 3)
    learner.build_replay(hopper_data, 11, 3)  # its episodes differ: the scale is 1000 / their range
    returns = hopper_data.episode_returns()
    assert learner.reward_scale == pytest.approx(1000.0 / (returns.max() - returns.min()))


def _free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["sweep", "report"])
def test_tracking_server_that_refuses_connections_is_refused_within_seconds(
    command: str, hopper_data: Transitions, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MLflow's own retry settings (about 4.5 minutes of retries for a refused connection),
    the first contact with the server fails within seconds and names the URI."""
    # Imported before the clock starts (over 10 s on a loaded machine): the bound is the refusal's.
    import o2o.platform.report
    import o2o.platform.sweep  # noqa: F401

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    uri = f"http://127.0.0.1:{_free_port()}"
    workspace = Workspace(tmp_path, hopper_data)
    argv = workspace.sweep("--tracking-uri", uri) if command == "sweep" else ["report", "x", "--tracking-uri", uri]
    started = time.monotonic()
    line = _refuse(argv, capsys)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"refused after {elapsed:.0f} s"
    assert f"{uri} cannot be " in line and "Connection refused" in line, line
    assert not workspace.storage.exists()


@pytest.mark.usefixtures("ray_session")
def test_trial_no_node_can_hold_is_refused_before_any_trial_exists(
    hopper_data: Transitions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a running Ray, a trial asking for more GPUs than any node has would wait PENDING for
    ever: refused before Tune makes the sweep's folder, so a rerun is refused the same way, not
    as a sweep that already exists."""
    import ray

    gpus = max(node["Resources"].get("GPU", 0.0) for node in ray.nodes() if node["Alive"])
    workspace = Workspace(tmp_path, hopper_data)
    argv = workspace.sweep(resources=f"{{gpus_per_trial: {int(gpus) + 1}}}")
    for _ in range(2):
        line = _refuse(argv, capsys)
        assert f"spec x: resources.gpus_per_trial={int(gpus) + 1} cannot be met: a trial needs 1 CPU and " in line
        assert "no node of this Ray cluster has them" in line, line
        assert not (workspace.storage / "x").exists()


RAY_FAULTS = {
    "more-gpus-than-this-machine": (
        lambda ray_dir: {"RAY_TMPDIR": str(ray_dir)},
        f"spec x: resources.gpus_per_trial={GPUS + 1} cannot be met: this machine has {GPUS} GPU(s)",
    ),
    "no-ray-at-the-address": (
        lambda ray_dir: {"RAY_TMPDIR": str(ray_dir), "RAY_ADDRESS": f"127.0.0.1:{_free_port()}"},
        "o2o: error: RAY_ADDRESS=127.0.0.1:",
    ),
    "ray-cannot-start": (
        lambda ray_dir: {"RAY_TMPDIR": str(ray_dir / "not-a-directory")},
        "o2o: error: Ray could not start on this machine: [Errno 20] Not a directory",
    ),
}
"""Faults of the Ray a sweep runs on, made for real in a fresh driver process (no Ray of this
test session): the environment it runs under, given its own Ray directory, and what its one
line says. The Ray directory (RAY_TMPDIR) is the driver's own, short enough for Ray's socket
paths, so it never joins or starts a Ray in another's; a regular file in its place makes
`ray.init` fail as it creates its session directory."""


@pytest.mark.parametrize("fault", list(RAY_FAULTS))
def test_ray_that_cannot_run_the_sweep_is_one_line(fault: str, hopper_data: Transitions, tmp_path: Path) -> None:
    """A machine without the GPUs the spec asks for is refused before a local Ray starts; an
    address where no Ray answers within seconds (`ray.init` would retry it for ever); a Ray
    that fails to start, as one line saying what failed and what to try, not a traceback."""
    environment, message = RAY_FAULTS[fault]
    workspace = Workspace(tmp_path, hopper_data)
    resources = {"resources": f"{{gpus_per_trial: {GPUS + 1}}}"} if fault == "more-gpus-than-this-machine" else {}
    with tempfile.TemporaryDirectory(prefix="o2o-ray-", dir="/tmp") as ray_dir:
        (Path(ray_dir) / "not-a-directory").write_text("")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | environment(Path(ray_dir))
        done = subprocess.run(
            [sys.executable, "-m", "o2o.platform.cli", *workspace.sweep(**resources)],
            capture_output=True, text=True, env=env, timeout=240, check=False,
        )
        assert [p.name for p in Path(ray_dir).iterdir()] == ["not-a-directory"], "a Ray was started"
    errors = [line for line in done.stderr.splitlines() if line.startswith("o2o: error: ")]
    assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if fault == "no-ray-at-the-address":
        assert "no Ray answers at" in errors[0] and "Connection refused" in errors[0], errors[0]
    assert not (workspace.storage / "x").exists()


ARGPARSE = [
    ("seed-not-int", ["datasets", "make", "hopper-random", "--seed", "abc"],
     "o2o datasets make: error: argument --seed: invalid int value: 'abc'"),
    ("size-not-int", ["datasets", "make", "hopper-random", "--size", "1.5"],
     "o2o datasets make: error: argument --size: invalid int value: '1.5'"),
    ("env-steps-not-int", ["datasets", "train-policies", "hopper", "--env-steps", "many"],
     "o2o datasets train-policies: error: argument --env-steps: invalid int value: 'many'"),
    ("verbose-not-int", ["sweep", "spec.yaml", "-v", "loud"],
     "o2o sweep: error: argument -v/--verbose: invalid int value: 'loud'"),
    ("spec-missing", ["sweep"],
     "o2o sweep: error: the following arguments are required: spec"),
    ("unknown-command", ["train", "spec.yaml"],
     "o2o: error: argument COMMAND: invalid choice: 'train' (choose from"),
    ("unknown-action", ["datasets", "delete", "hopper-random"],
     "o2o datasets: error: argument ACTION: invalid choice: 'delete' (choose from"),
]


@pytest.mark.parametrize(("argv", "message"), [a[1:] for a in ARGPARSE], ids=[a[0] for a in ARGPARSE])
def test_bad_argument_is_refused_by_argparse(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's refusals: exit status 2, usage, then one error line naming the argument."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: o2o") and message in err[-1], err
