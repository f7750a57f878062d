"""Tune specs → Ray Tune: seeds × datasets × grid, one RLlib Algorithm per trial, MLflow per seed.

Everything that can be refused is refused before Ray is touched: the spec (schema, algorithm,
hyperparameter names, values the algorithm's config rejects), the datasets (found, readable,
valid, matching the environment's spaces). Datasets are converted once, in the driver, into
the canonical Parquet cache; trials read that file through RLlib's offline reader.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from o2o import code_version
from o2o.algorithms import config_class, hyperparameters
from o2o.platform.data import (
    DatasetError,
    ResolvedDataset,
    Transitions,
    check_minibatch,
    resolve_dataset,
    return_range,
    validate,
)
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
    trials: list[dict[str, Any]]
    """One entry per seed (a trial of `seeds_per_trial` K gives K, in seed order): trial_id,
    dataset, seed, lane (its place 0..K−1 in the trial), error, done (both the trial's),
    final_score (that seed's last eval/normalized_score) and run_id (that seed's MLflow run)."""


def load(spec_path: str | Path, storage: str | None = None, tracking_uri: str | None = None) -> Spec:
    """Load and validate a spec against the algorithm registry; `storage` and `tracking_uri`
    replace the spec's (a cluster job points them at shared storage and the MLflow server)."""
    overrides = {"storage": storage, "tracking.uri": tracking_uri}
    spec = load_spec(spec_path, hyperparameters(), {k: v for k, v in overrides.items() if v is not None})
    _check_value_kinds(spec, f"spec {Path(spec_path).name}")
    return spec


_KINDS: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (bool, (bool,), "true or false"),
    (int, (int,), "an integer"),
    (float, (int, float), "a number"),
    (str, (str,), "a string"),
    (list, (list,), "a list"),
    (dict, (dict,), "a mapping"),
)
"""(type of a config field's default, types a spec's value for it may have, their name). The
first row matching the default decides (a bool default is not an int one); a bool is never
taken for a number. Fields whose default is None take any value."""


def _check_value_kinds(spec: Spec, where: str) -> None:
    """Refuse a hyperparameter or grid value of another kind than its field's default, e.g.
    `lr: 3e-4`, which YAML reads as the string '3e-4': the config's checks would meet it as a
    TypeError, or not at all, and the trial would fail or misbehave inside Ray."""
    defaults = config_class(spec.algorithm)()
    values = [(f"hyperparameters.{k}", k, v) for k, v in spec.hyperparameters.items()]
    values += [(f"grid.{k}", k, v) for k, vs in spec.grid.items() for v in vs]
    values += [
        (f"dataset_overrides.{name}.{k}", k, v) for name, fields in spec.dataset_overrides.items() for k, v in fields.items()
    ]
    for key_path, key, value in values:
        default = getattr(defaults, key)
        kind = next((row for row in _KINDS if isinstance(default, row[0])), None)
        if kind is None:
            continue
        default_type, allowed, name = kind
        if isinstance(value, allowed) and (default_type is bool or not isinstance(value, bool)):
            continue
        hint = _yaml_number_hint(value, default_type)
        raise SpecError(f"{where}: {key_path}: must be {name} like its default {default!r} (got {value!r}){hint}")


def _yaml_number_hint(value: object, default_type: type) -> str:
    """How to write a number that YAML read as a string (PyYAML needs a dot and a signed exponent:
    3e-4 and 1e6 are strings), or nothing."""
    if default_type not in (int, float) or not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    written = int(number) if default_type is int and number.is_integer() else number
    return f"; YAML reads {value} as a string, write {written!r}"


def prepare_datasets(spec: Spec) -> dict[str, tuple[ResolvedDataset, str]]:
    """Resolve and validate every dataset of the sweep; returns id → (dataset, env id).

    Each is checked against its environment and against the trials that train on it before it
    is written to the cache (and again when it comes from there), so refused data never lands
    in the cache for a later run to trust."""
    prepared = {}
    for name in spec.datasets:

        def check(data: Transitions, recorded_env: str | None, name: str = name) -> None:
            env_id = spec.env or recorded_env
            if env_id is None:
                raise DatasetError(f"dataset {name!r}: no environment recorded in it; set `env:` in the spec")
            observation_space, action_space = _env_spaces(name, env_id)
            validate(data, observation_space, action_space, name)
            _check_trainable(spec, name, data)

        resolved = resolve_dataset(name, check)
        prepared[name] = (resolved, spec.env or resolved.env_id)
    return prepared


