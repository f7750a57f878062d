"""Fault tolerance with real process kills: real Ray, real MuJoCo, a real sqlite MLflow store.

1. A trial's actor process (the one running its RLlib Algorithm, found by the `pid` Tune
   records in every result) is SIGKILLed mid-online-phase. Tune restarts the trial from its last
   checkpoint, online replay buffer included, and the trial's one MLflow run holds every step of
   an uninterrupted run exactly once.
2. The `o2o sweep` driver process is SIGKILLed while the second of three trials runs; the trial
   actors die with it (they belong to its Ray job), the cluster survives, and
   `o2o sweep --resume` runs only the unfinished trials: the finished one is left alone, the
   interrupted one continues from its checkpoint, and each trial keeps exactly one MLflow run.

Both read what Tune writes under the sweep's storage (each trial's `result.json`, synced from
the driver after every checkpoint) to decide when to kill; nothing in the platform knows it is
being tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from o2o.platform.sweep import run_sweep
from o2o.platform.tracking import TAG_SWEEP, TAG_TRIAL_ID

pytestmark = pytest.mark.usefixtures("ray_session")

OFFLINE_UPDATES = 200
UPDATES_PER_ITERATION = 100
ENV_STEPS_PER_ITERATION = 50  # utd_ratio 1: as many updates as env steps

SPEC = """\
    name: {name}
    algorithm: iql
    datasets: [hopper-random]
    budgets: {{offline_updates: {offline}, online_env_steps: {online}}}
    hyperparameters:
      updates_per_iteration: {per_update_iteration}
      env_steps_per_iteration: {per_env_iteration}
      train_batch_size_per_learner: 64
      online_buffer_capacity: 10000
    seeds: {seeds}
    resources: {resources}
    evaluation: {{interval: 100, episodes: 1}}
    checkpoint: {{frequency: 1, keep: 1}}
    failure: {{max_failures: 2}}
    storage: {storage}
"""


def write_spec(tmp_path: Path, name: str, online: int, seeds: list[int]) -> Path:
    path = tmp_path / "spec.yaml"
    body = SPEC.format(
        name=name,
        offline=OFFLINE_UPDATES,
        online=online,
        per_update_iteration=UPDATES_PER_ITERATION,
        per_env_iteration=ENV_STEPS_PER_ITERATION,
        seeds=seeds,
        resources="{cpus_per_trial: 0.5, max_concurrent_trials: 1}",
        storage=tmp_path / "runs",
    )
    path.write_text(textwrap.dedent(body))
    return path


def expected_iterations(online_env_steps: int) -> list[tuple[int, int]]:
    """(MLflow step, env steps so far) after each iteration of an uninterrupted trial: the
    budgets are deterministic, and step = updates + env steps."""
    points, updates, env_steps = [], 0, 0
    while updates < OFFLINE_UPDATES:
        updates += min(UPDATES_PER_ITERATION, OFFLINE_UPDATES - updates)
        points.append((updates, 0))
    while env_steps < online_env_steps:
        n = min(ENV_STEPS_PER_ITERATION, online_env_steps - env_steps)
        updates, env_steps = updates + n, env_steps + n
        points.append((updates + env_steps, env_steps))
    return points


def trial_results(experiment_dir: Path) -> dict[str, list[dict]]:
    """Each trial's results as Tune wrote them to its `result.json`, by trial id (a line being
    written, or cut short by a kill, is skipped; so is a file the driver's sync is replacing)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(experiment_dir.glob("*/result.json")):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        results = []
        for line in text.splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if results:
            found[results[0]["trial_id"]] = results
    return found


def result_file(experiment_dir: Path, trial_id: str) -> Path:
    return next(p for p in experiment_dir.glob(f"*{trial_id}*/result.json"))


def online_results(results: list[dict]) -> list[dict]:
    return [r for r in results if r["o2o"]["counters/env_steps"] > 0]


