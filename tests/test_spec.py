"""Tune spec loading: a valid spec expands to the right trials, and every bad spec fails at load
time with one line naming the file and the key — before any Ray resource is used."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from o2o.platform.spec import SpecError, load_spec

KNOWN = {"iql": {"expectile", "temperature", "actor_lr"}, "sac": {"actor_lr", "tau"}}

QUICKSTART = """\
name: quickstart
algorithm: iql
datasets: [hopper-medium, walker2d-medium]
budgets:
  offline_updates: 1000
  online_env_steps: 500
hyperparameters:
  expectile: 0.7
grid:
  temperature: [1.0, 3.0]
  actor_lr: [0.0003]
seeds: 2
resources:
  cpus_per_trial: 1
  gpus_per_trial: 0.25
evaluation:
  interval: 5
  episodes: 3
checkpoint:
  frequency: 0
failure:
  max_failures: 1
storage: runs
"""


_DELETE = object()
"""A change value meaning: remove the key."""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _patched(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(QUICKSTART)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    return _write(tmp_path, yaml.safe_dump(data), "bad.yaml")



def test_quickstart_loads_with_defaults_filled(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, QUICKSTART), KNOWN)
    assert spec.algorithm == "iql"
    assert spec.seed_list == [0, 1], "a seed count n means seeds 0..n-1"
    assert spec.resources.gpus_per_trial == 0.25, "fractional GPUs are allowed"
    assert spec.resources.max_concurrent_trials is None
    assert spec.checkpoint.keep == 2 and spec.checkpoint.frequency == 0
    assert spec.env is None, "env defaults to the dataset's"
    assert spec.experiment_name == "quickstart", "the MLflow experiment defaults to the name"


def test_trials_expand_datasets_seeds_and_grid_in_a_fixed_order(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, QUICKSTART), KNOWN)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2, "datasets × seeds × grid points"
    assert trials[:3] == [
        {"dataset": "hopper-medium", "seed": 0, "temperature": 1.0, "actor_lr": 0.0003},
        {"dataset": "hopper-medium", "seed": 0, "temperature": 3.0, "actor_lr": 0.0003},
        {"dataset": "hopper-medium", "seed": 1, "temperature": 1.0, "actor_lr": 0.0003},
    ]
    assert trials == spec.trials(), "deterministic"
    assert len({tuple(sorted(t.items())) for t in trials}) == len(trials), "no duplicate trials"


def test_explicit_seed_list_is_kept(tmp_path: Path) -> None:
    spec = load_spec(_patched(tmp_path, seeds=[7, 3]), KNOWN)
    assert spec.seed_list == [7, 3]
    assert [t["seed"] for t in spec.trials()][:4] == [7, 7, 3, 3]


def test_seeds_per_trial_splits_the_seeds_into_trials_of_consecutive_seeds(tmp_path: Path) -> None:
    spec = load_spec(_patched(tmp_path, seeds=4, seeds_per_trial=2), KNOWN)
    assert spec.seed_list == [0, 1, 2, 3], "every seed still runs"
    assert spec.trial_seeds == [0, 2], "a trial's seed is the first of its chunk"
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 2, "datasets × seed chunks × grid points"
    assert [(t["dataset"], t["seed"], t["temperature"]) for t in trials[:4]] == [
        ("hopper-medium", 0, 1.0),
        ("hopper-medium", 0, 3.0),
        ("hopper-medium", 2, 1.0),
        ("hopper-medium", 2, 3.0),
    ]
    listed = load_spec(_patched(tmp_path, seeds=[7, 8, 9, 3, 4, 5], seeds_per_trial=3), KNOWN)
    assert listed.trial_seeds == [7, 3], "a listed order is kept: chunks of K in the order written"
    assert load_spec(_write(tmp_path, QUICKSTART), KNOWN).trial_seeds == [0, 1], "K defaults to 1: a trial per seed"


def test_a_resume_must_repeat_seeds_per_trial(tmp_path: Path) -> None:
    """The sweep's settings file keeps K; a resume under another K is refused naming it, and a
    sweep whose settings file predates the field (it ran one seed per trial) resumes under K=1."""
    import json
    import pickle

    from o2o.algorithms import config_class
    from o2o.platform.sweep import SETTINGS_FILE, _refuse_changed_sweep, _settings

    sweep_dir = tmp_path / "runs" / "quickstart"
    sweep_dir.mkdir(parents=True)
    trainable = config_class("iql")().algo_class.__name__
    (sweep_dir / "tuner.pkl").write_bytes(pickle.dumps({"__trainable_name": trainable}))
    one, two = (load_spec(_patched(tmp_path, seeds=4, seeds_per_trial=k), KNOWN) for k in (1, 2))

    (sweep_dir / SETTINGS_FILE).write_text(json.dumps(_settings(two)))
    assert _settings(two)["seeds_per_trial"] == 2
    _refuse_changed_sweep(two, sweep_dir)
    with pytest.raises(SpecError, match=r"was started with seeds_per_trial: 2; this spec has seeds_per_trial: 1; resume it"):
        _refuse_changed_sweep(one, sweep_dir)

    older = {k: v for k, v in _settings(one).items() if k != "seeds_per_trial"}
    (sweep_dir / SETTINGS_FILE).write_text(json.dumps(older))
    _refuse_changed_sweep(one, sweep_dir)
    with pytest.raises(SpecError, match=r"was started with seeds_per_trial: 1; this spec has seeds_per_trial: 2"):
        _refuse_changed_sweep(two, sweep_dir)


def test_storage_and_tracking_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(_write(tmp_path, QUICKSTART), KNOWN)
    assert spec.storage_path() == str(tmp_path.resolve() / "runs")
    assert spec.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}"
    explicit = load_spec(_patched(tmp_path, tracking={"uri": "http://mlflow:5000"}), KNOWN)
    assert explicit.tracking_uri() == "http://mlflow:5000"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"budgets__offline_updates": -5},
            "budgets.offline_updates: Input should be greater than or equal to 0 "
            "(got -5)",
        ),
        (
            {"budgets__offline_updates": 0, "budgets__online_env_steps": 0},
            "budgets: offline_updates and online_env_steps are both 0",
        ),
        ({"budgets__online_env_steps": _DELETE}, "budgets.online_env_steps: Field required"),
        ({"hyperparams": {}}, "unknown key 'hyperparams' (allowed: name, algorithm,"),
        (
            {"resources__gpus": 1},
            "resources: unknown key 'gpus' (allowed: cpus_per_trial, gpus_per_trial,",
        ),
        (
            {"resources__gpus_per_trial": -1},
            "resources.gpus_per_trial: Input should be greater than or equal to 0",
        ),
        (
            {"resources__gpus_per_trial": 1.5},
            "resources.gpus_per_trial: above 1 must be a whole number of GPUs",
        ),
        (
            {"resources__cpus_per_trial": 0},
            "resources.cpus_per_trial: Input should be greater than 0",
        ),
        ({"evaluation__interval": 0}, "evaluation.interval: Input should be greater than 0"),
        ({"checkpoint__keep": 0}, "checkpoint.keep: Input should be greater than 0"),
        ({"algorithm": "foo"}, "algorithm: unknown algorithm 'foo' (known: iql, sac)"),
        (
            {"hyperparameters": {"expectle": 0.7}},
            "hyperparameters: unknown hyperparameter 'expectle' for iql; "
            "did you mean 'expectile'?",
        ),
        ({"grid": {"tau": [0.005]}}, "grid: unknown hyperparameter 'tau' for iql"),
        (
            {"grid": {"expectile": [0.7, 0.9]}},
            "grid: 'expectile' is also in hyperparameters; fix it or sweep it",
        ),
        ({"grid": {"temperature": []}}, "grid: 'temperature' has no values"),
        (
            {"dataset_overrides": {"walker2d-medium-replay": {"expectile": 0.9}}},
            "dataset_overrides: 'walker2d-medium-replay' is not one of the spec's datasets (hopper-medium, walker2d-medium)",
        ),
        (
            {"dataset_overrides": {"hopper-medium": {"expectle": 0.9}}},
            "dataset_overrides: hopper-medium: unknown hyperparameter 'expectle' for iql; did you mean 'expectile'?",
        ),
        (
            {"dataset_overrides": {"hopper-medium": {"temperature": 10.0}}},
            "dataset_overrides: hopper-medium: 'temperature' is also in grid; sweep it or set it per dataset",
        ),
        ({"dataset_overrides": {"hopper-medium": 0.9}}, "dataset_overrides.hopper-medium: Input should be a valid dictionary"),
        ({"grid": {"temperature": 3.0}}, "grid.temperature: Input should be a valid list"),
        ({"grid": {"seed": [1, 2]}}, "grid: 'seed' is set by the spec's seeds list"),
        ({"datasets": "hopper-medium"}, "datasets: must be a list of dataset ids"),
        ({"datasets": []}, "datasets: List should have at least 1 item"),
        ({"seeds": 0}, "seeds: a seed count must be >= 1 (got 0)"),
        ({"seeds": [1, 1]}, "seeds: duplicate seeds in [1, 1]"),
        ({"seeds": []}, "seeds: the seed list is empty"),
        ({"seeds": [0, -1]}, "seeds: seeds must be >= 0"),
        ({"seeds": "three"}, "seeds: must be a list of integer seeds or a count"),
        ({"seeds_per_trial": 0}, "seeds_per_trial: must be a whole number of seeds >= 1 (got 0)"),
        ({"seeds_per_trial": 1.5}, "seeds_per_trial: must be a whole number of seeds >= 1 (got 1.5)"),
        ({"seeds_per_trial": True}, "seeds_per_trial: must be a whole number of seeds >= 1 (got True)"),
        (
            {"seeds": 10, "seeds_per_trial": 4},
            "seeds_per_trial: 4 needs the seed count to be a multiple of 4 (got 10 seeds); "
            "write seeds: 12, or change seeds_per_trial",
        ),
        (
            {"seeds": [0, 1, 2], "seeds_per_trial": 2},
            "seeds_per_trial: 2 needs the seed count to be a multiple of 2 (got 3 seeds); "
            "list a multiple of 2 seeds, or change seeds_per_trial",
        ),
        (
            {"seeds": [0, 1, 2, 4], "seeds_per_trial": 2},
            "seeds_per_trial: 2 trains seeds s..s+1 in one trial, so the seeds of a trial must be "
            "consecutive and ascending: [2, 4] are not; list the seeds in runs of 2 such seeds, e.g. [2, 3]",
        ),
        (
            {"seeds": [1, 0], "seeds_per_trial": 2},
            "seeds_per_trial: 2 trains seeds s..s+1 in one trial, so the seeds of a trial must be "
            "consecutive and ascending: [1, 0] are not",
        ),
        (
            {"hyperparameters": {"seeds_per_trial": 2}},
            "hyperparameters: 'seeds_per_trial' is a top-level key of the spec, not a hyperparameter",
        ),
        ({"name": "my sweep"}, "name: String should match pattern"),
        ({"name": _DELETE}, "name: Field required"),
        ({"storage": "s3://bucket/runs"}, "tracking.uri: required when storage is a URI"),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_key(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec(_patched(tmp_path, **changes), KNOWN)
    text = str(raised.value)
    assert text.startswith(f"spec bad.yaml: {message}"), text
    assert "\n" not in text, "one line"


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n", "evil.yaml")
    expected = r"^spec evil\.yaml: invalid YAML: could not determine a constructor"
    with pytest.raises(SpecError, match=expected):
        load_spec(path, KNOWN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "spec x.yaml: the top level must be a mapping of keys (got an empty file)"),
        ("- a\n- b\n", "spec x.yaml: the top level must be a mapping of keys (got list)"),
        ("name: [unclosed\n", "spec x.yaml: invalid YAML:"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec(_write(tmp_path, text, "x.yaml"), KNOWN)
    assert str(raised.value).startswith(message)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^spec nope\.yaml: file not found$"):
        load_spec(tmp_path / "nope.yaml", KNOWN)


def test_without_a_registry_only_the_schema_is_checked() -> None:
    """Spec.model_validate without context skips the algorithm checks (a CLI can still validate
    the schema alone); load_spec always passes the registry."""
    from o2o.platform.spec import Spec

    spec = Spec.model_validate(
        {
            "name": "x",
            "algorithm": "anything",
            "datasets": ["d"],
            "budgets": {"offline_updates": 1, "online_env_steps": 0},
            "grid": {"whatever": [1]},
        }
    )
    assert spec.trials() == [{"dataset": "d", "seed": 0, "whatever": 1}]


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("tune_specs/*.yaml")), ids=lambda p: p.name)
def test_committed_specs_load_against_the_registry(path: Path) -> None:
    from o2o.platform.sweep import load

    spec = load(path)
    assert spec.trials(), "a committed spec expands to at least one trial"


def test_trials_never_take_the_cpu_the_dataset_read_needs(tmp_path: Path) -> None:
    from o2o.platform.sweep import concurrent_trials

    def spec(resources: str):  # noqa: ANN202
        body = QUICKSTART.replace("  cpus_per_trial: 1\n  gpus_per_trial: 0.25\n", resources)
        path = tmp_path / "s.yaml"
        path.write_text(body)
        return load_spec(path, KNOWN)

    assert concurrent_trials(spec("  cpus_per_trial: 0.5\n"), cluster_cpus=2) == 2
    assert concurrent_trials(spec("  cpus_per_trial: 0.5\n  max_concurrent_trials: 1\n"), cluster_cpus=2) == 1
    assert concurrent_trials(spec("  cpus_per_trial: 1\n"), cluster_cpus=16) == 15
    with pytest.raises(SpecError, match="leaves no CPU free for reading the dataset"):
        concurrent_trials(spec("  cpus_per_trial: 2\n"), cluster_cpus=2)