def _check_trainable(spec: Spec, name: str, data: Transitions) -> None:
    """Refuse dataset `name` if a trial that reads it could not train on it: fewer transitions
    than the trial's largest minibatch (any phase's), or, under `reward_normalization:
    return_range`, episode returns that do not vary."""
    for trial in spec.trials():
        if trial["dataset"] != name:
            continue
        config = base_config(spec).training(**_trial_fields(spec, trial))
        if not _reads_dataset(spec, config):
            continue
        phases = [config] + [config.for_phase(p) for p in config.phase_overrides]
        check_minibatch(data, name, max(c.train_batch_size_per_learner for c in phases))
        if config.reward_normalization == "return_range":
            return_range(data, name)


def _grid_point(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's grid values (its keys other than the dataset and the seed)."""
    return {k: v for k, v in trial.items() if k not in ("dataset", "seed")}


def _trial_fields(spec: Spec, trial: dict[str, Any]) -> dict[str, Any]:
    """The config fields a trial sets beyond the spec's `hyperparameters`: its dataset's
    overrides and its grid point (which never share a key)."""
    return {**spec.dataset_overrides.get(trial["dataset"], {}), **_grid_point(trial)}


def _reads_dataset(spec: Spec, config: O2OConfig) -> bool:
    """Whether a trial of `config` reads its dataset: it does when the offline phase runs or an
    online minibatch may draw from it."""
    rules = {config.sampling_rule, config.for_phase("online").sampling_rule}
    return spec.budgets.offline_updates > 0 or bool(rules - {"online"})


def _env_spaces(name: str, env_id: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The observation and action spaces of `env_id`, which dataset `name` trains for; a
    DatasetError if the env cannot be made (unknown id, version or namespace, a `module:Env`
    id whose module is missing) or its spaces are not the flat Box spaces o2o trains on.
    Gymnasium's warnings while making it (an old version) are shown only if it is made: a
    refusal says the same in its one line."""
    with warnings.catch_warnings(record=True) as held:
        try:
            env = gym.make(env_id)
        except (gym.error.Error, ImportError) as exc:
            raise DatasetError(f"dataset {name!r}: environment {env_id!r} cannot be made: {exc}") from None
    for warning in held:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    env.close()
    for role, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Box):
            raise DatasetError(
                f"dataset {name!r}: environment {env_id!r} has the {role} space {space}; o2o trains on "
                "continuous (Box) observation and action spaces"
            )
    return env.observation_space, env.action_space


def base_config(spec: Spec) -> O2OConfig:
    """The algorithm config shared by every trial (datasets, seeds and grid vary per trial)."""
    config = config_class(spec.algorithm)()
    config.o2o(
        offline_updates=spec.budgets.offline_updates,
        online_env_steps=spec.budgets.online_env_steps,
        seeds_per_trial=spec.seeds_per_trial,
    )
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
        # Each phase's overrides too: a value the base config would refuse is no better there.
        for phase, phase_config in [(None, config)] + [(p, config.for_phase(p)) for p in config.phase_overrides]:
            try:
                phase_config.validate()
            except ValueError as exc:
                where = f"trial {trial}" + (f", phase_overrides[{phase!r}]" if phase else "")
                raise SpecError(f"spec {spec.name}: {where}: {str(exc).splitlines()[0]}") from None


def trial_config(spec: Spec, prepared: dict[str, tuple[ResolvedDataset, str]], trial: dict[str, Any]) -> O2OConfig:
    """The full config of one trial."""
    resolved, env_id = prepared[trial["dataset"]]
    config = base_config(spec)
    config.environment(env_id)
    config.debugging(seed=trial["seed"])
    config.training(**_trial_fields(spec, trial))
    if _reads_dataset(spec, config):
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


class ClusterError(RuntimeError):
    """Ray could not be reached or started; the message is one line saying what to try."""


RAY_PROBE_TIMEOUT_S = 5.0
"""Seconds the Ray cluster at an address has to accept a connection before it is refused."""

AUTOSCALER_WAIT_S = 900.0
"""How long a sweep waits for an autoscaler to add a node that holds a trial (GPU nodes take
minutes to provision) before it refuses, still before any trial exists."""

LOCAL_RAY_SYSTEM_CONFIG = {"worker_niceness": 0}
"""Ray settings of a local Ray the sweep starts (a cluster's are the cluster's). Trials run at
the driver's priority: Ray starts its workers at niceness 15, so any process at niceness 0 that
Linux schedules in the same group as the sweep (its terminal session, its container) takes
nearly all the CPU a trial would get — measured with one busy loop beside an IQL trial on a
loaded 2-core machine: 12 updates/s at 15, 38 at 0 (benchmarks/README.md)."""


def _start_ray(spec: Spec, verbose: int) -> None:
    """Connect to the Ray this process finds, or start a local one, as `ray.init` chooses:
    RAY_ADDRESS, else the cluster of the last `ray start` on this machine, else a new local Ray.

    The choice is made first, with the function `ray.init` makes it with (Ray's private
    `canonicalize_bootstrap_address`), so that a trial this machine cannot hold is refused
    before a local Ray starts, and an address where no Ray answers is refused in seconds, where
    `ray.init` would retry it for ever. A failure inside `ray.init` (e.g. a raylet that times
    out waiting for its agent on a loaded machine) becomes one line saying what to try.
    """
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    given = os.environ.get("RAY_ADDRESS") or None
    where = f"RAY_ADDRESS={given}" if given else "the Ray started by the last `ray start` on this machine"
    try:
        if given and given.startswith("ray://"):  # Ray Client: its server's host:port
            address = given.removeprefix("ray://")
        else:
            address = canonicalize_bootstrap_address(given)
    except (ValueError, ConnectionError) as exc:
        raise ClusterError(f"{where}: {_first_line(exc)}") from None
    if address is None:
        _fit_trials_on_this_machine(spec)
    else:
        _probe_ray(address, where)
    try:
        local = {"_system_config": LOCAL_RAY_SYSTEM_CONFIG} if address is None else {}
        ray.init(address=given, include_dashboard=False, log_to_driver=verbose > 1, **local)
    except Exception as exc:  # noqa: BLE001 - whatever stopped Ray, the sweep cannot run
        ray.shutdown()
        if address is None:
            raise ClusterError(
                f"Ray could not start on this machine: {_first_line(exc)}; try again when the machine "
                "is less loaded, or start Ray with `ray start --head` and set RAY_ADDRESS"
            ) from None
        raise ClusterError(f"{where}: Ray could not connect to {address}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _probe_ray(address: str, where: str) -> None:
    """Refuse an address (host:port of a Ray head) where nothing accepts a connection."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise ClusterError(
            f"{where}: no Ray answers at {address} ({problem}); start one with `ray start --head`, "
            "or unset RAY_ADDRESS to run on a local Ray"
        ) from None


def _fit_trials_on_this_machine(spec: Spec) -> None:
    """Before a local Ray starts on this machine, the whole cluster: refuse a trial it cannot
    hold. Ray counts the GPUs CUDA shows this process (CUDA_VISIBLE_DEVICES applies), as
    torch does, and at most the machine's CPUs."""
    import torch

    concurrent_trials(spec, float(os.cpu_count() or 1))
    gpus = torch.cuda.device_count()
    if spec.resources.gpus_per_trial > gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = "" if visible is None else f" with CUDA_VISIBLE_DEVICES={visible!r}"
        raise SpecError(
            f"spec {spec.name}: resources.gpus_per_trial={spec.resources.gpus_per_trial:g} cannot be met: "
            f"this machine has {gpus} GPU(s){shown}, and with no RAY_ADDRESS the sweep runs on a local "
            "Ray here; use gpus_per_trial: 0, or set RAY_ADDRESS to a Ray cluster with GPU nodes"
        )


def _fit_trials_on_cluster(spec: Spec) -> None:
    """Refuse, before any trial exists, a trial that no node of the connected cluster can hold:
    Tune would keep it PENDING for ever, with its folder blocking a rerun.

    A trial runs its learner in its own process (`base_config`: num_learners=0), so it is one
    resource bundle of `cpus_per_trial` CPUs and `gpus_per_trial` GPUs, placed on one node. On a
    cluster whose autoscaler reports its node groups (Ray's autoscaler v2, e.g. KubeRay's), a
    group that holds the bundle is asked for and waited on, up to AUTOSCALER_WAIT_S; Ray 2.60
    says nothing about any other autoscaler, and the refusal says so.
    """
    import ray

    need = {"CPU": spec.resources.cpus_per_trial, "GPU": spec.resources.gpus_per_trial}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if _holds(nodes, need):
        return
    groups = _autoscaler_node_groups()
    if groups and _holds(groups, need):
        _wait_for_node(spec, need)
        return
    largest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in need}
    fields = {"CPU": "cpus_per_trial", "GPU": "gpus_per_trial"}
    short = [k for k in need if need[k] > largest[k]] or list(need)  # or only the two together
    grows = (
        "its autoscaler's node groups hold none either"
        if groups
        else "Ray does not say whether an autoscaler could add one, so scale the cluster up first"
    )
    raise SpecError(
        f"spec {spec.name}: {' and '.join(f'resources.{fields[k]}={need[k]:g}' for k in short)} cannot be met: "
        f"a trial needs {need['CPU']:g} CPU and {need['GPU']:g} GPU on one node, and no node of this Ray "
        f"cluster has them (at most {largest['CPU']:g} CPU and {largest['GPU']:g} GPU per node); {grows}, "
        "or lower the request"
    )


def _holds(nodes: list[dict[str, float]], need: dict[str, float]) -> bool:
    """Whether one of `nodes` (resource name → amount) has every amount of `need`."""
    return any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes)


def _autoscaler_node_groups() -> list[dict[str, float]]:
    """The resources of each node type an autoscaler may add (autoscaler v2 reports them to the
    GCS, as Ray Train reads them); empty where none is reported."""
    from ray._private.state import state

    config = state.get_cluster_config()
    if config is None:
        return []
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def _wait_for_node(spec: Spec, need: dict[str, float]) -> None:
    """Ask the autoscaler for a node that holds `need` and wait for it to join, at most
    AUTOSCALER_WAIT_S; then refuse, before any trial exists."""
    import ray
    from ray.autoscaler.sdk import request_resources

    print(
        f"o2o: no node holds a trial ({need['CPU']:g} CPU, {need['GPU']:g} GPU) yet; waiting up to "
        f"{AUTOSCALER_WAIT_S / 60:g} min for the autoscaler to add one",
        file=sys.stderr,
    )
    request_resources(bundles=[need])
    deadline = time.monotonic() + AUTOSCALER_WAIT_S
    try:
        while not _holds([n["Resources"] for n in ray.nodes() if n["Alive"]], need):
            if time.monotonic() > deadline:
                raise SpecError(
                    f"spec {spec.name}: the autoscaler added no node with {need['CPU']:g} CPU and "
                    f"{need['GPU']:g} GPU within {AUTOSCALER_WAIT_S / 60:g} min; scale the cluster up, then rerun"
                )
            time.sleep(10)
    finally:
        request_resources(bundles=[])


