"""Histograms from a trial's results to the report page, on a real sqlite MLflow store.

Protects the `o2o_histograms` contract: the tracker keeps each histogram as one JSON artifact per
step with exactly the edges and counts sent, never twice for a step (a replayed iteration, a
resumed driver), and refuses a malformed one by name; `o2o report` draws, per algorithm and
dataset, the lowest seed that logged them as a heatmap normalised per step, and puts it on the
page with a caption naming the run. The tracker is driven directly (no Ray trial), as Tune
would call it.
"""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient
from ray.tune.experiment import Trial

from o2o.platform.report import build_report
from o2o.platform.tracking import MLflowTracker

BETA = "online/beta"
EDGES = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One sqlite store for the module (creating one takes seconds); experiments keep tests apart."""
    return f"sqlite:///{tmp_path_factory.mktemp('histograms')}/mlflow/db.sqlite"


def _tracker(uri: str, experiment: str) -> MLflowTracker:
    return MLflowTracker(uri, experiment, "sweep", param_keys=["seed"], tags={})


def _trial(trial_id: str, seed: int = 0) -> Trial:
    return Trial("o2o", config={"dataset_id": "hopper-medium", "seed": seed}, trial_id=trial_id, stub=True)


def _result(step: int, histograms: dict | None = None, algorithm: str = "famo2o", phase: str = "online") -> dict:
    """A result on the engine's contract, with `o2o_histograms` when given."""
    result = {
        "o2o": {"eval/normalized_score": step / 10},
        "o2o_step": step,
        "o2o_tags": {"o2o.algorithm": algorithm, "dataset_id": "hopper-medium", "phase": phase},
    }
    if histograms is not None:
        result["o2o_histograms"] = histograms
    return result


def _beta(counts: list[int]) -> dict:
    return {BETA: {"edges": EDGES, "counts": counts}}


def _artifacts(uri: str, run_id: str, tmp_path: Path) -> dict[str, dict]:
    """The run's histogram files: artifact path → parsed JSON."""
    client = MlflowClient(tracking_uri=uri)
    files = client.list_artifacts(run_id, "histograms/online.beta")
    return {
        f.path: json.loads(Path(client.download_artifacts(run_id, f.path, str(tmp_path))).read_text())
        for f in files
    }


def test_histograms_are_one_artifact_per_step_never_twice(uri: str, tmp_path: Path) -> None:
    tracker = _tracker(uri, "tracking")
    trial = _trial("t-ok")
    tracker.on_trial_start(0, [trial], trial)
    run_id = tracker._runs[trial.trial_id].run_id

    tracker.on_trial_result(0, [trial], trial, _result(10, _beta([3, 0, 5, 2])))
    first = {"name": BETA, "step": 10, "edges": EDGES, "counts": [3, 0, 5, 2]}
    assert _artifacts(uri, run_id, tmp_path / "a") == {
        "histograms/online.beta/0000000010.json": first
    }, "one JSON per histogram and step, holding exactly what was sent"

    # A restored trial replays step 10 with other counts: the logged histogram stands, also
    # when a changed tag is still logged at that step.
    tracker.on_trial_result(1, [trial], trial, _result(10, _beta([9, 9, 9, 9])))
    tracker.on_trial_result(1, [trial], trial, _result(10, _beta([9, 9, 9, 9]), phase="offline"))
    assert MlflowClient(tracking_uri=uri).get_run(run_id).data.tags["phase"] == "offline"
    assert _artifacts(uri, run_id, tmp_path / "b") == {"histograms/online.beta/0000000010.json": first}

    # Counts may come as NumPy values (a method's np.histogram); they are stored as JSON ints.
    tracker.on_trial_result(2, [trial], trial, _result(20, _beta(list(np.array([0, 1, 1, 0])))))
    # A new driver finds the run again and its last step, so its replay of step 20 adds nothing.
    resumed = pickle.loads(pickle.dumps(tracker))
    resumed.on_trial_start(0, [trial], trial)
    resumed.on_trial_result(0, [trial], trial, _result(20, _beta([7, 7, 7, 7])))
    assert _artifacts(uri, run_id, tmp_path / "c") == {
        "histograms/online.beta/0000000010.json": first,
        "histograms/online.beta/0000000020.json": {**first, "step": 20, "counts": [0, 1, 1, 0]},
    }


def test_a_malformed_histogram_is_refused_by_name(uri: str, tmp_path: Path) -> None:
    tracker = _tracker(uri, "tracking")
    trial = _trial("t-bad")
    tracker.on_trial_start(0, [trial], trial)
    run_id = tracker._runs[trial.trial_id].run_id

    same_length = {"edges": EDGES[:4], "counts": [1, 2, 3, 4]}
    with pytest.raises(ValueError, match=r"trial t-bad: histogram 'online/beta' at step 30 has 4 'edges' for 4 'counts'"):
        tracker.on_trial_result(0, [trial], trial, _result(30, {BETA: same_length}))
    descending = {"edges": EDGES[::-1], "counts": [1, 2, 3, 4]}
    with pytest.raises(ValueError, match=r"histogram 'offline/beta' at step 30 has edges that do not ascend"):
        tracker.on_trial_result(0, [trial], trial, _result(30, {BETA: _beta([1, 1, 1, 1])[BETA], "offline/beta": descending}))
    client = MlflowClient(tracking_uri=uri)
    assert client.list_artifacts(run_id, "histograms") == [], "a refused result logs no histogram"
    assert client.get_metric_history(run_id, "eval/normalized_score") == [], "nor its metrics"


