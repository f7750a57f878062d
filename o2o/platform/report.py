"""Reports: the tables and plots papers print, read back from a sweep's MLflow runs.

For each (algorithm, dataset) the score of a run is its last evaluation of the metric
(``eval/normalized_score`` by default); the table gives the mean over seeds with a 95%
percentile-bootstrap CI. Across datasets, each algorithm gets the interquartile mean (IQM) of
all its dataset × seed scores with a stratified-bootstrap CI (rliable; Agarwal et al.,
"Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021), which is robust to a few
outlier runs. Learning curves are one PNG per dataset: mean over seeds against MLflow's step,
with a 95% CI band (min–max with two seeds or fewer), one line per algorithm.

Runs are grouped by their ``o2o.algorithm`` and ``dataset_id`` tags and the ``seed`` param; an
experiment that several sweeps share (``tracking.experiment``) is one comparison, and where two
sweeps run the same algorithm (SAC and RLPD-style SAC) their rows carry the sweep's name too;
only FINISHED runs count unless asked otherwise, so a crashed run's partial score never enters
a table. Bootstraps use fixed seeds, so a report is reproducible.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from rliable import library as rly
from rliable import metrics as rly_metrics
from scipy import stats

from o2o.platform.tracking import TAG_SWEEP

TAG_ALGORITHM = "o2o.algorithm"
TAG_DATASET = "dataset_id"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass
class ScoreRow:
    """One table row: an algorithm's final score on a dataset over seeds."""

    algorithm: str
    dataset: str
    n_seeds: int
    mean: float
    ci_low: float
    ci_high: float


@dataclass
class Report:
    """A built report and the files it wrote."""

    rows: list[ScoreRow]
    iqm: dict[str, tuple[float, float, float]]
    """algorithm → (IQM, CI low, CI high) over all its datasets × seeds."""
    curve_paths: list[Path]
    table_path: Path


@dataclass
class _Series:
    """One run's history of the metric."""

    algorithm: str
    dataset: str
    seed: str
    steps: np.ndarray
    values: np.ndarray


def build_report(
    tracking_uri: str,
    experiment: str,
    out_dir: Path,
    metric: str = "eval/normalized_score",
    sweep: str | None = None,
    include_unfinished: bool = False,
) -> Report:
    """Build the score table, IQMs and learning curves of an experiment's runs into `out_dir`.

    `sweep` keeps only runs tagged with that sweep name; `include_unfinished` also counts runs
    that are still running or failed (a preview of a sweep in progress). Writes ``scores.md``,
    ``scores.csv`` and ``curve_<dataset>.png``; raises ValueError when there is nothing to report.
    """
    series = _load_series(tracking_uri, experiment, metric, sweep, include_unfinished)
    groups: dict[tuple[str, str], list[_Series]] = defaultdict(list)
    for s in series:
        groups[(s.algorithm, s.dataset)].append(s)

    rows = [_score_row(a, d, groups[(a, d)]) for a, d in sorted(groups)]
    iqm = _iqm(groups)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve_paths = [
        _plot_curves(dataset, groups, metric, out_dir)
        for dataset in sorted({d for _, d in groups})
    ]
    report = Report(rows, iqm, curve_paths, out_dir / "scores.md")
    report.table_path.write_text(format_table(report))
    with (out_dir / "scores.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm", "dataset", "n_seeds", "mean", "ci_low", "ci_high"])
        for r in rows:
            writer.writerow([r.algorithm, r.dataset, r.n_seeds, r.mean, r.ci_low, r.ci_high])
    return report


def format_table(report: Report) -> str:
    """The report's markdown tables: score per (algorithm, dataset), then IQM per algorithm."""
    lines = [
        "| algorithm | dataset | seeds | score mean [95% CI] |",
        "|---|---|---:|---|",
        *(
            f"| {r.algorithm} | {r.dataset} | {r.n_seeds} | "
            f"{r.mean:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}] |"
            for r in report.rows
        ),
    ]
    if report.iqm:
        lines += [
            "",
            "| algorithm | IQM over datasets × seeds [95% CI] |",
            "|---|---|",
            *(
                f"| {algorithm} | {value:.1f} [{low:.1f}, {high:.1f}] |"
                for algorithm, (value, low, high) in sorted(report.iqm.items())
            ),
        ]
    return "\n".join(lines) + "\n"