def sweep_param_space(spec: Spec, prepared: dict[str, tuple[ResolvedDataset, str]]) -> dict[str, Any]:
    """Tune's param space: the first trial's full config, with datasets, trial seeds (each
    trial's first seed, `Spec.trial_seeds`) and grid keys as grid axes, and each dataset's file,
    hash, environment and overridden fields (the spec's `dataset_overrides`, else the shared
    value) looked up per trial."""
    from ray import tune

    shared = base_config(spec)
    overridden = spec.overridden_fields
    table = {
        name: {
            "input_": [str(r.parquet_path)],
            "dataset_hash": r.content_hash,
            "env": env_id,
            **{key: spec.dataset_overrides.get(name, {}).get(key, getattr(shared, key)) for key in overridden},
        }
        for name, (r, env_id) in prepared.items()
    }
    param_space = trial_config(spec, prepared, spec.trials()[0]).to_dict()
    param_space["dataset_id"] = tune.grid_search(list(spec.datasets))
    param_space["seed"] = tune.grid_search(spec.trial_seeds)
    for key, values in spec.grid.items():
        param_space[key] = tune.grid_search(list(values))
    for key in ("input_", "dataset_hash", "env", *overridden):
        param_space[key] = tune.sample_from(lambda config, key=key: table[config["dataset_id"]][key])
    return param_space


