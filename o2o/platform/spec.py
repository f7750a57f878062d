"""The tune spec: one YAML file that names a sweep, validated before any Ray resource is used.

A spec says which algorithm runs on which datasets, with what phase budgets, fixed
hyperparameters and sweep axes (datasets × grid points × seeds), how many seeds one trial
trains side by side, what each trial may use, how often it evaluates and checkpoints, how many
failures it survives, and where it is tracked.

Validation is strict so a typo fails at load time, not hours into a sweep: every model forbids
unknown keys, hyperparameter and grid names are checked against the algorithm's own config
fields, and the file is read with a safe YAML loader (no Python tags). Every problem surfaces
as one `SpecError` line naming the file and the key path.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

RESERVED_AXES = ("dataset", "seed")
"""Trial keys set by the sweep itself (from `datasets` and `seeds`), not by hyperparameters."""


class SpecError(ValueError):
    """A spec that cannot run; the message is one line naming the file and the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budgets(_Strict):
    """How long each phase runs; a zero budget skips the phase."""

    offline_updates: int = Field(ge=0)
    """Gradient updates on the dataset before any environment interaction."""
    online_env_steps: int = Field(ge=0)
    """Environment steps collected (and trained on) after the offline phase."""

    @model_validator(mode="after")
    def _some_work(self) -> Budgets:
        if self.offline_updates == 0 and self.online_env_steps == 0:
            raise ValueError("offline_updates and online_env_steps are both 0; nothing would run")
        return self


class Resources(_Strict):
    """What one trial reserves from Ray."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    """Fractional below 1 (e.g. 0.25 packs four trials on a GPU); a whole number above 1."""
    max_concurrent_trials: int | None = Field(None, gt=0)
    """Upper bound on trials running at once; None: as many as fit while one CPU of the
    cluster stays free for Ray Data's dataset reads (see `sweep.concurrent_trials`)."""

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and not float(value).is_integer():
            raise ValueError(f"above 1 must be a whole number of GPUs (got {value})")
        return value


class Evaluation(_Strict):
    """When and how long the policy is evaluated."""

    interval: int = Field(10, gt=0)
    """Training iterations between evaluations."""
    episodes: int = Field(10, gt=0)
    """Episodes per evaluation."""


class Checkpointing(_Strict):
    """How often a trial checkpoints and how many checkpoints it keeps."""

    frequency: int = Field(10, ge=0)
    """Training iterations between checkpoints; 0 checkpoints only at the end."""
    keep: int = Field(2, gt=0)


class Failure(_Strict):
    """How many times Tune restarts a failed trial from its last checkpoint."""

    max_failures: int = Field(2, ge=0)


class Tracking(_Strict):
    """Where MLflow records the sweep."""

    uri: str | None = None
    """MLflow tracking URI; None means a sqlite file `mlflow.db` in the storage directory.
    Never with credentials in it: MLflow reads them from `MLFLOW_TRACKING_USERNAME` and
    `MLFLOW_TRACKING_PASSWORD`, while the URI itself is printed and saved with the sweep."""
    experiment: str | None = None
    """MLflow experiment name; None means the spec's name."""

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        return None if value is None else refuse_credentials(value)


def refuse_credentials(uri: str) -> str:
    """`uri` itself, if it holds no `user:password@`: URIs are printed, and pickled with the
    sweep's state, so credentials must come from MLflow's environment variables instead."""
    if "@" in urlsplit(uri).netloc:
        raise ValueError(
            "credentials in the tracking URI would be printed and saved with the sweep; remove "
            "them and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead"
        )
    return uri


