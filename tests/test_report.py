"""build_report against a real sqlite MLflow store filled with known metric histories.

Protects what a paper table depends on: a run's score is its last evaluation, the mean and 95%
bootstrap CI over seeds, the score at the offline phase's end, rliable's IQM across datasets
(the same interval on every report), which runs count (finished, this sweep), the curve PNGs on
an axis from the hand-off, one colour per algorithm, one-line errors when there is nothing to
report, and the HTML page: self-contained, every number on it, every text escaped, every run
linked to the MLflow UI, no distributions section when no run logged histograms (those are in
test_histograms.py).
"""

from __future__ import annotations

import base64
import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from o2o.platform.report import (
    LOCAL_MLFLOW_UI,
    _colors,
    _iqm,
    _plot_curves,
    _score_row,
    _Series,
    _steps_from_handoff,
    build_report,
    format_table,
    mlflow_ui,
)

METRIC = "eval/normalized_score"
STEPS = [0, 100, 200, 300, 400]
UPDATES = [0, 100, 200, 250, 300]
ENV_STEPS = [0, 0, 0, 50, 100]
FINAL = {
    ("iql", "hopper-medium"): [50.0, 55.0, 60.0],
    ("iql", "walker2d-medium"): [70.0, 72.0, 74.0],
    ("calql", "hopper-medium"): [80.0, 85.0, 90.0],
    ("calql", "walker2d-medium"): [88.0, 90.0, 92.0],
}


def _log_run(client, experiment_id, algorithm, dataset, seed, final, sweep="s1", status="FINISHED"):
    run = client.create_run(
        experiment_id,
        tags={"o2o.algorithm": algorithm, "dataset_id": dataset, "o2o.sweep": sweep},
    )
    # A rising curve that ends at `final`: the score must be the LAST value, not the max/mean.
    values = [final * k / 4 for k in range(4)] + [final]
    values[2] = final + 50.0  # a peak mid-training that a "best" score would wrongly pick
    metrics = [Metric(METRIC, v, 1000 + i, step) for i, (step, v) in enumerate(zip(STEPS, values))]
    # The engine's counters: 200 offline updates, then 100 env steps at one update each; the
    # peak is the offline phase's end.
    for key, counts in (("counters/updates", UPDATES), ("counters/env_steps", ENV_STEPS)):
        metrics += [Metric(key, c, 1000 + i, step) for i, (step, c) in enumerate(zip(STEPS, counts))]
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param("seed", str(seed))])
    client.set_terminated(run.info.run_id, status=status)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("paper")
    for (algorithm, dataset), finals in FINAL.items():
        for seed, final in enumerate(finals):
            _log_run(client, experiment_id, algorithm, dataset, seed, final)
    # Runs that must not count: a failed run, and a run of another sweep.
    _log_run(client, experiment_id, "iql", "hopper-medium", 3, 0.0, status="FAILED")
    _log_run(client, experiment_id, "iql", "hopper-medium", 4, 0.0, sweep="other")
    # A run that never evaluated (crashed before its first evaluation) is skipped.
    run = client.create_run(experiment_id, tags={"o2o.algorithm": "iql", "dataset_id": "x"})
    client.log_batch(run.info.run_id, tags=[RunTag("o2o.sweep", "s1")])
    client.set_terminated(run.info.run_id)
    return uri


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(store, "paper", tmp_path_factory.mktemp("out"), sweep="s1")


def test_scores_are_last_values_averaged_over_seeds(report) -> None:
    rows = {(r.algorithm, r.dataset): r for r in report.rows}
    assert set(rows) == set(FINAL), "one row per (algorithm, dataset); failed/other-sweep runs out"
    for key, finals in FINAL.items():
        assert rows[key].n_seeds == 3
        assert rows[key].mean == pytest.approx(np.mean(finals)), "score = final evaluation"