def run_tags(spec: Spec) -> dict[str, str]:
    """Tags every MLflow run of the sweep carries: code and package versions, the spec."""
    tags = {"o2o.spec": spec.name, **code_version()}
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

    from o2o.platform.progress import TUNE_DETAIL_VERBOSITY, ProgressPrinter, TrialIndex, error_line, tune_output
    from o2o.platform.tracking import MLflowTracker

    spec = load(spec_path, storage=storage, tracking_uri=tracking_uri)
    if name is not None:
        spec = spec.model_copy(update={"name": name})
    prepared = prepare_datasets(spec)
    check_trials(spec, prepared)
    storage = Path(spec.storage_path())
    if storage.exists() and not storage.is_dir():
        raise SpecError(f"spec {spec.name}: storage {storage} is a file; it must be a directory (or a URI)")
    experiment_dir = storage / spec.name
    if resume and not experiment_dir.exists():
        raise SpecError(f"spec {spec.name}: nothing to resume at {experiment_dir}")
    if not resume and experiment_dir.exists():
        raise SpecError(
            f"spec {spec.name}: a sweep already exists at {experiment_dir}; "
            "resume it with --resume, or change `name` or `storage`"
        )
    _check_tracking_server(spec)
    if not resume:
        _refuse_earlier_runs(spec)
    param_space = sweep_param_space(spec, prepared)
    if resume:
        _refuse_changed_sweep(spec, experiment_dir)
        param_space = _resume_param_space(spec, experiment_dir, param_space)

    if not ray.is_initialized():
        _start_ray(spec, verbose)
    _fit_trials_on_cluster(spec)
    max_concurrent = concurrent_trials(spec, ray.cluster_resources().get("CPU", 0.0))
    trainable = config_class(spec.algorithm)().algo_class
    overridden = [key for key in spec.overridden_fields if key not in spec.hyperparameters]
    param_keys = [
        "dataset_id",
        "seed",
        "seeds_per_trial",
        "env",
        "offline_updates",
        "online_env_steps",
        *spec.hyperparameters,
        *spec.grid,
        *overridden,
    ]
    tracker = MLflowTracker(
        tracking_uri=spec.tracking_uri(),
        experiment_name=spec.experiment_name,
        sweep_name=spec.name,
        param_keys=param_keys,
        # A generator names itself beside its base (`iql+edis`), as the trials' own tag does.
        tags={**run_tags(spec), "o2o.algorithm": "+".join(filter(None, [spec.algorithm, spec.hyperparameters.get("generator")]))},
    )
    # -v 0: the summary at the end only; 1: o2o's progress lines; 2: Tune's own output as well.
    printer = [ProgressPrinter(["dataset_id", "seed", *spec.grid])] if verbose >= 1 else []
    index = TrialIndex()
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=str(storage),
        callbacks=[tracker, index, *printer],
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=spec.checkpoint.frequency,
            checkpoint_at_end=True,
            num_to_keep=spec.checkpoint.keep,
        ),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        verbose=verbose if verbose >= TUNE_DETAIL_VERBOSITY else 0,
    )
    if resume:
        # The trials keep the configs they were started with; the param space fills the
        # placeholders of those the stopped driver never created.
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_errored=True, param_space=param_space)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=run_config,
        )
        if experiment_dir.is_dir():  # a local storage (Tune has just made the directory)
            (experiment_dir / SETTINGS_FILE).write_text(json.dumps(_settings(spec), indent=2))
    with tune_output(verbose):
        grid = tuner.fit()
    runs = _runs_by_trial(spec)
    summary = []
    for result in grid:
        metrics = result.metrics or {}
        trial_id, config = index.by_path.get(result.path, (None, {}))
        config = result.config or config
        trial_id = metrics.get("trial_id", trial_id)
        error = None if result.error is None else error_line(str(result.error))
        summary += _seed_summaries(trial_id, config, metrics, error, runs)
    return SweepResult(spec.name, experiment_dir, spec.tracking_uri(), spec.experiment_name, summary)


