"""The command line as a user runs it: datasets, a two-trial sweep recorded in a real sqlite
MLflow store, its report, a resume that finds nothing left to do, and resumes under a spec the
sweep was not started with, refused with the cause; what a sweep prints while it runs, and a
failed trial's error reaching the user. Bad input, refused with
one line and exit status 2 before Ray is used, is catalogued in test_bad_inputs.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import gymnasium as gym
import mlflow
import pytest

from o2o.platform.cli import main
from o2o.platform.spec import SpecError


def write_spec(tmp_path: Path, body: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


TINY = """\
    name: tiny
    algorithm: iql
    datasets: [hopper-random]
    budgets: {{offline_updates: 200, online_env_steps: 100}}
    hyperparameters: {{updates_per_iteration: 100, env_steps_per_iteration: 100, train_batch_size_per_learner: 64}}
    dataset_overrides: {{hopper-random: {{train_batch_size_per_learner: 32}}}}
    seeds: [0, 1]
    resources: {{cpus_per_trial: 0.5}}
    evaluation: {{interval: 100, episodes: 1}}
    checkpoint: {{frequency: 2, keep: 1}}
    storage: {storage}
"""


@pytest.mark.usefixtures("ray_session")
def test_a_two_seed_trial_gives_each_seed_its_own_mlflow_run_and_report_row(hopper_random, tmp_path, capsys) -> None:
    """`seeds_per_trial: 2` end to end: one trial trains seeds 0 and 1, MLflow gets a run per
    seed with that seed's own metrics, and the report counts two seeds, as for two trials."""
    body = TINY.replace("seeds: [0, 1]", "seeds: [0, 1]\n    seeds_per_trial: 2")
    spec = write_spec(tmp_path, body.format(storage=tmp_path / "runs"))
    assert main(["sweep", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "2/2 seeds finished" in out
    assert len(list((tmp_path / "runs" / "tiny").glob("*/result.json"))) == 1, "one trial"

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    runs = sorted(runs, key=lambda r: r.data.params["seed"])
    assert [(r.data.params["seed"], r.data.tags["o2o.seed_lane"]) for r in runs] == [("0", "0"), ("1", "1")]
    assert runs[0].data.tags["o2o.trial_id"] == runs[1].data.tags["o2o.trial_id"]
    for run in runs:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/normalized_score")]
        assert steps == [200, 400], "each seed evaluated at each phase's end"
    # Each seed's own numbers: its own evaluation episodes, its own losses.
    assert runs[0].data.metrics["eval/seed_first"] != runs[1].data.metrics["eval/seed_first"]
    assert runs[0].data.metrics["online/critic_loss"] != runs[1].data.metrics["online/critic_loss"]

    assert main(["report", str(spec)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| iql | hopper-random"))
    assert row.split("|")[3].strip() == "2", row


def test_datasets_make_list_info(hopper_random, capsys) -> None:
    assert main(["datasets", "list"]) == 0
    assert "o2o/hopper/random-v0" in capsys.readouterr().out
    assert main(["datasets", "info", "hopper-random"]) == 0
    out = capsys.readouterr().out
    assert '"transitions": 3000' in out and hopper_random.content_hash in out


@pytest.mark.usefixtures("ray_session")
def test_sweep_records_each_trial_in_mlflow_and_reports(hopper_random, tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, TINY.format(storage=tmp_path / "runs"))
    assert main(["sweep", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "2/2 trials finished" in out

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["train_batch_size_per_learner"] == "32", "the dataset's override, as the trial ran it"
        assert run.data.tags["dataset_hash"] == hopper_random.content_hash
        assert run.data.tags["o2o.algorithm"] == "iql"
        assert "version.ray" in run.data.tags
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/normalized_score")]
        # evaluated at each phase's end only, at step = updates + env steps: 200 offline updates,
        # then + 100 online updates + 100 env steps; no point repeated at steps without an evaluation
        assert steps == [200, 400]

    assert main(["report", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "hopper-random" in out
    assert (tmp_path / "runs" / "tiny" / "report" / "scores.md").exists()

    # a resumed sweep whose trials all finished runs nothing more and adds no run
    assert main(["sweep", str(spec), "--resume"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 2

    # A resume under a spec the sweep was not started with is refused before Ray or Tune see it,
    # naming the cause: another algorithm (PEX's config fields include IQL's, so Tune would take
    # its param space and fail inside), or a setting the restored sweep would silently ignore.
    sweep_dir = tmp_path / "runs" / "tiny"
    started = f"spec tiny: the sweep at {sweep_dir} was started with"
    for old, new, cause in [
        ("algorithm: iql", "algorithm: pex", "algorithm iql; this spec names pex"),
        ("algorithm: iql", "algorithm: cql", "algorithm iql; this spec names cql"),
        ("episodes: 1", "episodes: 3", "evaluation.episodes: 1; this spec has evaluation.episodes: 3"),
        ("seeds: [0, 1]", "seeds: [0, 1, 2]", "seeds: [0, 1]; this spec has seeds: [0, 1, 2]"),
    ]:
        changed = write_spec(tmp_path, TINY.replace(old, new).format(storage=tmp_path / "runs"), name="changed.yaml")
        capsys.readouterr()  # what the runs before wrote
        assert main(["sweep", str(changed), "--resume"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"o2o: error: {started} {cause}; resume it with the spec that started it") and err.count("\n") == 1, err
    assert len(client.search_runs([experiment.experiment_id])) == 2

    # Resuming under a later release: config fields added since are cut from the param space Tune
    # resolves unstarted trials from; a field since removed is refused with its name.
    from o2o.platform.sweep import _resume_param_space, load, prepare_datasets, sweep_param_space

    loaded = load(spec)
    current = sweep_param_space(loaded, prepare_datasets(loaded))
    assert _resume_param_space(loaded, sweep_dir, {**current, "added_later": 1}).keys() == current.keys()
    current.pop("expectile")
    with pytest.raises(SpecError, match=r"no longer has \(expectile\)"):
        _resume_param_space(loaded, sweep_dir, current)

    # a new sweep under the same name, its Tune directory deleted, would mix its runs with
    # these in every report: refused before any trial starts
    import shutil

    shutil.rmtree(tmp_path / "runs" / "tiny")
    assert main(["sweep", str(spec)]) == 2
    assert "already holds runs of a sweep named 'tiny'" in capsys.readouterr().err
    assert len(client.search_runs([experiment.experiment_id])) == 2


def _run_cli(*commands: list[str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """`o2o …` as a user runs it, each command at the same time in its own process that starts
    its own local Ray (in a temp dir of its own, so it never joins another Ray of this machine),
    without a terminal; their results in the order given."""
    ray_tmps = [tempfile.mkdtemp(prefix="ray-cli-", dir="/tmp") for _ in commands]  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    running = [
        (
            args,
            subprocess.Popen(
                [str(Path(sys.executable).with_name("o2o")), *args],
                cwd=cwd, env={**env, "RAY_TMPDIR": ray_tmp}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
        )
        for args, ray_tmp in zip(commands, ray_tmps, strict=True)
    ]
    try:
        results = []
        for args, process in running:
            stdout, stderr = process.communicate(timeout=600)
            results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
        return results
    finally:
        for _, process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
        for ray_tmp in ray_tmps:
            shutil.rmtree(ray_tmp, ignore_errors=True)


def test_dataset_overrides_reach_that_datasets_trials_only(hopper_random, tmp_path) -> None:
    """Each trial takes its own dataset's overrides, else the spec's hyperparameters, as Tune
    resolves the sweep's param space (with Tune's own variant generator; no cluster needed)."""
    from ray.tune.search.variant_generator import generate_variants

    from o2o.platform.data import read_parquet, write_parquet
    from o2o.platform.sweep import load, prepare_datasets, sweep_param_space

    copy = tmp_path / "copy.parquet"
    write_parquet(read_parquet(hopper_random.parquet_path), copy)
    body = TINY.replace("datasets: [hopper-random]", f"datasets: [hopper-random, '{copy}']\n    env: Hopper-v5")
    body = body.replace(
        "dataset_overrides: {{hopper-random: {{train_batch_size_per_learner: 32}}}}",
        f"dataset_overrides: {{{{'{copy}': {{{{expectile: 0.9, temperature: 10.0}}}}}}}}",
    )
    loaded = load(write_spec(tmp_path, body.format(storage=tmp_path / "runs")))
    variants = [config for _, config in generate_variants(sweep_param_space(loaded, prepare_datasets(loaded)))]
    assert {(c["dataset_id"], c["seed"]): (c["expectile"], c["temperature"]) for c in variants} == {
        ("hopper-random", 0): (0.7, 3.0),
        ("hopper-random", 1): (0.7, 3.0),
        (str(copy), 0): (0.9, 10.0),
        (str(copy), 1): (0.9, 10.0),
    }


def test_sweep_prints_o2o_progress_not_rllib_config(hopper_random, tmp_path) -> None:
    """What a user reads while a sweep runs: one line per trial event with its phase, updates,
    env steps and score — not Tune's dump of each trial's RLlib config, its trial table or its
    TensorBoard hint, which `-v 2` brings back."""
    spec = write_spec(tmp_path, TINY.replace("seeds: [0, 1]", "seeds: [0]").format(storage=tmp_path / "runs"))
    run, verbose = _run_cli(
        ["sweep", str(spec)], ["sweep", str(spec), "--storage", str(tmp_path / "runs-v2"), "-v", "2"], cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    progress = [line for line in lines if "hopper-random seed 0" in line]
    assert any(re.search(r"offline +updates +100 +env steps +0 +score +- +[\d,]+ updates/s$", line) for line in progress), run.stdout
    assert any(re.search(r"offline → online +updates +200 +env steps +0 +score +-?\d+\.\d", line) for line in progress), run.stdout
    assert any(re.search(r"finished +updates +300 +env steps +100 +score +-?\d+\.\d", line) for line in progress), run.stdout
    everything = run.stdout + run.stderr
    for tune_detail in ("tf_session_args", "model/conv", "TensorBoard", "Trial status"):
        assert tune_detail not in everything
    assert "1/1 trials finished" in run.stdout

    assert verbose.returncode == 0, verbose.stderr
    assert "started with configuration" in verbose.stdout and "tf_session_args" in verbose.stdout
    assert "Trial status" in verbose.stdout
    assert re.search(r"hopper-random seed 0  offline → online", verbose.stdout)  # o2o's lines too


@pytest.mark.usefixtures("ray_session")
def test_failed_trial_error_reaches_the_user(hopper_random, tmp_path, capsys) -> None:
    """A trial that fails inside Ray is named with its error in the progress lines and the
    summary, quiet output or not: here an environment registered in the driver only, so the
    spec passes the driver's checks and the trial's own process cannot make it."""
    gym.register("DriverOnlyHopper-v5", entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv", max_episode_steps=1000)
    try:
        body = TINY.replace("seeds: [0, 1]", "seeds: [0]\n    env: DriverOnlyHopper-v5\n    failure: {{max_failures: 0}}")
        spec = write_spec(tmp_path, body.format(storage=tmp_path / "runs"))
        assert main(["sweep", str(spec)]) == 1
    finally:
        gym.registry.pop("DriverOnlyHopper-v5")
    out = capsys.readouterr().out
    error = "gymnasium.error.NameNotFound: Environment `DriverOnlyHopper` doesn't exist."
    assert re.search(rf"hopper-random seed 0  FAILED: {re.escape(error)}  \(traceback: {re.escape(str(tmp_path))}/runs/tiny/.+/error.txt\)", out), out
    summary = out.split("trials finished")[1]
    # Named there too; it failed in its setup, before Tune started it, so it has no MLflow run.
    assert f"hopper-random seed 0: no MLflow run  FAILED: {error}" in summary, summary


def test_progress_line_keeps_the_last_score_and_names_the_hand_off(capsys) -> None:
    """An iteration that did not evaluate still shows the trial's last score (results carry
    `eval/normalized_score` only where they evaluated); the iteration that ends a phase is
    shown as the hand-off, with the rate of what moved in it."""
    from ray.tune.experiment import Trial

    from o2o.platform.progress import ProgressPrinter

    printer = ProgressPrinter(["dataset_id", "seed"], interval_s=0.0)
    trial = Trial("IQLAlgorithm", config={"dataset_id": "hopper-medium", "seed": 3}, stub=True)

    def result(phase: str, updates: float, env_steps: float, **metrics: float) -> dict:
        counters = {"counters/updates": updates, "counters/env_steps": env_steps}
        return {"o2o": {**counters, **metrics}, "o2o_tags": {"phase": phase}}

    rates = {"perf/updates_per_s": 800.0, "perf/env_steps_per_s": 50.0}
    for r in (
        result("offline", 1000, 0, **rates),
        result("online", 2000, 0, **rates, **{"eval/normalized_score": 31.25}),
        result("online", 3000, 1000, **rates),
    ):
        printer.on_trial_result(0, [trial], trial, r)
    lines = capsys.readouterr().out.splitlines()
    assert re.search(r"hopper-medium seed 3  offline +updates +1,000 +env steps +0 +score +- +800 updates/s$", lines[0])
    assert re.search(r"offline → online +updates +2,000 +env steps +0 +score +31\.2 +800 updates/s$", lines[1])
    assert re.search(r"online +updates +3,000 +env steps +1,000 +score +31\.2 +50 env steps/s +50 updates/s$", lines[2])


def test_summary_says_a_stopped_trial_is_not_finished(tmp_path, capsys) -> None:
    """A trial the driver stopped (Ctrl-C) before its budget has no error and is not done: the
    summary must not count it as finished, must say how to continue it, and must exit non-zero."""
    from o2o.platform.cli import _print_sweep
    from o2o.platform.sweep import SweepResult

    trial = {"trial_id": "a", "dataset": "hopper-medium", "seed": 0, "error": None, "run_id": "r0"}
    result = SweepResult(
        "s", tmp_path, "sqlite:///x.db", "s",
        [{**trial, "done": True, "final_score": 41.0}, {**trial, "seed": 1, "done": False, "final_score": 12.5}],
    )
    assert _print_sweep(result) == 1
    out = capsys.readouterr().out
    assert "sweep s: 1/2 trials finished; 1 stopped before their budget: `o2o sweep <spec> --resume` continues them" in out
    assert "hopper-medium seed 0: run r0  eval/normalized_score 41.0" in out
    assert "hopper-medium seed 1: run r0  STOPPED before its budget (last eval/normalized_score 12.5)" in out