def _load_series(
    tracking_uri: str, experiment: str, metric: str, sweep: str | None, include_unfinished: bool
) -> list[_Series]:
    """Every selected run's history of `metric`, as (step, value) arrays sorted by step."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ValueError(f"no MLflow store at {db}")
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"MLflow experiment {experiment!r} not found at {tracking_uri}")

    filters = []
    if sweep is not None:
        filters.append(f"tags.`{TAG_SWEEP}` = '{sweep}'")
    if not include_unfinished:
        filters.append("attributes.status = 'FINISHED'")
    runs = [
        r
        for r in _search_all(client, found.experiment_id, " and ".join(filters))
        if TAG_ALGORITHM in r.data.tags and TAG_DATASET in r.data.tags
    ]
    which = f"experiment {experiment!r}" + (f" sweep {sweep!r}" if sweep else "")
    if not runs:
        state = "" if include_unfinished else "finished "
        raise ValueError(
            f"{which} has no {state}runs tagged {TAG_ALGORITHM} and {TAG_DATASET}"
        )

    sweeps_of: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        sweeps_of[run.data.tags[TAG_ALGORITHM]].add(run.data.tags.get(TAG_SWEEP, ""))
    series = []
    for run in runs:
        if metric not in run.data.metrics:
            continue
        algorithm = run.data.tags[TAG_ALGORITHM]
        if len(sweeps_of[algorithm]) > 1:  # e.g. SAC and RLPD-style SAC in one experiment
            algorithm = f"{algorithm} ({run.data.tags.get(TAG_SWEEP, '?')})"
        history = sorted(
            client.get_metric_history(run.info.run_id, metric), key=lambda m: (m.step, m.timestamp)
        )
        series.append(
            _Series(
                algorithm=algorithm,
                dataset=run.data.tags[TAG_DATASET],
                seed=run.data.params.get("seed", run.info.run_id),
                steps=np.array([m.step for m in history]),
                values=np.array([m.value for m in history], dtype=float),
            )
        )
    if not series:
        raise ValueError(f"metric {metric!r} was never logged in {which}")
    return series


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _score_row(algorithm: str, dataset: str, group: list[_Series]) -> ScoreRow:
    """Mean of the runs' final scores with a 95% percentile-bootstrap CI over seeds."""
    finals = np.array([s.values[-1] for s in group])
    mean = float(finals.mean())
    if len(finals) == 1:
        return ScoreRow(algorithm, dataset, 1, mean, mean, mean)
    ci = stats.bootstrap(
        (finals,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    return ScoreRow(algorithm, dataset, len(finals), mean, float(ci.low), float(ci.high))


def _iqm(groups: dict[tuple[str, str], list[_Series]]) -> dict[str, tuple[float, float, float]]:
    """Per algorithm, IQM of final scores over a (seeds × datasets) matrix with rliable CIs.

    rliable's stratified bootstrap needs one score per (seed, dataset), so only seeds that
    finished on every dataset of the algorithm enter the matrix.
    """
    by_algorithm: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (algorithm, dataset), group in groups.items():
        by_algorithm[algorithm][dataset] = {s.seed: float(s.values[-1]) for s in group}
    matrices = {}
    for algorithm, per_dataset in by_algorithm.items():
        seeds = sorted(set.intersection(*(set(scores) for scores in per_dataset.values())))
        if seeds:
            datasets = sorted(per_dataset)
            matrices[algorithm] = np.array(
                [[per_dataset[d][seed] for d in datasets] for seed in seeds]
            )
    with warnings.catch_warnings():
        # rliable 1.2 seeds arch's bootstrap with `random_state`, which arch deprecates.
        warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
        points, intervals = rly.get_interval_estimates(
            matrices,
            lambda scores: np.array([rly_metrics.aggregate_iqm(scores)]),
            reps=BOOTSTRAP_RESAMPLES,
            confidence_interval_size=CONFIDENCE,
            random_state=np.random.RandomState(BOOTSTRAP_SEED),
        )
    return {
        a: (float(points[a][0]), float(intervals[a][0, 0]), float(intervals[a][1, 0]))
        for a in matrices
    }


def _plot_curves(
    dataset: str, groups: dict[tuple[str, str], list[_Series]], metric: str, out_dir: Path
) -> Path:
    """One PNG: each algorithm's mean curve over seeds with its band."""
    figure = Figure(figsize=(6, 4), dpi=120)
    axes = figure.subplots()
    for (algorithm, d), group in sorted(groups.items()):
        if d != dataset:
            continue
        steps, mean, low, high = _curve_band(group)
        (line,) = axes.plot(steps, mean, label=f"{algorithm} (n={len(group)})")
        axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_title(dataset)
    axes.set_xlabel("step (offline updates + env steps)")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    path = out_dir / f"curve_{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset)}.png"
    figure.savefig(path)
    return path


def _curve_band(group: list[_Series]) -> tuple[np.ndarray, ...]:
    """Steps, mean and band of a group's curves, each run interpolated onto the union of steps
    up to the shortest run's end: a 95% bootstrap CI per step, or min–max for ≤ 2 seeds."""
    end = min(s.steps[-1] for s in group)
    steps = np.unique(np.concatenate([s.steps[s.steps <= end] for s in group]))
    curves = np.array([np.interp(steps, s.steps, s.values) for s in group])
    mean = curves.mean(axis=0)
    if len(group) <= 2:
        return steps, mean, curves.min(axis=0), curves.max(axis=0)
    ci = stats.bootstrap(
        (curves,),
        np.mean,
        axis=0,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    return steps, mean, ci.low, ci.high