def _seed_summaries(
    trial_id: str | None,
    config: dict[str, Any],
    metrics: dict[str, Any],
    error: str | None,
    runs: dict[tuple[str, int], str],
) -> list[dict[str, Any]]:
    """The summary entries (`SweepResult.trials`) of one trial: one per seed it trained, seed
    `seed` + i taking its score from the last result's ``o2o_seeds[i]`` (``o2o`` for a one-seed
    trial, whose ``o2o`` is its seed's own) and its run from `runs` ((trial id, lane) → run id,
    `_runs_by_trial`). The error and whether the budget was done are the trial's, shared."""
    lanes = int(config.get("seeds_per_trial") or 1)
    first = config.get("seed")
    per_seed = (metrics.get("o2o_seeds") or []) if lanes > 1 else [metrics.get("o2o") or {}]
    return [
        {
            "trial_id": trial_id,
            "dataset": config.get("dataset_id"),
            "seed": None if first is None else first + lane,
            "lane": lane,
            "error": error,
            # False for a trial the driver stopped (Ctrl-C) before its budget: no error, not done.
            "done": bool(metrics.get("done")),
            "final_score": (per_seed[lane] if lane < len(per_seed) else {}).get("eval/normalized_score"),
            "run_id": runs.get((trial_id, lane)),
        }
        for lane in range(lanes)
    ]


SETTINGS_FILE = "o2o_settings.json"
"""In a sweep's Tune directory: the settings it was started with, which a resume must repeat."""

SETTINGS_ADDED = {"seeds_per_trial": 1}
"""Settings added to SETTINGS_FILE since it was introduced → the value a sweep whose file
predates them ran with, so that such a sweep resumes under a spec that leaves them at it."""


def _settings(spec: Spec) -> dict[str, Any]:
    """What a sweep keeps for its whole life, as dotted key → value: the spec but its `name`
    and `storage` (which find the sweep), with the tracking URI resolved (Tune restores the
    MLflow tracker the sweep started with) and the seeds as a list. Trials started before a
    resume keep their configs, and Tune restores its own settings (concurrency, checkpoints,
    failures) from the sweep's state, so a resume under other values would not apply them."""
    values = spec.model_dump(mode="json", exclude={"name", "storage"})
    values["seeds"] = spec.seed_list
    values["tracking"]["uri"] = spec.tracking_uri()
    return _dotted(values)


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _refuse_changed_sweep(spec: Spec, experiment_dir: Path) -> None:
    """Refuse to resume a sweep under a spec it was not started with, naming what differs.

    The algorithm comes from Tune's own state (the trainable it recorded, present in every
    sweep); the other settings from SETTINGS_FILE, which sweeps started before it existed lack.
    """
    import pickle

    algorithms = {config_class(name)().algo_class.__name__: name for name in hyperparameters()}
    # The sweep's own state in its own storage, which Tune unpickles on restore as well.
    with (experiment_dir / "tuner.pkl").open("rb") as f:
        trainable = pickle.load(f).get("__trainable_name")
    started = algorithms.get(trainable, trainable)
    where = f"spec {spec.name}: the sweep at {experiment_dir} was started with"
    fix = "resume it with the spec that started it, or start a new sweep under another `name`"
    if trainable is not None and started != spec.algorithm:
        raise SpecError(f"{where} algorithm {started}; this spec names {spec.algorithm}; {fix}")
    record = experiment_dir / SETTINGS_FILE
    if not record.is_file():
        return
    before, now = {**SETTINGS_ADDED, **json.loads(record.read_text())}, _settings(spec)
    for key in dict.fromkeys([*now, *before]):
        if key not in before or key not in now or before[key] != now[key]:
            raise SpecError(f"{where} {key}: {_shown(before, key)}; this spec has {key}: {_shown(now, key)}; {fix}")


def _shown(values: dict[str, Any], key: str) -> str:
    return json.dumps(values[key]) if key in values else "(not set)"