def test_a_two_seed_trial_files_each_seeds_histograms_in_its_own_run(uri: str, tmp_path: Path) -> None:
    """`seeds_per_trial: 2`: seed i's histograms (`o2o_histograms_seeds[i]`) go to seed i's run only."""
    tracker = _tracker(uri, "tracking-k2")
    trial = Trial(
        "o2o", config={"dataset_id": "hopper-medium", "seed": 4, "seeds_per_trial": 2}, trial_id="t-k2", stub=True
    )
    tracker.on_trial_start(0, [trial], trial)
    result = _result(10)
    result["o2o_seeds"] = [result.pop("o2o"), {"eval/normalized_score": 2.0}]
    # A malformed histogram of the second seed: refused before the first seed's run logs anything.
    malformed = {**result, "o2o_histograms_seeds": [_beta([9, 0, 0, 0]), {BETA: {"edges": EDGES, "counts": [1]}}]}
    with pytest.raises(ValueError, match=r"trial t-k2: histogram 'online/beta' at step 10 has 5 'edges' for 1 'counts'"):
        tracker.on_trial_result(0, [trial], trial, malformed)
    result["o2o_histograms_seeds"] = [_beta([3, 0, 0, 0]), _beta([0, 0, 1, 5])]
    tracker.on_trial_result(0, [trial], trial, result)
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("tracking-k2").experiment_id]
    )
    by_seed = {r.data.params["seed"]: r.info.run_id for r in runs}
    assert sorted(by_seed) == ["4", "5"]
    for seed, counts in (("4", [3, 0, 0, 0]), ("5", [0, 0, 1, 5])):
        files = _artifacts(uri, by_seed[seed], tmp_path / seed)
        assert files == {
            "histograms/online.beta/0000000010.json": {"name": BETA, "step": 10, "edges": EDGES, "counts": counts}
        }, f"seed {seed}'s run holds its own histogram only"


# Three steps of β: low early, split in the middle, high late. Step 20 has 45 times the states of
# step 10, so only a heatmap normalised per step shows steps 10 and 30 at full colour.
SHIFT = {10: [8, 0, 0, 0], 20: [0, 120, 240, 0], 30: [0, 0, 0, 2]}


def test_report_draws_the_lowest_seed_that_logged_histograms(uri: str, tmp_path: Path) -> None:
    tracker = _tracker(uri, "report")
    for seed in (0, 1, 2):  # seed 0 logs none, so seed 1 is drawn
        trial = _trial(f"famo2o-{seed}", seed)
        tracker.on_trial_start(0, [trial], trial)
        for step, counts in SHIFT.items():
            beta = _beta(counts if seed == 1 else counts[::-1]) if seed else None
            tracker.on_trial_result(0, [trial], trial, _result(step, beta))
        tracker.on_trial_complete(0, [trial], trial)
    iql = _trial("iql-0")
    tracker.on_trial_start(0, [iql], iql)
    tracker.on_trial_result(0, [iql], iql, _result(10, algorithm="iql"))
    tracker.on_trial_complete(0, [iql], iql)

    report = build_report(uri, "report", tmp_path)
    (figure,) = report.histograms  # IQL logged none: no figure of it
    seed_1 = tracker._runs["famo2o-1"].run_id
    assert (figure.algorithm, figure.dataset, figure.seed, figure.name, figure.run_id, figure.n_steps) == (
        "famo2o", "hopper-medium", "1", BETA, seed_1, 3
    )
    assert figure.path == tmp_path / "histogram_famo2o_hopper-medium_online_beta.png"
    assert sorted(p.name for p in tmp_path.glob("histogram_*")) == [figure.path.name]

    # viridis' top colour marks a step's full share. Columns holding it, left to right: step 10
    # (its lowest bin), step 30 (its highest bin), then the colour bar's tip. Raw counts would
    # light step 20 alone.
    image = imread(figure.path)
    top = (image[..., 0] > 0.9) & (image[..., 1] > 0.8) & (image[..., 2] < 0.3)
    columns = np.flatnonzero(top.any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(runs) == 3, [(r[0], r[-1]) for r in runs]
    rows = [np.flatnonzero(top[:, r].any(axis=1)).mean() for r in runs[:2]]
    assert rows[0] > rows[1], "β low at step 10 (bottom), high at step 30 (top)"

    text = report.html_path.read_text(encoding="utf-8")
    assert "<h2>Distributions</h2>" in text
    assert text.count("<figure>") == len(report.curve_paths) + 1
    assert (
        "Share of each step's counts per bin of <code>online/beta</code> over 3 logged steps: "
        "famo2o on hopper-medium, seed 1, run "
    ) in text
    experiment_id = MlflowClient(tracking_uri=uri).get_experiment_by_name("report").experiment_id
    link = f"/#/experiments/{experiment_id}/runs/{seed_1}"
    assert f'{link}"><code>{seed_1}</code></a>.</figcaption>' in text, "the run is linked"
    embedded = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    assert f'src="data:image/png;base64,{embedded}"' in text, "the PNG is on the page"