class Spec(_Strict):
    """A validated tune spec. Build one with `load_spec`, which also checks the algorithm."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The sweep's name: the Tune experiment directory and the default MLflow experiment."""
    algorithm: str
    datasets: list[str] = Field(min_length=1)
    """Dataset ids, a sweep axis: each dataset is a group of trials."""
    env: str | None = None
    """Gymnasium env id; None takes it from the dataset's metadata."""
    budgets: Budgets
    hyperparameters: dict[str, Any] = {}
    """Algorithm config fields fixed for every trial."""
    grid: dict[str, list[Any]] = {}
    """Sweep axes: algorithm config field → the values to try (full cross product)."""
    dataset_overrides: dict[str, dict[str, Any]] = {}
    """Per-dataset settings, as CORL keeps them: dataset id → algorithm config fields that
    replace `hyperparameters` in that dataset's trials (a method's per-task expectile, β range
    or κ ramp). A field also in `grid` is refused: a trial cannot take both."""
    seeds: list[int] | int = 1
    """Seeds as a list, or a count n meaning seeds 0..n-1."""
    seeds_per_trial: int = 1
    """K: seeds one trial trains side by side (small networks leave a trial's CPU or GPU mostly
    idle). The seed list splits, in order, into runs of K consecutive seeds s, s+1, …, s+K-1;
    each run is one trial whose config has `seed` = s, and each seed still gets its own MLflow
    run. Not a hyperparameter: `O2OConfig.seeds_per_trial` takes it from here."""
    resources: Resources = Resources()
    evaluation: Evaluation = Evaluation()
    checkpoint: Checkpointing = Checkpointing()
    failure: Failure = Failure()
    tracking: Tracking = Tracking()
    storage: str = "runs"
    """Tune storage path; a relative path is resolved against the working directory at sweep
    time. A URI (``s3://…``) is passed to Tune as is and then needs an explicit tracking.uri."""

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets_is_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of dataset ids; write [{value}]")
        return value

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str, info: ValidationInfo) -> str:
        known = _known_algorithms(info)
        if known is not None and value not in known:
            raise ValueError(f"unknown algorithm {value!r} (known: {', '.join(sorted(known))})")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        _check_names(value, info)
        return value

    @field_validator("grid")
    @classmethod
    def _valid_grid(cls, value: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        _check_names(value, info)
        for key, values in value.items():
            if not values:
                raise ValueError(f"{key!r} has no values; give at least one")
            if key in info.data.get("hyperparameters", {}):
                raise ValueError(f"{key!r} is also in hyperparameters; fix it or sweep it")
        return value

    @field_validator("dataset_overrides")
    @classmethod
    def _valid_dataset_overrides(
        cls, value: dict[str, dict[str, Any]], info: ValidationInfo
    ) -> dict[str, dict[str, Any]]:
        datasets = info.data.get("datasets") or []
        grid = info.data.get("grid") or {}
        for name, fields in value.items():
            if name not in datasets:
                raise ValueError(f"{name!r} is not one of the spec's datasets ({', '.join(datasets)})")
            try:
                _check_names(fields, info)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            for key in fields:
                if key in grid:
                    raise ValueError(f"{name}: {key!r} is also in grid; sweep it or set it per dataset")
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _valid_seeds(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"a seed count must be >= 1 (got {value})")
            return value
        if not isinstance(value, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in value
        ):
            raise ValueError(f"must be a list of integer seeds or a count (got {value!r})")
        if not value:
            raise ValueError("the seed list is empty")
        if any(s < 0 for s in value):
            raise ValueError(f"seeds must be >= 0 (got {value})")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate seeds in {value}")
        return value

    @field_validator("seeds_per_trial", mode="before")
    @classmethod
    def _valid_seeds_per_trial(cls, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"must be a whole number of seeds >= 1 (got {value!r})")
        return value

    @field_validator("seeds_per_trial")
    @classmethod
    def _seeds_split_into_trials(cls, value: int, info: ValidationInfo) -> int:
        """Refuse a seed list that does not split, in order, into runs of `value` consecutive
        seeds: a trial trains seeds s..s+K-1 from its one `seed`, so any other grouping could
        not be run (and a silent regrouping would run other seeds than the spec lists)."""
        seeds = info.data.get("seeds")
        if value == 1 or seeds is None:  # a bad `seeds` is reported on its own
            return value
        seed_list = list(range(seeds)) if isinstance(seeds, int) else seeds
        if len(seed_list) % value:
            fix = (
                f"write seeds: {-(-seeds // value) * value}"
                if isinstance(seeds, int)
                else f"list a multiple of {value} seeds"
            )
            raise ValueError(
                f"{value} needs the seed count to be a multiple of {value} (got {len(seed_list)} "
                f"seeds); {fix}, or change seeds_per_trial"
            )
        for start in range(0, len(seed_list), value):
            chunk = seed_list[start : start + value]
            if chunk != list(range(chunk[0], chunk[0] + value)):
                raise ValueError(
                    f"{value} trains seeds s..s+{value - 1} in one trial, so the seeds of a trial "
                    f"must be consecutive and ascending: {chunk} are not; list the seeds in runs of "
                    f"{value} such seeds, e.g. {list(range(chunk[0], chunk[0] + value))}"
                )
        return value

    @model_validator(mode="after")
    def _remote_storage_needs_uri(self) -> Spec:
        if "://" in self.storage and self.tracking.uri is None:
            raise ValueError(
                f"tracking.uri: required when storage is a URI ({self.storage}); "
                "the default sqlite file needs a local directory"
            )
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds to run, in order."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def trial_seeds(self) -> list[int]:
        """Each trial's `seed`, in order: the first of its `seeds_per_trial` consecutive seeds
        (every seed when a trial trains one)."""
        return self.seed_list[:: self.seeds_per_trial]

    @property
    def overridden_fields(self) -> list[str]:
        """The config fields some dataset overrides (`dataset_overrides`), sorted."""
        return sorted({key for fields in self.dataset_overrides.values() for key in fields})

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: `tracking.experiment`, else the spec's name."""
        return self.tracking.experiment or self.name

    def storage_path(self) -> str:
        """Tune's storage path: absolute (resolved against the working directory now) or a URI."""
        if "://" in self.storage:
            return self.storage
        return str(Path(self.storage).expanduser().resolve())

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: `tracking.uri`, else sqlite in the storage directory."""
        if self.tracking.uri is not None:
            return self.tracking.uri
        return f"sqlite:///{Path(self.storage_path()) / 'mlflow.db'}"

    def trials(self) -> list[dict[str, Any]]:
        """One dict per (dataset, trial seed, grid point): "dataset", "seed" and each grid key.

        "seed" is the trial's first seed (`trial_seeds`): a trial trains it and the next
        `seeds_per_trial` - 1. The order is deterministic: datasets as listed, then seeds, then
        grid points with the first grid key varying slowest.
        """
        keys = list(self.grid)
        points = list(itertools.product(*(self.grid[k] for k in keys)))
        return [
            {"dataset": dataset, "seed": seed, **dict(zip(keys, point, strict=True))}
            for dataset in self.datasets
            for seed in self.trial_seeds
            for point in points
        ]


def load_spec(
    path: str | Path,
    known_algorithms: Mapping[str, set[str]],
    overrides: Mapping[str, Any] | None = None,
) -> Spec:
    """Read and validate a spec file.

    `known_algorithms` maps each registered algorithm to its hyperparameter names; the spec's
    algorithm must be one of them, and its hyperparameter and grid keys must be among its names.
    `overrides` (dotted key → value, e.g. ``{"tracking.uri": …}``) replace the file's values
    before validation, so the command line's `--storage` or `--tracking-uri` are checked as if
    written in the file. Any problem raises `SpecError` with one line naming the file and the key.
    """
    path = Path(path)
    where = f"spec {path.name}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{where}: is a directory; give the path of a spec file (YAML)") from None
    except (OSError, UnicodeDecodeError) as exc:  # no permission, a binary file
        raise SpecError(f"{where}: cannot be read as text ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise SpecError(f"{where}: the top level must be a mapping of keys (got {got})")
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            if not isinstance(node.get(key, {}), dict):
                raise SpecError(f"{where}: {key}: must be a mapping of keys")
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Spec.model_validate(data, context={"known_algorithms": known_algorithms})
    except ValidationError as exc:
        raise SpecError(f"{where}: {_first_error(exc)}") from None


def _known_algorithms(info: ValidationInfo) -> Mapping[str, set[str]] | None:
    return (info.context or {}).get("known_algorithms")


def _check_names(section: Mapping[str, Any], info: ValidationInfo) -> None:
    """Refuse reserved keys, and keys that are not fields of the spec's algorithm."""
    for key in section:
        if key in RESERVED_AXES:
            raise ValueError(f"{key!r} is set by the spec's {key}s list, not here")
        if key == "seeds_per_trial":
            raise ValueError(f"{key!r} is a top-level key of the spec, not a hyperparameter")
    known = _known_algorithms(info)
    algorithm = info.data.get("algorithm")
    if known is None or algorithm not in known:
        return
    names = known[algorithm]
    for key in section:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown hyperparameter {key!r} for {algorithm}{hint}")


def _first_error(exc: ValidationError) -> str:
    """The first pydantic error as 'key.path: message', with unknown keys listing the allowed."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    if error["type"] == "extra_forbidden":
        key = loc.pop()
        allowed = ", ".join(_fields_at(loc))
        where = f"{_dotted(loc)}: " if loc else ""
        return f"{where}unknown key {key!r} (allowed: {allowed})"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] != "value_error" and isinstance(value, (int, float, str, bool)):
        message = f"{message} (got {value!r})"
    return f"{_dotted(loc)}: {message}" if loc else message


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: list[Any]) -> list[str]:
    """The field names allowed at a location inside `Spec`."""
    model: type[BaseModel] = Spec
    for part in loc:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem
