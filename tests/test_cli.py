"""The command line as a user runs it: datasets, a two-trial sweep recorded in a real sqlite
MLflow store, its report, and a resume that finds nothing left to do. Bad input, refused with
one line and exit status 2 before Ray is used, is catalogued in test_bad_inputs.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

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
    seeds: [0, 1]
    resources: {{cpus_per_trial: 0.5}}
    evaluation: {{interval: 100, episodes: 1}}
    checkpoint: {{frequency: 2, keep: 1}}
    storage: {storage}
"""


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

    # Resuming under a later release: config fields added since are cut from the param space Tune
    # resolves unstarted trials from; a field since removed is refused with its name.
    from o2o.platform.sweep import _resume_param_space, load, prepare_datasets, sweep_param_space

    loaded = load(spec)
    current = sweep_param_space(loaded, prepare_datasets(loaded))
    sweep_dir = tmp_path / "runs" / "tiny"
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