def test_ci_is_a_percentile_bootstrap_over_seeds(report) -> None:
    rng = np.random.default_rng(123)
    for row in report.rows:
        finals = np.array(FINAL[(row.algorithm, row.dataset)])
        assert row.ci_low <= row.mean <= row.ci_high
        means = finals[rng.integers(0, len(finals), size=(20000, len(finals)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        spread = finals.max() - finals.min()
        assert row.ci_low == pytest.approx(low, abs=0.1 * spread)
        assert row.ci_high == pytest.approx(high, abs=0.1 * spread)


def test_single_seed_ci_is_the_point(store: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=store)
    _log_run(client, client.create_experiment("one"), "iql", "hopper-medium", 0, 42.0)
    (row,) = build_report(store, "one", tmp_path).rows
    assert (row.n_seeds, row.mean, row.ci_low, row.ci_high) == (1, 42.0, 42.0, 42.0)


def test_iqm_orders_algorithms_and_brackets_its_point(report) -> None:
    assert set(report.iqm) == {"iql", "calql"}
    for value, low, high in report.iqm.values():
        assert low <= value <= high
    iql, calql = report.iqm["iql"][0], report.iqm["calql"][0]
    # rliable's IQM is scipy's 25%-trimmed mean over all 6 dataset × seed scores: one score
    # trimmed from each end, so IQL = mean(55, 60, 70, 72), Cal-QL = mean(85, 88, 90, 90).
    assert iql == pytest.approx(64.25)
    assert calql == pytest.approx(88.25)


def test_iqm_interval_is_reproducible() -> None:
    """The same runs give the same IQM interval: whatever NumPy's global generator holds, and
    whichever other algorithms share the experiment. rliable 1.2 resampled from the global
    generator, so two `o2o report base_check` gave SAC [1.6, 5.0] and [1.6, 4.9]."""
    rng = np.random.default_rng(1)

    def group(algorithm: str) -> dict[tuple[str, str], list[_Series]]:
        return {
            (algorithm, d): [_Series(algorithm, d, str(i), np.array([1.0]), np.array([rng.normal(10, 3)])) for i in range(5)]
            for d in ("hopper-medium", "walker2d-medium")
        }

    alone = group("sac")
    first = _iqm(alone)["sac"]
    np.random.seed(123)
    assert _iqm(alone)["sac"] == first
    assert _iqm({**group("awac"), **alone, **group("td3")})["sac"] == first
    assert first[1] < first[0] < first[2]


def test_curve_pngs_are_written(report) -> None:
    names = sorted(p.name for p in report.curve_paths)
    assert names == ["curve_hopper-medium.png", "curve_walker2d-medium.png"]
    for path in report.curve_paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "a valid PNG"
        assert len(data) > 10_000, "a plot, not an empty canvas"


def test_curves_share_an_axis_from_the_handoff() -> None:
    """MLflow's step counts every update and env step; curves are drawn against env steps after
    the hand-off, offline updates before it as negatives, so every algorithm hands off at 0 and
    ends its 3k online steps at 3000 whatever its UTD ratio or extra phases."""

    def counters(rows: list[tuple[int, int, int]]) -> tuple[dict[int, float], dict[int, float]]:
        return {s: float(e) for s, _, e in rows}, {s: float(u) for s, u, _ in rows}

    def x(steps: list[int], rows: list[tuple[int, int, int]]) -> list[int]:
        aligned, from_handoff = _steps_from_handoff(steps, *counters(rows))
        assert from_handoff
        return aligned.tolist()

    # (MLflow step, updates so far, env steps so far) per iteration; evaluated at phase ends.
    iql = [(1500, 1500, 0), (3000, 3000, 0), (6000, 4500, 1500), (9000, 6000, 3000)]
    assert x([3000, 9000], iql) == [0, 3000]
    rlpd = [(7500, 6000, 1500), (15000, 12000, 3000)]  # no offline phase, 4 updates per env step
    assert x([15000], rlpd) == [3000]
    spot = [(1000, 1000, 0), (4000, 4000, 0), (10000, 7000, 3000)]  # 1k VAE updates first
    assert x([1000, 4000, 10000], spot) == [-3000, 0, 3000]
    steps, from_handoff = _steps_from_handoff([100, 200], {}, {})  # logged without the counters
    assert (steps.tolist(), from_handoff) == ([100, 200], False)


def test_offline_end_is_the_last_score_before_the_online_phase() -> None:
    def run(steps: list[int], values: list[float], from_handoff: bool = True) -> _Series:
        return _Series("a", "d", "0", np.array(steps), np.array(values), from_handoff)

    row = _score_row("a", "d", [run([-1500, 0, 3000], [4.0, 10.0, 20.0]), run([0, 3000], [12.0, 30.0])])
    assert (row.offline_end, row.mean) == (11.0, 25.0)
    assert (row.offline_ci_low, row.offline_ci_high) == (10.0, 12.0), "two seeds: the bootstrap spans both"
    assert _score_row("a", "d", [run([3000], [8.0])]).offline_end is None, "RLPD-style: no offline phase"
    assert _score_row("a", "d", [run([0, 3000], [1.0, 2.0]), run([3000], [8.0])]).offline_end is None, "not every seed"
    assert _score_row("a", "d", [run([200, 400], [1.0, 2.0], from_handoff=False)]).offline_end is None


def test_a_run_evaluated_once_is_drawn(tmp_path) -> None:
    """RLPD-style runs (no offline phase) are evaluated once, at their end: their curve is a
    point with its band as an error bar. A line alone drew nothing there but the legend
    (111 red pixels, against about 1200 with the point and the bar)."""
    group = [_Series("rlpd", "hopper-medium", str(i), np.array([13004.0]), np.array([v])) for i, v in enumerate([12.0, 4.1, 9.9])]
    path = _plot_curves("hopper-medium", {("rlpd", "hopper-medium"): group}, "eval/normalized_score", {"rlpd": "#ff0000"}, tmp_path)
    image = imread(path)
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.8) & (image[..., 2] < 0.8)
    assert red.sum() > 600, red.sum()


@pytest.mark.parametrize("n", [2, 11, 20, 30])
def test_every_algorithm_has_its_own_colour(n: int) -> None:
    """The base family's comparison alone has 11 groups; matplotlib's 10-colour cycle gave the
    11th the first one's colour, so two algorithms' curves and swatches could not be told apart."""
    colors = _colors([f"algo{i}" for i in range(n)])
    assert len(set(colors.values())) == n


def test_runs_without_histograms_add_no_distributions(report) -> None:
    """Only methods that log `o2o_histograms` get heatmaps; none of these runs did, so the
    report is what it was before histograms existed."""
    assert report.histograms == []
    assert not list(report.html_path.parent.glob("histogram_*")), "no histogram PNG written"
    text = report.html_path.read_text(encoding="utf-8")
    assert "Distributions" not in text and "<figcaption>" not in text


def test_phase_timeline_of_each_algorithm_and_dataset(tmp_path: Path) -> None:
    """A run tagged with its phases and logging the phase and wall time of each iteration gets a
    timeline in the page: each phase's budget, iterations, steps, start and wall time, from the
    lowest seed; runs that logged no phases get none (the fixture's)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("opt")
    phases = '[["offline", 200, "updates"], ["online_collection", 100, "env_steps"], ["online_pretraining", 50, "updates"], ["online", 100, "env_steps"]]'
    # o2o_step, phase index, iteration seconds; the collection and pre-training not evaluated.
    iterations = [(100, 0, 10.0), (200, 0, 12.0), (250, 1, 3.0), (300, 1, 3.0), (350, 2, 30.0), (400, 3, 20.0), (500, 3, 25.0)]
    for seed in (1, 0):
        run = client.create_run(experiment_id, tags={"o2o.algorithm": "opt_td3bc", "dataset_id": "hopper-medium", "o2o.phases": phases})
        metrics = [Metric(METRIC, 10.0 + seed, 0, step) for step in (200, 500)]
        metrics += [Metric("counters/phase", index, 0, step) for step, index, _ in iterations]
        metrics += [Metric("perf/iteration_s", seconds * (1 + seed), 0, step) for step, _, seconds in iterations]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param("seed", str(seed))])
        client.set_terminated(run.info.run_id)
    built = build_report(uri, "opt", tmp_path / "out")
    (timeline,) = built.timelines
    assert (timeline.algorithm, timeline.seed) == ("opt_td3bc", "0")
    laid_out = [(p.name, p.budget, p.unit, p.iterations, p.first_step, p.last_step, p.wall_s, p.start_s) for p in timeline.phases]
    assert laid_out == [
        ("offline", 200, "updates", 2, 100, 200, 22.0, 0.0),
        ("online_collection", 100, "env_steps", 2, 250, 300, 6.0, 22.0),
        ("online_pretraining", 50, "updates", 1, 350, 350, 30.0, 28.0),
        ("online", 100, "env_steps", 2, 400, 500, 45.0, 58.0),
    ]
    text = built.html_path.read_text(encoding="utf-8")
    assert "<h2>Phases</h2>" in text and "<code>online_pretraining</code>" in text
    assert "50 updates" in text and "0:00:58" in text and "0:00:45" in text


def test_runs_without_phases_add_no_timeline(report) -> None:
    assert report.timelines == []
    assert "<h2>Phases</h2>" not in report.html_path.read_text(encoding="utf-8")


def test_markdown_and_csv_tables(report) -> None:
    text = report.table_path.read_text()
    assert text == format_table(report)
    assert "| algorithm | dataset | seeds | offline end [95% CI] | score mean [95% CI] |" in text
    assert "| iql | hopper-medium | 3 | 105.0 [" in text, "offline end: the peak at the hand-off"
    assert "| calql | walker2d-medium | 3 | 140.0 [" in text
    for r in report.rows:
        assert f"| {r.offline_end:.1f} [{r.offline_ci_low:.1f}, {r.offline_ci_high:.1f}] | {r.mean:.1f} [" in text
        assert r.offline_ci_low < r.offline_end < r.offline_ci_high
    assert "| algorithm | IQM over datasets × seeds [95% CI] | at the offline end |" in text
    for algorithm, (value, low, high) in report.iqm_offline.items():
        assert f"| {value:.1f} [{low:.1f}, {high:.1f}] |\n" in text
        assert value == pytest.approx(report.iqm[algorithm][0] + 50.0), "every offline end sits 50 above its run's end"
    with (report.table_path.parent / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {(r["algorithm"], r["dataset"], r["n_seeds"]) for r in rows} == {
        (a, d, "3") for a, d in FINAL
    }
    assert {(r["algorithm"], r["dataset"]): float(r["offline_end"]) for r in rows} == {
        key: np.mean(finals) + 50.0 for key, finals in FINAL.items()
    }


def test_unfinished_runs_count_only_when_asked(store, tmp_path: Path) -> None:
    report = build_report(store, "paper", tmp_path, sweep="s1", include_unfinished=True)
    row = next(r for r in report.rows if (r.algorithm, r.dataset) == ("iql", "hopper-medium"))
    assert row.n_seeds == 4 and row.mean == pytest.approx((50 + 55 + 60 + 0) / 4)


def test_errors_are_one_clear_line(store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        build_report(store, "nope", tmp_path)
    with pytest.raises(ValueError, match="metric 'eval/missing' was never logged"):
        build_report(store, "paper", tmp_path, metric="eval/missing")
    with pytest.raises(ValueError, match="sweep 'ghost' has no finished runs"):
        build_report(store, "paper", tmp_path, sweep="ghost")
    with pytest.raises(ValueError, match="no MLflow store at"):
        build_report(f"sqlite:///{tmp_path}/absent.db", "paper", tmp_path)


def test_one_experiment_shared_by_sweeps_compares_them(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("comparison")
    for seed in range(2):
        _log_run(client, experiment_id, "iql", "hopper-medium", seed, 40.0, sweep="iql_check")
        _log_run(client, experiment_id, "sac", "hopper-medium", seed, 20.0, sweep="sac_check")
        _log_run(client, experiment_id, "sac", "hopper-medium", seed, 30.0, sweep="rlpd_check")
    rows = {r.algorithm: r.mean for r in build_report(uri, "comparison", tmp_path / "out").rows}
    # one table for every sweep; an algorithm two sweeps share is told apart by the sweep's name
    assert rows == {"iql": 40.0, "sac (sac_check)": 20.0, "sac (rlpd_check)": 30.0}


class _Page(HTMLParser):
    """Every tag of a page with its attributes, and each link's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.links: dict[str, str] = {}
        self._href: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "a":
            self._href = dict(attrs)["href"]
            self.links[self._href] = ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links[self._href] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


RUN_LINK = re.compile(re.escape(LOCAL_MLFLOW_UI) + r"/#/experiments/\d+/runs/[0-9a-f]{32}")


def test_html_page_is_self_contained(report) -> None:
    assert report.html_path == report.table_path.parent / "report.html"
    text = report.html_path.read_text(encoding="utf-8")
    page = _Page(text)
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed"}, "nothing to load or run"
    assert "url(" not in text and "@import" not in text, "CSS fetches nothing"
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == len(report.curve_paths), "one learning-curve figure per dataset"
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for _, attrs in page.tags:
        for key in ("src", "href"):
            if re.match(r"https?://", attrs.get(key, "")):
                assert key == "href" and RUN_LINK.fullmatch(attrs[key]), attrs[key]


def test_html_page_shows_every_number(report) -> None:
    text = report.html_path.read_text(encoding="utf-8")
    assert "<h1>paper · s1</h1>" in text and "eval/normalized_score" in text
    for r in report.rows:
        assert f"offline end {r.offline_end:.1f} [{r.offline_ci_low:.1f}, {r.offline_ci_high:.1f}] →" in text
        assert f"{r.mean:.1f}</span>" in text
        assert f"[{r.ci_low:.1f}, {r.ci_high:.1f}]" in text
        assert f"n={r.n_seeds}" in text
    for value, low, high in [*report.iqm.values(), *report.iqm_offline.values()]:
        assert f"{value:.1f}</span>" in text and f"[{low:.1f}, {high:.1f}]" in text
    for dataset in ("hopper-medium", "walker2d-medium"):  # calql wins both
        best = next(r for r in report.rows if (r.algorithm, r.dataset) == ("calql", dataset))
        start = f'<span class="start">offline end {best.offline_end:.1f} [{best.offline_ci_low:.1f}, {best.offline_ci_high:.1f}] →</span> '
        assert f'<td class="best">{start}<span class="mean">{best.mean:.1f}</span>' in text
    assert text.count('class="best"') == 2
    for t in report.trials:
        if t.final is not None:
            assert f'<td class="num">{t.final:.1f}</td>' in text


def test_html_page_links_every_run_to_mlflow(store, report) -> None:
    # The sweep's runs, counted or not: 12 finished, one failed, one that never evaluated;
    # the other sweep's run is not on the page.
    assert len(report.trials) == 14
    uncounted = {(t.status, t.final) for t in report.trials if not t.counted}
    assert uncounted == {("FAILED", 0.0), ("FINISHED", None)}
    experiment_id = MlflowClient(tracking_uri=store).get_experiment_by_name("paper").experiment_id
    links = _Page(report.html_path.read_text(encoding="utf-8")).links
    assert links == {
        f"{LOCAL_MLFLOW_UI}/#/experiments/{experiment_id}/runs/{t.run_id}": t.run_id
        for t in report.trials
    }
    assert f"mlflow ui --backend-store-uri {store}" in report.html_path.read_text()


def test_html_page_escapes_every_name(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("<b>exp</b>")
    for seed in range(2):
        _log_run(client, experiment_id, 'a&"b', "<script>x</script>", seed, 10.0, sweep="<i>")
    report = build_report(uri, "<b>exp</b>", tmp_path / "out", sweep="<i>")
    text = report.html_path.read_text(encoding="utf-8")
    assert "<script" not in text and "<b>exp" not in text and "<i>" not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "a&amp;&quot;b" in text
    assert not {tag for tag, _ in _Page(text).tags} & {"script", "i"}


def test_mlflow_ui_of_a_server_and_of_a_local_store() -> None:
    assert mlflow_ui("http://mlflow.lab:5000/") == ("http://mlflow.lab:5000", None)
    assert mlflow_ui("sqlite:////data/my runs/mlflow.db") == (
        LOCAL_MLFLOW_UI,
        "mlflow ui --backend-store-uri 'sqlite:////data/my runs/mlflow.db'",
    )


def test_iqms_over_different_datasets_name_their_datasets(tmp_path) -> None:
    """An ablation run on one of a comparison's two datasets: its IQM covers that dataset only,
    so both tables name each algorithm's datasets; where every algorithm ran every dataset,
    nothing is added (the `report` fixture's tables above)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("ablation")
    for (algorithm, dataset), finals in FINAL.items():
        if algorithm == "calql" and dataset == "walker2d-medium":
            continue
        for seed, final in enumerate(finals):
            _log_run(client, experiment_id, algorithm, dataset, seed, final)
    report = build_report(uri, "ablation", tmp_path / "out")
    text = format_table(report)
    assert "| calql (over hopper-medium) | " in text and "| iql (over hopper-medium, walker2d-medium) | " in text
    html = report.html_path.read_text(encoding="utf-8")
    assert "calql (over hopper-medium)</th>" in html
