"""MLflowTracker against real Ray Tune and a real sqlite MLflow store.

Protects the tracking contract: one run per trial, params/tags as documented, the engine's
`o2o_step` as MLflow's step, statuses that follow the trial, and no duplicate steps when a trial
is restarted — by Tune after a failure, or by a resumed sweep with a new driver.
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

from o2o.platform.tracking import TAG_SWEEP, TAG_TRIAL_ID, MLflowTracker

DATASETS = ["hopper-medium", "walker2d-medium"]
PARAM_KEYS = ["dataset_id", "seed", "lr", "api_token", "model.hidden", "absent"]
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
            "o2o": {"eval/normalized_score": float(i)},
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


def test_tune_retry_continues_the_same_run_without_duplicate_steps(
    uri: str, tmp_path: Path
) -> None:
    extra = {"marker_dir": str(tmp_path)}
    results = _tuner(flaky, uri, tmp_path, "sweep-b", 1, extra).fit()
    assert not results.errors
    assert all(Path(tmp_path, f"failed-{d}").exists() for d in DATASETS), "failure was injected"

    client, runs = _runs(uri, "sweep-b")
    assert len(runs) == 2, "a retried trial keeps its one run"
    for run in runs:
        assert _steps(client, run.info.run_id) == STEPS, "replayed step 20 is not logged twice"
        assert run.data.tags["phase"] == "online", "changed o2o_tags are updated"
        assert run.info.status == "FINISHED"


def test_resumed_sweep_reopens_failed_runs(uri: str, tmp_path: Path) -> None:
    extra = {"marker_dir": str(tmp_path)}
    results = _tuner(flaky, uri, tmp_path, "sweep-c", 0, extra).fit()
    assert len(results.errors) == 2

    client, runs = _runs(uri, "sweep-c")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    assert all(_steps(client, r.info.run_id) == [0, 10, 20] for r in runs)

    # A new driver: Tune unpickles the tracker without its in-memory state, so it must find
    # each trial's run in MLflow and read back the last logged step.
    path = str(tmp_path / "runs" / "sweep-c")
    resumed = tune.Tuner.restore(path, trainable=flaky, resume_errored=True).fit()
    assert not resumed.errors

    client, runs = _runs(uri, "sweep-c")
    assert len(runs) == 2, "the resumed trials continue their runs, no new ones"
    for run in runs:
        assert _steps(client, run.info.run_id) == STEPS, "no step logged twice across drivers"
        assert run.info.status == "FINISHED", "a failed run reopened by a restart finishes"


def test_tracker_pickles_without_client_or_run_state(uri: str) -> None:
    tracker = _tracker(uri, "s")
    tracker.setup()
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy._client is None and copy._runs == {}, "a resumed driver starts clean"
    assert copy.experiment_id == tracker.experiment_id, "and finds the same experiment"