def _resume_param_space(spec: Spec, experiment_dir: Path, param_space: dict[str, Any]) -> dict[str, Any]:
    """This code's param space, cut to the keys the stopped sweep started with.

    Tune saves each trial's config but not the param space, in which it replaced every value it
    cannot write as JSON (the config's classes, the per-dataset `sample_from` functions) by a
    placeholder that only the param space given to the restore resolves: without it, a trial
    the dead driver never created gets placeholders for values and the resumed sweep crashes.
    Tune takes that param space only with the keys the sweep started with, so config fields an
    o2o release added since are left out; a field since removed cannot be filled and is refused.
    """
    import pickle

    from ray.tune.utils import flatten_dict

    # The sweep's own state in its own storage, which Tune unpickles on restore as well.
    with (experiment_dir / "tuner.pkl").open("rb") as f:
        started_with = pickle.load(f).get("__flattened_param_space_keys")
    if started_with is None:
        return param_space
    flat = flatten_dict(param_space)
    removed = [key for key in started_with if key not in flat]
    if removed:
        raise SpecError(
            f"spec {spec.name}: the sweep at {experiment_dir} was started with config fields this "
            f"o2o no longer has ({', '.join(removed[:5])}); resume it with the release that started it"
        )
    return _keep_paths(param_space, set(started_with))


def _keep_paths(space: dict[str, Any], paths: set[str], prefix: str = "") -> dict[str, Any]:
    """`space` without the leaves whose '/'-joined path (Tune's flattening) is not in `paths`;
    empty mappings stay, as Tune's flattening does not see them."""
    kept: dict[str, Any] = {}
    for key, value in space.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            inner = _keep_paths(value, paths, f"{path}/")
            if inner:
                kept[key] = inner
        elif isinstance(value, dict) or path in paths:
            kept[key] = value
    return kept


def _check_tracking_server(spec: Spec) -> None:
    """The sweep's first contact with its MLflow server, new or resumed: one that does not
    answer is refused within seconds, before Ray starts, instead of after MLflow's minutes of
    retries."""
    from o2o.platform.tracking import check_server

    uri = spec.tracking_uri()
    try:
        check_server(uri)
    except ValueError as exc:
        raise SpecError(f"spec {spec.name}: tracking.uri {uri} cannot be used: {exc}") from None


def _refuse_earlier_runs(spec: Spec) -> None:
    """A new sweep must not share its name with runs already in its MLflow experiment (a sweep
    whose Tune directory was deleted): reports select runs by sweep name and would mix them.
    A tracking URI it cannot use is refused here, before Ray starts."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from o2o.platform.tracking import TAG_SWEEP

    uri = spec.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(spec.experiment_name)
        if experiment is None:
            return
        earlier = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{spec.name}'", max_results=1
        )
    except MlflowException as exc:  # an unreachable server, an unsupported URI scheme
        problem = " ".join(str(exc).split())
        raise SpecError(f"spec {spec.name}: tracking.uri {uri} cannot be used: {problem}") from None
    if earlier:
        raise SpecError(
            f"spec {spec.name}: MLflow experiment {spec.experiment_name!r} at {uri} already holds runs "
            f"of a sweep named {spec.name!r}; change `name`, or delete those runs first"
        )


def _runs_by_trial(spec: Spec) -> dict[tuple[str, int], str]:
    """MLflow run id of each seed of each trial of the sweep, from the tracker's tags, keyed by
    (trial id, lane): lane i is the trial's seed `seed` + i; a one-seed trial's run, which has
    no lane tag, is lane 0."""
    from mlflow.tracking import MlflowClient

    from o2o.platform.tracking import TAG_SEED_LANE, TAG_SWEEP, TAG_TRIAL_ID

    client = MlflowClient(spec.tracking_uri())
    experiment = client.get_experiment_by_name(spec.experiment_name)
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_SWEEP}` = '{spec.name}'")
    return {
        (r.data.tags[TAG_TRIAL_ID], int(r.data.tags.get(TAG_SEED_LANE, 0))): r.info.run_id
        for r in runs
        if TAG_TRIAL_ID in r.data.tags
    }
