"""MLflowTracker against real Ray Tune and a real sqlite MLflow store.

Protects the tracking contract: one run per trial (one per seed for a trial of seeds_per_trial
K > 1, each logging its own seed's metrics), params/tags as documented, the engine's `o2o_step`
as MLflow's step, statuses that follow the trial, and no duplicate steps when a trial is
restarted — by Tune after a failure, or by a resumed sweep with a new driver.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial

from o2o.platform.tracking import TAG_SEED_LANE, TAG_SWEEP, TAG_TRIAL_ID, MLflowTracker

DATASETS = ["hopper-medium", "walker2d-medium"]
PARAM_KEYS = ["dataset_id", "seed", "seeds_per_trial", "lr", "api_token", "model.hidden", "absent"]
STEPS = [0, 10, 20, 30, 40]


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One sqlite store for the module (creating one is slow); sweeps keep the tests apart.
    Its directory does not exist yet: the tracker must create it."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking')}/mlflow/db.sqlite"


@pytest.fixture(scope="module", autouse=True)
def ray_with_this_module(ray_session) -> None:
    """The session's Ray; workers cannot import this test module by name, so its trainables
    travel by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def steady(config: dict) -> None:
    """Five results on the engine's contract: o2o metrics, o2o_step, o2o_tags."""
    for i in range(5):
        tune.report(
            {
                "o2o": {"eval/normalized_score": float(i), "offline/critic_loss": 1.0 / (i + 1)},
                "o2o_step": i * 10,
                "o2o_tags": {"dataset_id": config["dataset_id"]},
                "not_o2o": 123.0,
            }
        )


def _score(seed: int, i: int) -> float:
    """Seed `seed`'s score at iteration i: every seed's own, so a point logged to another
    seed's run shows."""
    return 100.0 * seed + i


def _scores(config: dict, i: int) -> dict:
    """The score part of a result on the engine's contract: a K-seed trial's ``o2o_seeds`` (seed
    `seed` + lane's own scores) with their mean as ``o2o``; a one-seed trial's ``o2o`` alone."""
    k = config.get("seeds_per_trial", 1)
    per_seed = [
        {"eval/normalized_score": _score(config["seed"] + lane, i), "counters/env_steps": float(i * 10)}
        for lane in range(k)
    ]
    if k == 1:
        return {"o2o": {"eval/normalized_score": _score(config["seed"], i)}}
    mean = {key: sum(m[key] for m in per_seed) / k for key in per_seed[0]}
    return {"o2o": mean, "o2o_seeds": per_seed}


def two_seeds(config: dict) -> None:
    """Five results of a K=2 trial: each seed's metrics, shared o2o_step and o2o_tags."""
    for i in range(5):
        tune.report(
            {
                **_scores(config, i),
                "o2o_step": i * 10,
                "o2o_tags": {"dataset_id": config["dataset_id"], "o2o.algorithm": "iql"},
                "done": i == 4,
            }
        )