def is_ray_worker(pid: int) -> bool:
    """Whether `pid` is a live Ray worker (its title is `ray::<actor class>…`), not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status and title.startswith(b"ray::")


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def the_run(client: MlflowClient, experiment_id: str, sweep: str, trial_id: str):  # noqa: ANN201 - Run
    runs = client.search_runs(
        [experiment_id], f"tags.`{TAG_SWEEP}` = '{sweep}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
    )
    assert len(runs) == 1, f"trial {trial_id}: {len(runs)} MLflow runs, expected exactly one"
    return runs[0]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_uninterrupted_history(client: MlflowClient, run_id: str, online_env_steps: int) -> None:
    """The run's metrics hold each step of an uninterrupted trial once, with its env steps, and
    the online buffer held every env step collected so far at each of them."""
    expected = expected_iterations(online_env_steps)
    env_steps = history(client, run_id, "counters/env_steps")
    assert [s for s, _ in env_steps] == [s for s, _ in expected], "a step missing or logged twice"
    assert env_steps == [(s, float(e)) for s, e in expected]
    buffer = history(client, run_id, "data/online_transitions")
    assert buffer == [(s, float(e)) for s, e in expected], "the online buffer lost rows"
    assert [s for s, _ in history(client, run_id, "eval/normalized_score")] == [
        OFFLINE_UPDATES,
        expected[-1][0],
    ], "evaluated at each phase's end only"


def first_result_after_restore(results: list[dict]) -> dict:
    """The first result of a trial restored from a checkpoint (Tune counts iterations anew)."""
    restored = [r for r in results if r["iterations_since_restore"] == 1 and r["training_iteration"] > 1]
    assert restored, "the trial never resumed from a checkpoint"
    return restored[0]


def test_killed_trial_actor_restarts_from_its_checkpoint_with_its_online_buffer(
    hopper_random, tmp_path: Path
) -> None:
    online = 400
    spec = write_spec(tmp_path, "killed-actor", online, [0])
    experiment_dir = tmp_path / "runs" / "killed-actor"
    killed: dict = {}

    def kill_when_online_checkpointed(stop: threading.Event) -> None:
        # Two online results: the checkpoint after the first was written before the second ran.
        while not stop.is_set():
            for results in trial_results(experiment_dir).values():
                done_online = online_results(results)
                if len(done_online) >= 2 and is_ray_worker(done_online[-1]["pid"]):
                    killed.update(last=done_online[-1], pid=done_online[-1]["pid"])
                    os.kill(killed["pid"], signal.SIGKILL)
                    return
            time.sleep(0.2)

    stop = threading.Event()
    watcher = threading.Thread(target=kill_when_online_checkpointed, args=(stop,), daemon=True)
    watcher.start()
    try:
        started = time.monotonic()
        result = run_sweep(spec, verbose=0)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        watcher.join()
    assert killed, "the trial finished before it could be killed mid-online-phase"
    assert killed["last"]["o2o"]["counters/env_steps"] < online, "killed before its last iteration"
    assert [t["error"] for t in result.trials] == [None], "the restarted trial finished"

    (trial_id, results), = trial_results(experiment_dir).items()
    assert results[-1]["done"] and results[-1]["o2o"]["counters/env_steps"] == online
    assert killed["pid"] != results[-1]["pid"], "a new actor process finished the trial"
    assert not is_ray_worker(killed["pid"])

    restored = first_result_after_restore(results)
    env_steps = restored["o2o"]["counters/env_steps"]
    checkpointed = env_steps - ENV_STEPS_PER_ITERATION
    assert checkpointed >= ENV_STEPS_PER_ITERATION, "restored from a checkpoint of the online phase"
    assert restored["o2o"]["data/online_transitions"] == env_steps, (
        f"the restored buffer holds {restored['o2o']['data/online_transitions']:.0f} rows after "
        f"{env_steps:.0f} env steps: the {checkpointed:.0f} checkpointed rows did not come back"
    )

    client = MlflowClient(result.tracking_uri)
    experiment = client.get_experiment_by_name("killed-actor")
    run = the_run(client, experiment.experiment_id, "killed-actor", trial_id)
    assert run.info.status == "FINISHED"
    assert_uninterrupted_history(client, run.info.run_id, online)
    print(
        f"\nkilled actor pid {killed['pid']} after iteration {killed['last']['training_iteration']} "
        f"(env steps {killed['last']['o2o']['counters/env_steps']:.0f}); restored at iteration "
        f"{restored['training_iteration'] - 1} with {checkpointed:.0f} online rows, first result after "
        f"the restore: {restored['o2o']['data/online_transitions']:.0f} rows at {env_steps:.0f} env steps "
        f"(pid {restored['pid']}); MLflow steps {[s for s, _ in history(client, run.info.run_id, 'counters/env_steps')]}; "
        f"sweep {elapsed:.0f} s"
    )


def test_killed_sweep_driver_resumes_only_unfinished_trials(hopper_random, tmp_path: Path) -> None:
    online = 300
    spec = write_spec(tmp_path, "killed-driver", online, [0, 1, 2])
    experiment_dir = tmp_path / "runs" / "killed-driver"
    # The driver joins the session's Ray as a second job, as `ray job submit` would run it.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = [sys.executable, "-m", "o2o.platform.cli", "sweep"]
    log = tmp_path / "driver.log"

    def finished_and_running() -> tuple[str, str, dict] | None:
        """(finished trial, running trial, its last result) once one trial is done and another
        has two online results, i.e. a checkpoint of its online phase."""
        trials = trial_results(experiment_dir)
        done = [t for t, results in trials.items() if results[-1]["done"]]
        running = [t for t, results in trials.items() if len(online_results(results)) >= 2 and not results[-1]["done"]]
        if done and running:
            return done[0], running[0], trials[running[0]][-1]
        return None

    started = time.monotonic()
    with log.open("w") as out:
        driver = subprocess.Popen([*command, str(spec)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        found = wait_for(
            lambda: finished_and_running() or driver.poll() is not None, 300, "a finished and a running trial"
        )
        assert driver.poll() is None, f"the driver exited early:\n{log.read_text()[-3000:]}"
        finished, interrupted, last = found
        actor = last["pid"]
        assert is_ray_worker(actor)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # The trial actors belong to the driver's Ray job and die with it; the cluster stays.
    wait_for(lambda: not is_ray_worker(actor), 60, f"the running trial's actor (pid {actor}) to stop")
    assert ray.cluster_resources().get("CPU") == 2

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("killed-driver")
    finished_run = the_run(client, experiment.experiment_id, "killed-driver", finished)
    finished_before = {key: history(client, finished_run.info.run_id, key) for key in finished_run.data.metrics}
    finished_file = result_file(experiment_dir, finished)
    finished_bytes = finished_file.read_bytes()
    interrupted_run = the_run(client, experiment.experiment_id, "killed-driver", interrupted)
    interrupted_steps = [s for s, _ in history(client, interrupted_run.info.run_id, "counters/env_steps")]
    assert interrupted_run.info.status == "RUNNING", "the dead driver could not close its run"

    resumed = subprocess.run(
        [*command, "--resume", str(spec)], capture_output=True, text=True, env=env, timeout=400
    )
    elapsed = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    assert "3/3 trials finished" in resumed.stdout

    trials = trial_results(experiment_dir)
    assert len(trials) == 3 and all(results[-1]["done"] for results in trials.values())
    assert finished_file.read_bytes() == finished_bytes, "the finished trial ran again"

    runs = client.search_runs([experiment.experiment_id], f"tags.`{TAG_SWEEP}` = 'killed-driver'")
    assert sorted(r.data.tags[TAG_TRIAL_ID] for r in runs) == sorted(trials), "one MLflow run per trial"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert_uninterrupted_history(client, run.info.run_id, online)
    finished_run = the_run(client, experiment.experiment_id, "killed-driver", finished)
    assert {key: history(client, finished_run.info.run_id, key) for key in finished_run.data.metrics} == finished_before

    restored = first_result_after_restore(trials[interrupted])
    env_steps = restored["o2o"]["counters/env_steps"]
    assert env_steps - ENV_STEPS_PER_ITERATION >= ENV_STEPS_PER_ITERATION, "continued from an online checkpoint"
    assert restored["o2o"]["data/online_transitions"] == env_steps, "with its online buffer"
    print(
        f"\ndriver killed with trial {finished} done and {interrupted} at iteration "
        f"{last['training_iteration']} (env steps {last['o2o']['counters/env_steps']:.0f}, actor pid {actor}); "
        f"MLflow steps of {interrupted} before the resume {interrupted_steps}; resumed at iteration "
        f"{restored['training_iteration'] - 1} with {env_steps - ENV_STEPS_PER_ITERATION:.0f} online rows, first "
        f"result after: {restored['o2o']['data/online_transitions']:.0f} rows at {env_steps:.0f} env steps; "
        f"total {elapsed:.0f} s"
    )
