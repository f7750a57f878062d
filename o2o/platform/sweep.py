"""Tune specs → Ray Tune: seeds × datasets × grid, one RLlib Algorithm per trial, MLflow per trial.

Everything that can be refused is refused before Ray is touched: the spec (schema, algorithm,
hyperparameter names, values the algorithm's config rejects), the datasets (found, readable,
valid, matching the environment's spaces). Datasets are converted once, in the driver, into
the canonical Parquet cache; trials read that file through RLlib's offline reader.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from o2o.algorithms import config_class, hyperparameters
from o2o.platform.data import DatasetError, ResolvedDataset, read_parquet, resolve_dataset, validate
from o2o.platform.engine import O2OConfig
from o2o.platform.spec import Spec, SpecError, load_spec

TRACKED_PACKAGES = ("ray", "torch", "gymnasium", "mujoco", "minari", "mlflow", "numpy")


@dataclass(frozen=True)
class SweepResult:
    """Where a finished sweep's results are."""

    name: str
    storage: Path
    tracking_uri: str
    experiment: str
    trials: list[dict[str, Any]]  # per trial: trial_id, status, dataset, seed, final score


def load(spec_path: str | Path, storage: str | None = None, tracking_uri: str | None = None) -> Spec:
    """Load and validate a spec against the algorithm registry; `storage` and `tracking_uri`
    replace the spec's (a cluster job points them at shared storage and the MLflow server)."""
    overrides = {"storage": storage, "tracking.uri": tracking_uri}
    return load_spec(spec_path, hyperparameters(), {k: v for k, v in overrides.items() if v is not None})


def prepare_datasets(spec: Spec) -> dict[str, tuple[ResolvedDataset, str]]:
    """Resolve and validate every dataset of the sweep; returns id → (dataset, env id)."""
    prepared = {}
    for name in spec.datasets:
        resolved = resolve_dataset(name)
        env_id = spec.env or resolved.env_id
        if env_id is None:
            raise DatasetError(f"dataset {name!r}: no environment recorded in it; set `env:` in the spec")
        try:
            env = gym.make(env_id)
        except gym.error.Error as exc:
            raise DatasetError(f"dataset {name!r}: environment {env_id!r} cannot be made: {exc}") from None
        validate(read_parquet(resolved.parquet_path), env.observation_space, env.action_space, name)
        env.close()
        prepared[name] = (resolved, env_id)
    return prepared


def base_config(spec: Spec) -> O2OConfig:
    """The algorithm config shared by every trial (datasets, seeds and grid vary per trial)."""
    config = config_class(spec.algorithm)()
    config.o2o(offline_updates=spec.budgets.offline_updates, online_env_steps=spec.budgets.online_env_steps)
    config.training(**spec.hyperparameters)
    config.evaluation(evaluation_interval=spec.evaluation.interval, evaluation_duration=spec.evaluation.episodes)
    config.resources(num_cpus_for_main_process=spec.resources.cpus_per_trial)
    # The learner runs in the trial's process (num_learners=0): RLlib reserves
    # max(num_cpus_per_learner, main process) for it, so both are the trial's CPUs.
    config.learners(num_gpus_per_learner=spec.resources.gpus_per_trial, num_cpus_per_learner=spec.resources.cpus_per_trial)
    return config


def check_trials(spec: Spec, prepared: dict[str, tuple[ResolvedDataset, str]]) -> None:
    """Build and validate each trial's config (cheap, no Ray) so a bad grid value fails now."""
    for trial in spec.trials():
        config = trial_config(spec, prepared, trial)
        try:
            config.validate()
        except ValueError as exc:
            raise SpecError(f"spec {spec.name}: trial {trial}: {str(exc).splitlines()[0]}") from None


def trial_config(spec: Spec, prepared: dict[str, tuple[ResolvedDataset, str]], trial: dict[str, Any]) -> O2OConfig:
    """The full config of one trial."""
    resolved, env_id = prepared[trial["dataset"]]
    config = base_config(spec)
    config.environment(env_id)
    config.debugging(seed=trial["seed"])
    config.training(**{k: v for k, v in trial.items() if k not in ("dataset", "seed")})
    # The dataset is read when the offline phase runs or an online minibatch may draw from it.
    rules = {config.sampling_rule, config.for_phase("online").sampling_rule}
    if spec.budgets.offline_updates > 0 or rules - {"online"}:
        config.offline_data(input_=[str(resolved.parquet_path)])
    config.o2o(dataset_id=resolved.dataset_id, dataset_hash=resolved.content_hash)
    return config


def concurrent_trials(spec: Spec, cluster_cpus: float) -> int:
    """Trials that may run at once so that one CPU stays free for the dataset read.

    Each trial reads its dataset through RLlib's offline reader (Ray Data), whose listing and
    read tasks need a whole free CPU outside the trials' reservations; trials that take every
    CPU wait on them forever. The spec's `max_concurrent_trials` can only lower this.
    """
    fit = int((cluster_cpus - 1.0) // spec.resources.cpus_per_trial)
    if fit < 1:
        raise SpecError(
            f"spec {spec.name}: resources.cpus_per_trial={spec.resources.cpus_per_trial} leaves no "
            f"CPU free for reading the dataset on this {cluster_cpus:g}-CPU Ray cluster; "
            f"use at most {max(cluster_cpus - 1.0, 0):g}"
        )
    cap = spec.resources.max_concurrent_trials
    return fit if cap is None else min(cap, fit)


def run_tags(spec: Spec) -> dict[str, str]:
    """Tags every MLflow run of the sweep carries: code and package versions, the spec."""
    tags = {"o2o.spec": spec.name, "o2o.version": importlib.metadata.version("o2o")}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        tags["o2o.git_commit"] = sha
    except (OSError, subprocess.CalledProcessError):
        pass
    for name in TRACKED_PACKAGES:
        try:
            tags[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return tags


def run_sweep(
    spec_path: str | Path,
    resume: bool = False,
    verbose: int = 1,
    name: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> SweepResult:
    """Run (or resume) the sweep a spec describes on the Ray this process finds or starts;
    `name` replaces the spec's name (the quickstart gives each run its own), `storage` and
    `tracking_uri` the spec's storage and MLflow URI."""
    import ray
    from ray import tune

    from o2o.platform.tracking import MLflowTracker

    spec = load(spec_path, storage=storage, tracking_uri=tracking_uri)
    if name is not None:
        spec = spec.model_copy(update={"name": name})
    prepared = prepare_datasets(spec)
    check_trials(spec, prepared)
    storage = Path(spec.storage_path())
    experiment_dir = storage / spec.name
    if resume and not experiment_dir.exists():
        raise SpecError(f"spec {spec.name}: nothing to resume at {experiment_dir}")
    if not resume and experiment_dir.exists():
        raise SpecError(
            f"spec {spec.name}: a sweep already exists at {experiment_dir}; "
            "resume it with --resume, or change `name` or `storage`"
        )
    if not resume:
        _refuse_earlier_runs(spec)
    trials = spec.trials()
    table = {
        name: {"input_": [str(r.parquet_path)], "dataset_hash": r.content_hash, "env": env_id}
        for name, (r, env_id) in prepared.items()
    }
    param_space = trial_config(spec, prepared, trials[0]).to_dict()
    param_space["dataset_id"] = tune.grid_search(list(spec.datasets))
    param_space["seed"] = tune.grid_search(spec.seed_list)
    for key, values in spec.grid.items():
        param_space[key] = tune.grid_search(list(values))
    for key in ("input_", "dataset_hash", "env"):
        param_space[key] = tune.sample_from(lambda s, key=key: table[s.config["dataset_id"]][key])

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=verbose > 1)
    max_concurrent = concurrent_trials(spec, ray.cluster_resources().get("CPU", 0.0))
    trainable = config_class(spec.algorithm)().algo_class
    param_keys = ["dataset_id", "seed", "env", "offline_updates", "online_env_steps", *spec.hyperparameters, *spec.grid]
    tracker = MLflowTracker(
        tracking_uri=spec.tracking_uri(),
        experiment_name=spec.experiment_name,
        sweep_name=spec.name,
        param_keys=param_keys,
        tags={**run_tags(spec), "o2o.algorithm": spec.algorithm},
    )
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=str(storage),
        callbacks=[tracker],
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=spec.checkpoint.frequency,
            checkpoint_at_end=True,
            num_to_keep=spec.checkpoint.keep,
        ),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        verbose=verbose,
    )
    if resume:
        # The trials keep the configs they were started with: an o2o release that adds a config
        # field between the crash and the resume must not make the saved sweep unresumable.
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=run_config,
        )
    grid = tuner.fit()
    runs = _runs_by_trial(spec)
    summary = []
    for result in grid:
        metrics = result.metrics or {}
        config = result.config or {}
        summary.append(
            {
                "trial_id": metrics.get("trial_id"),
                "dataset": config.get("dataset_id"),
                "seed": config.get("seed"),
                "error": None if result.error is None else str(result.error).splitlines()[0],
                "final_score": (metrics.get("o2o") or {}).get("eval/normalized_score"),
                "run_id": runs.get(metrics.get("trial_id")),
            }
        )
    return SweepResult(spec.name, experiment_dir, spec.tracking_uri(), spec.experiment_name, summary)


def _refuse_earlier_runs(spec: Spec) -> None:
    """A new sweep must not share its name with runs already in its MLflow experiment (a sweep
    whose Tune directory was deleted): reports select runs by sweep name and would mix them."""
    from mlflow.tracking import MlflowClient

    from o2o.platform.tracking import TAG_SWEEP

    uri = spec.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return
    earlier = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{spec.name}'", max_results=1
    )
    if earlier:
        raise SpecError(
            f"spec {spec.name}: MLflow experiment {spec.experiment_name!r} at {uri} already holds runs "
            f"of a sweep named {spec.name!r}; change `name`, or delete those runs first"
        )


def _runs_by_trial(spec: Spec) -> dict[str, str]:
    """MLflow run id of each trial of the sweep, from the tracker's tags."""
    from mlflow.tracking import MlflowClient

    from o2o.platform.tracking import TAG_SWEEP, TAG_TRIAL_ID

    client = MlflowClient(spec.tracking_uri())
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{spec.name}'")
    return {r.data.tags[TAG_TRIAL_ID]: r.info.run_id for r in runs if TAG_TRIAL_ID in r.data.tags}