def flaky(config: dict) -> None:
    """Checkpoints only after iteration 1 and fails once at iteration 3, so a restore replays
    iteration 2 (step 20) — which must not be logged twice."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(Path(d, "i").read_text()) + 1
    marker = Path(config["marker_dir"], f"failed-{config['dataset_id']}")
    for i in range(start, 5):
        if i == 3 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure")
        result = {
            **_scores(config, i),
            "o2o_step": i * 10,
            "o2o_tags": {
                "dataset_id": config["dataset_id"],
                "phase": "online" if i >= 2 else "offline",
            },
        }
        if i == 1:
            with tempfile.TemporaryDirectory() as d:
                Path(d, "i").write_text(str(i))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(result)


def _tracker(uri: str, sweep: str) -> MLflowTracker:
    return MLflowTracker(
        tracking_uri=uri,
        experiment_name="exp",
        sweep_name=sweep,
        param_keys=PARAM_KEYS,
        tags={"o2o.code_version": "abc123", "github_token": "must-not-appear"},
    )


def _tuner(
    trainable, uri: str, tmp_path: Path, sweep: str, max_failures: int, extra: dict
) -> tune.Tuner:
    return tune.Tuner(
        trainable,
        param_space={"dataset_id": tune.grid_search(DATASETS), "seed": 0, **extra},
        run_config=tune.RunConfig(
            name=sweep,
            storage_path=str(tmp_path / "runs"),
            callbacks=[_tracker(uri, sweep)],
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
        ),
    )


def _runs(uri: str, sweep: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id], f"tags.`{TAG_SWEEP}` = '{sweep}'")
    return client, runs


def _steps(client: MlflowClient, run_id: str, key: str = "eval/normalized_score") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_one_run_per_trial_with_params_tags_metrics(uri: str, tmp_path: Path) -> None:
    config = {"lr": 3e-4, "api_token": "hunter2", "model": {"hidden": 64}}
    results = _tuner(steady, uri, tmp_path, "sweep-a", 0, config).fit()
    assert not results.errors

    client, runs = _runs(uri, "sweep-a")
    assert len(runs) == 2, "one MLflow run per Tune trial"
    trial_ids = {r.metrics["trial_id"] for r in results}
    assert {r.data.tags[TAG_TRIAL_ID] for r in runs} == trial_ids
    for run in runs:
        params, tags = run.data.params, run.data.tags
        dataset = params["dataset_id"]
        assert params == {"dataset_id": dataset, "seed": "0", "lr": "0.0003", "model.hidden": "64"}, (
            "configured keys logged as str, dotted keys looked up one level deep, "
            "secret-named keys and absent keys left out"
        )
        assert tags["dataset_id"] == dataset, "o2o_tags become run tags"
        assert tags["o2o.code_version"] == "abc123"
        assert "github_token" not in tags, "secret-named tags are never logged"
        assert run.info.run_name.startswith(f"{dataset}-s0-")
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) == {"eval/normalized_score", "offline/critic_loss"}, (
            "only result['o2o'] is logged, not the rest of the Tune result"
        )
        history = client.get_metric_history(run.info.run_id, "eval/normalized_score")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (s, s / 10) for s in STEPS
        ], "o2o_step is MLflow's step"


def _assert_own_seed_scores(client: MlflowClient, run) -> None:
    """Every point of the run's score is its own seed's (the `seed` param), at its step."""
    seed = int(run.data.params["seed"])
    history = sorted(client.get_metric_history(run.info.run_id, "eval/normalized_score"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(s, _score(seed, s // 10)) for s in STEPS]


@pytest.mark.parametrize("k", [1, 2], ids=["one-seed", "two-seeds"])
def test_tune_retry_continues_the_same_run_without_duplicate_steps(
    uri: str, tmp_path: Path, k: int
) -> None:
    extra = {"marker_dir": str(tmp_path), "seeds_per_trial": k}
    results = _tuner(flaky, uri, tmp_path, f"sweep-b{k}", 1, extra).fit()
    assert not results.errors
    assert all(Path(tmp_path, f"failed-{d}").exists() for d in DATASETS), "failure was injected"

    client, runs = _runs(uri, f"sweep-b{k}")
    assert len(runs) == 2 * k, "a retried trial keeps its one run per seed"
    for run in runs:
        assert _steps(client, run.info.run_id) == STEPS, "replayed step 20 is not logged twice"
        _assert_own_seed_scores(client, run)
        assert run.data.tags["phase"] == "online", "changed o2o_tags are updated"
        assert run.info.status == "FINISHED"


@pytest.mark.parametrize("k", [1, 2], ids=["one-seed", "two-seeds"])
def test_resumed_sweep_reopens_failed_runs(uri: str, tmp_path: Path, k: int) -> None:
    extra = {"marker_dir": str(tmp_path), "seeds_per_trial": k}
    sweep = f"sweep-c{k}"
    results = _tuner(flaky, uri, tmp_path, sweep, 0, extra).fit()
    assert len(results.errors) == 2

    client, runs = _runs(uri, sweep)
    assert [r.info.status for r in runs] == ["FAILED"] * 2 * k
    assert all(_steps(client, r.info.run_id) == [0, 10, 20] for r in runs)
    before = {r.info.run_id for r in runs}

    # A new driver: Tune unpickles the tracker without its in-memory state, so it must find
    # each seed's run in MLflow (by trial id, and lane where K > 1) and read back its last step.
    path = str(tmp_path / "runs" / sweep)
    resumed = tune.Tuner.restore(path, trainable=flaky, resume_errored=True).fit()
    assert not resumed.errors

    client, runs = _runs(uri, sweep)
    assert {r.info.run_id for r in runs} == before, "the resumed trials continue their runs, no new ones"
    for run in runs:
        assert _steps(client, run.info.run_id) == STEPS, "no step logged twice across drivers"
        _assert_own_seed_scores(client, run)
        assert run.info.status == "FINISHED", "a failed run reopened by a restart finishes"


def test_a_two_seed_trial_logs_each_seed_to_its_own_run(uri: str, tmp_path: Path) -> None:
    """Seeds 0..3 as two K=2 trials: four runs, each seed's own metrics, the `seed` param
    `o2o report` groups by, and the sweep's summary with one entry per seed and its run."""
    from o2o.platform.report import _load_runs
    from o2o.platform.spec import Spec
    from o2o.platform.sweep import _runs_by_trial, _seed_summaries

    tuner = tune.Tuner(
        two_seeds,
        param_space={"dataset_id": "hopper-medium", "seed": tune.grid_search([0, 2]), "seeds_per_trial": 2},
        run_config=tune.RunConfig(
            name="sweep-k2",
            storage_path=str(tmp_path / "runs"),
            callbacks=[_tracker(uri, "sweep-k2")],
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors

    client, runs = _runs(uri, "sweep-k2")
    by_seed = {int(r.data.params["seed"]): r for r in runs}
    assert sorted(by_seed) == [0, 1, 2, 3] and len(runs) == 4, "one run per seed, seed = trial seed + lane"
    trial_of = {r.config["seed"]: r.metrics["trial_id"] for r in results}
    for seed, run in by_seed.items():
        first, lane = seed - seed % 2, seed % 2
        assert run.data.tags[TAG_TRIAL_ID] == trial_of[first], "both seeds' runs carry their trial's id"
        assert run.data.tags[TAG_SEED_LANE] == str(lane)
        assert run.info.run_name == f"hopper-medium-s{seed}-{trial_of[first]}"
        assert run.data.params == {"dataset_id": "hopper-medium", "seed": str(seed), "seeds_per_trial": "2"}
        assert run.data.tags["dataset_id"] == "hopper-medium", "shared o2o_tags go on every seed's run"
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) == {"eval/normalized_score", "counters/env_steps"}
        _assert_own_seed_scores(client, run)

    # `o2o report` reads these as it reads one-seed trials' runs: a row per seed.
    _, _, rows = _load_runs(uri, "exp", "eval/normalized_score", "sweep-k2", include_unfinished=False)
    assert [(r.seed, r.final) for r in rows] == [(str(s), _score(s, 4)) for s in range(4)]

    spec = Spec.model_validate(
        {
            "name": "sweep-k2",
            "algorithm": "iql",
            "datasets": ["hopper-medium"],
            "budgets": {"offline_updates": 1, "online_env_steps": 0},
            "seeds": 4,
            "seeds_per_trial": 2,
            "tracking": {"uri": uri, "experiment": "exp"},
        }
    )
    runs_by_trial = _runs_by_trial(spec)
    summary = [
        entry
        for result in results
        for entry in _seed_summaries(result.metrics["trial_id"], result.config, result.metrics, None, runs_by_trial)
    ]
    assert sorted((e["seed"], e["final_score"], e["run_id"], e["done"]) for e in summary) == [
        (seed, _score(seed, 4), by_seed[seed].info.run_id, True) for seed in range(4)
    ], "the sweep's summary: each seed, its own final score and its own run"


def test_tracker_pickles_without_client_or_run_state(uri: str) -> None:
    tracker = _tracker(uri, "s")
    tracker.setup()
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy._client is None and copy._runs == {}, "a resumed driver starts clean"
    assert copy.experiment_id == tracker.experiment_id, "and finds the same experiment"


def _stub(trial_id: str, k: int) -> Trial:
    return Trial("o2o", config={"dataset_id": "d", "seed": 5, "seeds_per_trial": k}, trial_id=trial_id, stub=True)


SEEDS_5_6 = [{"eval/normalized_score": 1.0}, {"eval/normalized_score": 2.0}]


@pytest.mark.parametrize(
    ("name", "result", "message"),
    [
        (
            "histograms",
            {"o2o_seeds": SEEDS_5_6, "o2o_histograms": {"online/beta": {"edges": [0.0, 1.0], "counts": [3]}}},
            r"^trial t-histograms trains 2 seeds \(seeds_per_trial\) but its result has 'o2o_histograms' \(online/beta\), one set",
        ),
        (
            "short-histograms",
            {"o2o_seeds": SEEDS_5_6, "o2o_histograms_seeds": [{"online/beta": {"edges": [0.0, 1.0], "counts": [3]}}]},
            r"^trial t-short-histograms trains 2 seeds \(seeds_per_trial\) but its result's 'o2o_histograms_seeds' holds 1",
        ),
        ("mean-only", {}, r"^trial t-mean-only trains 2 seeds \(seeds_per_trial\) but its result has no 'o2o_seeds', only 'o2o'"),
        ("short", {"o2o_seeds": SEEDS_5_6[:1]}, r"^trial t-short trains 2 seeds \(seeds_per_trial\) but its result's 'o2o_seeds' holds 1"),
    ],
)
def test_a_two_seed_result_off_the_contract_is_refused_before_anything_is_logged(
    uri: str, name: str, result: dict, message: str
) -> None:
    """Driven as Tune would call the tracker (a stub trial, no Ray)."""
    tracker = _tracker(uri, "sweep-refused")
    trial = _stub(f"t-{name}", 2)
    tracker.on_trial_start(0, [trial], trial)
    shared = {"o2o": {"eval/normalized_score": 1.5}, "o2o_step": 10, "o2o_tags": {"phase": "online"}}
    with pytest.raises(ValueError, match=message):
        tracker.on_trial_result(0, [trial], trial, {**shared, **result})
    client, runs = _runs(uri, "sweep-refused")
    mine = [r for r in runs if r.data.tags[TAG_TRIAL_ID] == trial.trial_id]
    assert sorted(r.data.params["seed"] for r in mine) == ["5", "6"], "the trial's two runs were opened"
    for run in mine:
        assert not run.data.metrics and "phase" not in run.data.tags, "neither seed's run logged any of it"
        assert client.list_artifacts(run.info.run_id) == [], "nor any histogram"
