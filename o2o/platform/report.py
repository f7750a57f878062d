"""Reports: the tables and plots papers print, read back from a sweep's MLflow runs.

For each (algorithm, dataset) the score of a run is its last evaluation of the metric
(``eval/normalized_score`` by default); the table gives the mean over seeds with a 95%
percentile-bootstrap CI, next to the mean score at the offline phase's end (where fine-tuning
started: what an O2O method is asked to improve on). Across datasets, each algorithm gets the
interquartile mean (IQM) of all its dataset × seed scores with a stratified-bootstrap CI
(rliable; Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021),
which is robust to a few outlier runs. Learning curves are one PNG per dataset: mean over seeds
against env steps after the hand-off (offline updates before it, as negatives), with a 95% CI
band (min–max with two seeds or fewer), one line per algorithm.

Where a method logs histograms during training (``o2o_histograms``, see o2o.platform.tracking;
FamO2O's ``online/beta``, the balance coefficients its policy chose), each (algorithm, dataset)
gets one heatmap per histogram name, from one run, the lowest seed that logged it: x the step,
y the bins, colour each step's share of its counts, so a shift of the distribution over
training shows whatever the number of states behind each step.

``report.html`` puts all of it on one self-contained page (inline CSS, figures as PNG data URIs,
no scripts, nothing fetched) with a per-trial table whose run ids link to the MLflow UI, so a
report can be opened from disk or mailed as a single file.

Runs are grouped by their ``o2o.algorithm`` and ``dataset_id`` tags and the ``seed`` param; an
experiment that several sweeps share (``tracking.experiment``) is one comparison, and where two
sweeps run the same algorithm (SAC and RLPD-style SAC) their rows carry the sweep's name too;
only FINISHED runs count unless asked otherwise, so a crashed run's partial score never enters
a table. Bootstraps use fixed seeds, so a report is reproducible.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shlex
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TypeVar

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter
from mlflow.entities import Run
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rliable import library as rly
from rliable import metrics as rly_metrics
from scipy import stats

from o2o.platform.tracking import HISTOGRAMS, TAG_SWEEP

T = TypeVar("T")

TAG_ALGORITHM = "o2o.algorithm"
TAG_DATASET = "dataset_id"
COUNTER_ENV_STEPS = "counters/env_steps"
COUNTER_UPDATES = "counters/updates"
COUNTER_PHASE = "counters/phase"
ITERATION_SECONDS = "perf/iteration_s"
TAG_PHASES = "o2o.phases"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"
"""Where `mlflow ui` serves a store that has no tracking server (sqlite, a file store)."""


@dataclass
class ScoreRow:
    """One table row: an algorithm's final score on a dataset over seeds."""

    algorithm: str
    dataset: str
    n_seeds: int
    mean: float
    ci_low: float
    ci_high: float
    offline_end: float | None = None
    """Mean over the seeds of their last evaluation before the online phase, the policy that
    fine-tuning starts from; None unless every seed has one (RLPD-style SAC has no offline
    phase; runs logged without the engine's counters cannot tell the phases apart)."""
    offline_ci_low: float | None = None
    offline_ci_high: float | None = None
    """The 95% interval of `offline_end`, bootstrapped over seeds as the final score's is."""


@dataclass
class TrialRow:
    """One MLflow run of the selection, whether or not it counted in the tables."""

    algorithm: str
    dataset: str
    seed: str
    final: float | None
    """The run's last evaluation of the metric; None when it never evaluated."""
    status: str
    run_id: str
    counted: bool
    """Whether its score entered the tables: evaluated, and finished unless unfinished runs were
    asked for."""


@dataclass
class HistogramFigure:
    """One heatmap of a logged histogram over training steps, and the run it was drawn from."""

    algorithm: str
    dataset: str
    seed: str
    name: str
    """The histogram's name as the method logged it (``online/beta``)."""
    run_id: str
    n_steps: int
    """How many logged steps, one column each."""
    path: Path


@dataclass
class PhaseSpan:
    """One phase of a run as it ran: its budget, the iterations and MLflow steps it took, its
    wall time (evaluations included) and when it began after the run's first iteration began."""

    name: str
    budget: int
    unit: str
    iterations: int
    first_step: int
    last_step: int
    wall_s: float
    start_s: float


@dataclass
class PhaseTimeline:
    """The phases of one run, the lowest counted seed of an (algorithm, dataset)."""

    algorithm: str
    dataset: str
    seed: str
    run_id: str
    phases: list[PhaseSpan]


@dataclass
class Report:
    """A built report and the files it wrote."""

    rows: list[ScoreRow]
    iqm: dict[str, tuple[float, float, float]]
    """algorithm → (IQM, CI low, CI high) over all its datasets × seeds."""
    iqm_offline: dict[str, tuple[float, float, float]]
    """The same at the offline end, for algorithms whose every run has one."""
    curve_paths: list[Path]
    table_path: Path
    trials: list[TrialRow]
    html_path: Path
    histograms: list[HistogramFigure]
    """One per (algorithm, dataset, histogram name) that some counted run logged; none when no
    method logged histograms."""
    timelines: list[PhaseTimeline]
    """One per (algorithm, dataset) whose runs logged their phases."""


@dataclass
class _Series:
    """One run's history of the metric; `steps` counted from the hand-off (`_steps_from_handoff`)
    unless `from_handoff` is False."""

    algorithm: str
    dataset: str
    seed: str
    steps: np.ndarray
    values: np.ndarray
    from_handoff: bool = True


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
    ``scores.csv``, ``curve_<dataset>.png``, ``histogram_<algorithm>_<dataset>_<name>.png`` for
    the histograms runs logged, and ``report.html``; raises ValueError when there is nothing to
    report or the MLflow store cannot be read.
    """
    experiment_id, series, trials = _load_runs(
        tracking_uri, experiment, metric, sweep, include_unfinished
    )
    groups: dict[tuple[str, str], list[_Series]] = defaultdict(list)
    for s in series:
        groups[(s.algorithm, s.dataset)].append(s)

    rows = [_score_row(a, d, groups[(a, d)]) for a, d in sorted(groups)]
    iqm = _iqm(groups)
    iqm_offline = _iqm(groups, at_offline_end=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(sorted({a for a, _ in groups}))
    curve_paths = [
        _plot_curves(dataset, groups, metric, colors, out_dir)
        for dataset in sorted({d for _, d in groups})
    ]
    histograms = _plot_histograms(tracking_uri, trials, out_dir)
    timelines = _phase_timelines(tracking_uri, trials)
    report = Report(
        rows, iqm, iqm_offline, curve_paths, out_dir / "scores.md", trials, out_dir / "report.html", histograms,
        timelines,
    )
    report.table_path.write_text(format_table(report))
    with (out_dir / "scores.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["algorithm", "dataset", "n_seeds", "offline_end", "offline_ci_low", "offline_ci_high", "mean", "ci_low", "ci_high"]
        )
        for r in rows:
            offline = ["" if v is None else v for v in (r.offline_end, r.offline_ci_low, r.offline_ci_high)]
            writer.writerow([r.algorithm, r.dataset, r.n_seeds, *offline, r.mean, r.ci_low, r.ci_high])
    title = _Title(experiment, experiment_id, sweep, metric, tracking_uri, include_unfinished)
    report.html_path.write_text(_format_html(report, title, colors), encoding="utf-8")
    return report


def format_table(report: Report) -> str:
    """The report's markdown tables: score per (algorithm, dataset), then IQM per algorithm."""
    lines = [
        "| algorithm | dataset | seeds | offline end [95% CI] | score mean [95% CI] |",
        "|---|---|---:|---:|---|",
        *(
            f"| {r.algorithm} | {r.dataset} | {r.n_seeds} | {_offline_end(r)} | "
            f"{r.mean:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}] |"
            for r in report.rows
        ),
    ]
    if report.iqm:
        covers = iqm_coverage(report.rows)
        lines += [
            "",
            "| algorithm | IQM over datasets × seeds [95% CI] | at the offline end |",
            "|---|---|---|",
            *(
                f"| {algorithm}{covers.get(algorithm, '')} | {value:.1f} [{low:.1f}, {high:.1f}] | "
                f"{_interval(report.iqm_offline.get(algorithm))} |"
                for algorithm, (value, low, high) in sorted(report.iqm.items())
            ),
        ]
    return "\n".join(lines) + "\n"


def iqm_coverage(rows: list[ScoreRow]) -> dict[str, str]:
    """Where algorithms ran on different datasets (an ablation on one of a comparison's two), each
    algorithm's IQM covers only its own: algorithm → " (over d1, d2)" naming them, so that IQMs over
    different datasets are not read as comparable. Empty when every algorithm ran every dataset."""
    datasets: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        datasets[r.algorithm].add(r.dataset)
    if len({frozenset(d) for d in datasets.values()}) <= 1:
        return {}
    return {a: f" (over {', '.join(sorted(d))})" for a, d in datasets.items()}


def _offline_end(row: ScoreRow) -> str:
    return _interval(None if row.offline_end is None else (row.offline_end, row.offline_ci_low, row.offline_ci_high))


def _interval(estimate: tuple[float, float, float] | None) -> str:
    """"value [low, high]", or "—" where there is no estimate."""
    return "—" if estimate is None else f"{estimate[0]:.1f} [{estimate[1]:.1f}, {estimate[2]:.1f}]"


def mlflow_ui(tracking_uri: str) -> tuple[str, str | None]:
    """The address of the MLflow UI that shows `tracking_uri`'s runs, and the command that
    starts it when no server does: a tracking server serves its own UI, while a sqlite or file
    store is only seen through a local ``mlflow ui``, which listens on 127.0.0.1:5000."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), None
    return LOCAL_MLFLOW_UI, f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def _load_runs(
    tracking_uri: str, experiment: str, metric: str, sweep: str | None, include_unfinished: bool
) -> tuple[str, list[_Series], list[TrialRow]]:
    """The experiment's id, every counted run's history of `metric` (as (step, value) arrays
    sorted by step), and one TrialRow per run of the selection, counted or not."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ValueError(f"no MLflow store at {db}")
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
    except MlflowException as exc:  # an unreachable server, an unsupported URI scheme
        raise ValueError(f"MLflow at {tracking_uri} cannot be read: {' '.join(str(exc).split())}") from None
    if found is None:
        raise ValueError(f"MLflow experiment {experiment!r} not found at {tracking_uri}")

    # Runs of every status are read so that the per-trial table shows the failed ones too.
    selection = f"tags.`{TAG_SWEEP}` = '{sweep}'" if sweep is not None else ""
    runs = [
        r
        for r in _search_all(client, found.experiment_id, selection)
        if TAG_ALGORITHM in r.data.tags and TAG_DATASET in r.data.tags
    ]
    counted = [r for r in runs if include_unfinished or r.info.status == "FINISHED"]
    which = f"experiment {experiment!r}" + (f" sweep {sweep!r}" if sweep else "")
    if not counted:
        state = "" if include_unfinished else "finished "
        raise ValueError(
            f"{which} has no {state}runs tagged {TAG_ALGORITHM} and {TAG_DATASET}"
        )

    sweeps_of: dict[str, set[str]] = defaultdict(set)
    for run in counted:
        sweeps_of[run.data.tags[TAG_ALGORITHM]].add(run.data.tags.get(TAG_SWEEP, ""))
    counted_ids = {r.info.run_id for r in counted}
    series = []
    trials = []
    for run in runs:
        algorithm = run.data.tags[TAG_ALGORITHM]
        if len(sweeps_of[algorithm]) > 1:  # e.g. SAC and RLPD-style SAC in one experiment
            algorithm = f"{algorithm} ({run.data.tags.get(TAG_SWEEP, '?')})"
        dataset = run.data.tags[TAG_DATASET]
        seed = run.data.params.get("seed", run.info.run_id)
        final = run.data.metrics.get(metric)
        counts = run.info.run_id in counted_ids and final is not None
        if counts:
            history = sorted(
                client.get_metric_history(run.info.run_id, metric),
                key=lambda m: (m.step, m.timestamp),
            )
            values = np.array([m.value for m in history], dtype=float)
            counters = {
                key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                for key in (COUNTER_ENV_STEPS, COUNTER_UPDATES)
            }
            steps, from_handoff = _steps_from_handoff([m.step for m in history], *counters.values())
            series.append(_Series(algorithm, dataset, seed, steps, values, from_handoff))
            final = float(values[-1])
        trials.append(
            TrialRow(algorithm, dataset, seed, final, run.info.status, run.info.run_id, counts)
        )
    if not series:
        raise ValueError(f"metric {metric!r} was never logged in {which}")
    trials.sort(key=lambda t: (t.algorithm, t.dataset, _natural(t.seed)))
    return found.experiment_id, series, trials


def _steps_from_handoff(
    steps: list[int], env_steps: dict[int, float], updates: dict[int, float]
) -> tuple[np.ndarray, bool]:
    """The evaluations' x on an axis every algorithm shares whatever its phases and UTD ratio:
    env steps after the offline → online hand-off, and offline updates before it as negatives
    (−3000 … 0 for 3k offline updates), so a run with no offline phase (RLPD-style) starts at 0
    and each algorithm's online end sits at its env-step budget. MLflow's step counts online
    updates too, which stretched a UTD-4 run's online phase fourfold. Runs logged without the
    engine's counters keep MLflow's step (and False says so)."""
    if not all(s in env_steps and s in updates for s in steps):
        return np.array(steps), False
    handoff = max((updates[s] for s in updates if env_steps.get(s) == 0), default=0.0)
    return np.array([env_steps[s] if env_steps[s] > 0 else updates[s] - handoff for s in steps]), True


def _natural(text: str) -> tuple[int, int | str]:
    """Sort key that puts seed "2" before seed "10"."""
    return (0, int(text)) if text.isdigit() else (1, text)


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _offline_score(series: _Series) -> float | None:
    """The run's last score before the online phase; None without one."""
    before = series.values[series.steps <= 0] if series.from_handoff else []
    return float(before[-1]) if len(before) else None


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean with its 95% percentile-bootstrap interval over seeds (one seed: the value thrice)."""
    mean = float(values.mean())
    if len(values) == 1:
        return mean, mean, mean
    ci = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    ).confidence_interval
    return mean, float(ci.low), float(ci.high)


def _score_row(algorithm: str, dataset: str, group: list[_Series]) -> ScoreRow:
    """Mean of the runs' final scores with a 95% percentile-bootstrap CI over seeds, and the same
    of their scores at the offline phase's end where every run has one."""
    finals = np.array([s.values[-1] for s in group])
    offline = [_offline_score(s) for s in group]
    start = _mean_ci(np.array(offline)) if all(v is not None for v in offline) else (None, None, None)
    return ScoreRow(algorithm, dataset, len(finals), *_mean_ci(finals), *start)


def _iqm(
    groups: dict[tuple[str, str], list[_Series]], at_offline_end: bool = False
) -> dict[str, tuple[float, float, float]]:
    """Per algorithm, IQM of final scores (or of the scores at the offline end, for algorithms
    whose every run has one) over a (seeds × datasets) matrix with rliable CIs.

    rliable's stratified bootstrap needs one score per (seed, dataset), so only seeds that
    finished on every dataset of the algorithm enter the matrix. Each algorithm's bootstrap
    starts from the same seed: the same runs give the same interval, whichever other
    algorithms share the experiment.
    """
    by_algorithm: dict[str, dict[str, dict[str, float | None]]] = defaultdict(dict)
    for (algorithm, dataset), group in groups.items():
        by_algorithm[algorithm][dataset] = {
            s.seed: _offline_score(s) if at_offline_end else float(s.values[-1]) for s in group
        }
    incomplete = {a for a, per_dataset in by_algorithm.items() for scores in per_dataset.values() if None in scores.values()}
    for algorithm in incomplete:
        del by_algorithm[algorithm]
    matrices = {}
    for algorithm, per_dataset in by_algorithm.items():
        seeds = sorted(set.intersection(*(set(scores) for scores in per_dataset.values())))
        if seeds:
            datasets = sorted(per_dataset)
            matrices[algorithm] = np.array(
                [[per_dataset[d][seed] for d in datasets] for seed in seeds]
            )
    estimates = {}
    for algorithm, matrix in matrices.items():
        bootstrap = _StratifiedBootstrap(matrix, seed=BOOTSTRAP_SEED)
        (low,), (high,) = bootstrap.conf_int(
            lambda scores: np.array([rly_metrics.aggregate_iqm(scores)]),
            reps=BOOTSTRAP_RESAMPLES,
            size=CONFIDENCE,
            method="percentile",
        )
        estimates[algorithm] = (float(rly_metrics.aggregate_iqm(matrix)), float(low), float(high))
    return estimates


class _StratifiedBootstrap(rly.StratifiedBootstrap):
    """rliable's bootstrap over seeds within each dataset, drawing from its own seeded
    generator. rliable 1.2 draws the resampled seeds from NumPy's global generator whatever
    `random_state` says, so the same runs gave another IQM interval on every `o2o report`."""

    def update_indices(self) -> tuple[np.ndarray, ...]:
        indices = self.generator.choice(self._num_items, self._args_shape, replace=True)
        return (indices, *self._strata_indices)


def _colors(algorithms: list[str]) -> dict[str, str]:
    """A distinct colour per algorithm, the same in every figure and on the HTML page, so a
    reader follows an algorithm by its colour across datasets: matplotlib's default cycle for
    up to 10, then tab20's light tones of the same hues up to 20 (the base family alone is 11),
    evenly spaced hues beyond."""
    n = len(algorithms)
    if n <= 20:
        tab20 = colormaps["tab20"]
        palette = [f"C{i}" if i < 10 else tab20(2 * (i - 10) + 1) for i in range(n)]
    else:
        palette = [colormaps["hsv"](i / n) for i in range(n)]
    return {a: to_hex(c) for a, c in zip(algorithms, palette)}


def _plot_curves(
    dataset: str,
    groups: dict[tuple[str, str], list[_Series]],
    metric: str,
    colors: dict[str, str],
    out_dir: Path,
) -> Path:
    """One PNG: each algorithm's mean curve over seeds with its band, the legend below the axes
    (inside them, nine entries covered half the curves)."""
    shown = {key: group for key, group in sorted(groups.items()) if key[1] == dataset}
    rows = -(-len(shown) // 2)  # two legend columns
    figure = Figure(figsize=(6, 4 + 0.22 * rows), dpi=120, layout="constrained")
    axes = figure.subplots()
    for (algorithm, _), group in shown.items():
        steps, mean, low, high = _curve_band(group)
        color = colors[algorithm]
        # Each evaluation is marked: a run evaluated once (RLPD-style, no offline phase) is a point.
        axes.plot(steps, mean, color=color, marker="o", markersize=3, label=f"{algorithm} (n={len(group)})")
        if len(steps) > 1:
            axes.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        else:  # a band needs two steps to fill; at one it is an error bar
            axes.errorbar(steps, mean, yerr=np.vstack([mean - low, high - mean]), color=color, capsize=4, alpha=0.5)
    axes.set_title(dataset)
    if all(s.from_handoff for group in shown.values() for s in group):
        axes.axvline(0, color="0.6", linewidth=0.8)
        axes.set_xlabel("env steps after the hand-off (offline updates before it, < 0)")
    else:
        axes.set_xlabel("MLflow step")
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M rather than a 1e6 offset
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, frameon=False, fontsize="small")
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


def _lowest_seed_with(trials: list[TrialRow], load: Callable[[TrialRow], T | None]) -> Iterator[tuple[TrialRow, T]]:
    """Per (algorithm, dataset), its counted run of the lowest seed for which `load` finds
    something, with what it found: one run, since an average over seeds would blur each run's
    own course into one that no run went through."""
    done: set[tuple[str, str]] = set()
    for trial in trials:  # sorted by algorithm, dataset, then seed
        if not trial.counted or (trial.algorithm, trial.dataset) in done:
            continue
        found = load(trial)
        if found:
            done.add((trial.algorithm, trial.dataset))
            yield trial, found


def _plot_histograms(tracking_uri: str, trials: list[TrialRow], out_dir: Path) -> list[HistogramFigure]:
    """Heatmaps of the histograms of each (algorithm, dataset), from the lowest seed that
    logged any."""
    client = MlflowClient(tracking_uri=tracking_uri)
    return [
        _plot_histogram(trial, name, steps, out_dir)
        for trial, histograms in _lowest_seed_with(trials, lambda t: _load_histograms(client, t.run_id))
        for name, steps in sorted(histograms.items())
    ]


def _phase_timelines(tracking_uri: str, trials: list[TrialRow]) -> list[PhaseTimeline]:
    """Each (algorithm, dataset)'s phases as the lowest seed that logged them ran them."""
    client = MlflowClient(tracking_uri=tracking_uri)
    return [
        PhaseTimeline(trial.algorithm, trial.dataset, trial.seed, trial.run_id, spans)
        for trial, spans in _lowest_seed_with(trials, lambda t: _load_phases(client, t.run_id))
    ]


def _load_phases(client: MlflowClient, run_id: str) -> list[PhaseSpan]:
    """A run's phases as it ran them, from the phase list it was tagged with (``o2o.phases``)
    and the phase index and wall time each iteration logged; none for a run that logged neither."""
    declared = client.get_run(run_id).data.tags.get(TAG_PHASES)
    phase_of = {m.step: int(m.value) for m in client.get_metric_history(run_id, COUNTER_PHASE)}
    seconds = {m.step: m.value for m in client.get_metric_history(run_id, ITERATION_SECONDS)}
    if declared is None or not phase_of:
        return []
    phases = json.loads(declared)
    steps_of: dict[int, list[int]] = defaultdict(list)
    for step in sorted(phase_of):
        steps_of[phase_of[step]].append(step)
    elapsed, spans = 0.0, []
    for index in sorted(steps_of):
        steps = steps_of[index]
        wall = float(sum(seconds.get(step, 0.0) for step in steps))
        name, budget, unit = phases[index]
        spans.append(PhaseSpan(name, int(budget), unit, len(steps), steps[0], steps[-1], wall, elapsed))
        elapsed += wall
    return spans


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """MLflow without its per-download progress bars, which would bury the report's table."""
    before = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name]
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = before


def _load_histograms(client: MlflowClient, run_id: str) -> dict[str, list[dict]]:
    """A run's histogram artifacts: name → its logged ``{"step", "edges", "counts"}``, by step."""
    if not client.list_artifacts(run_id, HISTOGRAMS):
        return {}
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        local = Path(client.download_artifacts(run_id, HISTOGRAMS, tmp))
        payloads = [json.loads(path.read_text()) for path in local.glob("*/*.json")]
    by_name: dict[str, list[dict]] = defaultdict(list)
    for payload in payloads:
        by_name[payload["name"]].append(payload)
    return {name: sorted(steps, key=lambda p: p["step"]) for name, steps in by_name.items()}


def _plot_histogram(trial: TrialRow, name: str, steps: list[dict], out_dir: Path) -> HistogramFigure:
    """One PNG: a column per logged step, spanning halfway to its neighbours (logging need not be
    regular), split at that step's own bin edges and coloured by each bin's share of the step's
    counts; shares, not counts, so that steps with more states do not outshine the others."""
    x = _column_edges([p["step"] for p in steps])
    shares = [np.asarray(p["counts"], dtype=float) / max(sum(p["counts"]), 1) for p in steps]
    norm = Normalize(0.0, max(float(share.max()) for share in shares) or 1.0)
    figure = Figure(figsize=(6, 4), dpi=120, layout="constrained")
    axes = figure.subplots()
    for i, (payload, share) in enumerate(zip(steps, shares)):
        mesh = axes.pcolormesh(x[i : i + 2], payload["edges"], share[:, None], cmap="viridis", norm=norm)
    figure.colorbar(mesh, ax=axes, label="share of the step's counts")
    axes.set_title(f"{trial.algorithm} · {trial.dataset} · seed {trial.seed}\n{name}")
    axes.set_xlabel("MLflow step (o2o_step)")
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.set_ylabel(f"{name} bins")
    stem = f"histogram_{trial.algorithm}_{trial.dataset}_{name}"
    path = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.png"
    figure.savefig(path)
    return HistogramFigure(trial.algorithm, trial.dataset, trial.seed, name, trial.run_id, len(steps), path)


def _column_edges(steps: Sequence[float]) -> np.ndarray:
    """Boundaries of one column per step: midway between neighbours, the outer ones as far out
    as their inner half (a lone step gets width 1)."""
    centres = np.asarray(steps, dtype=float)
    if len(centres) == 1:
        return centres[0] + np.array([-0.5, 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


@dataclass
class _Title:
    """What the HTML page says about where its numbers come from."""

    experiment: str
    experiment_id: str
    sweep: str | None
    metric: str
    tracking_uri: str
    include_unfinished: bool


def _format_html(report: Report, title: _Title, colors: dict[str, str]) -> str:
    """The report as one self-contained page: inline CSS, curves as PNG data URIs, no scripts,
    and nothing fetched but the MLflow run pages a reader clicks. Every text is escaped."""
    ui, start_ui = mlflow_ui(title.tracking_uri)
    heading = title.experiment + (f" · {title.sweep}" if title.sweep else "")
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    n_counted = sum(t.counted for t in report.trials)
    which = "any status" if title.include_unfinished else "finished"
    meta = [
        f"experiment <b>{escape(title.experiment)}</b>",
        *([f"sweep <b>{escape(title.sweep)}</b>"] if title.sweep else []),
        f"metric <code>{escape(title.metric)}</code>",
        f"{n_counted} of {len(report.trials)} runs counted ({which}, evaluated)",
        f"generated {escape(generated)}",
    ]
    datasets = sorted({r.dataset for r in report.rows})  # the order of report.curve_paths
    curves = "\n".join(
        f'<figure><img alt="learning curves on {escape(dataset)}" src="{_png_uri(path)}"></figure>'
        for dataset, path in zip(datasets, report.curve_paths, strict=True)
    )
    ui_note = (
        f"Run ids open the run in the MLflow UI at {escape(ui)}."
        if start_ui is None
        else f"Run ids open the run in a local MLflow UI; start it with "
        f"<code>{escape(start_ui)}</code>, then click."
    )
    if n_counted < len(report.trials):
        ui_note += " Rows on a grey background did not count in the tables above."
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>o2o report · {escape(heading)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<p class="kicker">o2o report</p>
<h1>{escape(heading)}</h1>
<p class="meta">{" · ".join(meta)}</p>
</header>
<section>
<h2>Final score</h2>
<p class="note">Mean over seeds of each run's last evaluation, with its 95% percentile-bootstrap
CI and the number of seeds; the best mean on each dataset is highlighted. Above it, the mean at
the offline phase's end: the policy that online fine-tuning started from.</p>
<div class="wide">{_score_table(report.rows, colors)}</div>
</section>
{_iqm_section(report.iqm, report.iqm_offline, colors, iqm_coverage(report.rows))}
<section>
<h2>Learning curves</h2>
<p class="note">Mean over seeds against environment steps after the offline → online hand-off
(offline updates before it, at negative steps), with a 95% bootstrap band (min–max with two
seeds or fewer).</p>
<div class="curves">
{curves}
</div>
</section>
{_distributions_section(report.histograms, ui, title.experiment_id)}
{_phases_section(report.timelines, ui, title.experiment_id)}
<section>
<h2>Trials</h2>
<p class="note">{ui_note}</p>
{_trial_table(report.trials, ui, title.experiment_id)}
</section>
<footer>Written by <code>o2o report</code> beside <code>scores.md</code>, <code>scores.csv</code>
and the PNGs of its figures. Tracking store <code>{escape(title.tracking_uri)}</code>.</footer>
</body>
</html>
"""


def _png_uri(path: Path) -> str:
    """A PNG file as a data URI, so the page carries its figures."""
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _distributions_section(histograms: list[HistogramFigure], ui: str, experiment_id: str) -> str:
    """The histogram heatmaps, each captioned with what it shows and the run it comes from
    (linked to the MLflow UI); nothing when no run logged histograms."""
    if not histograms:
        return ""
    figures = "\n".join(
        f'<figure><img alt="{escape(h.name)} of {escape(h.algorithm)} on {escape(h.dataset)}" '
        f'src="{_png_uri(h.path)}"><figcaption>Share of each step\'s counts per bin of '
        f"<code>{escape(h.name)}</code> over {h.n_steps} logged steps: {escape(h.algorithm)} on "
        f"{escape(h.dataset)}, seed {escape(h.seed)}, run "
        f'<a href="{escape(f"{ui}/#/experiments/{experiment_id}/runs/{h.run_id}")}">'
        f"<code>{escape(h.run_id)}</code></a>.</figcaption></figure>"
        for h in histograms
    )
    return f"""<section>
<h2>Distributions</h2>
<p class="note">Histograms a method logged during training (FamO2O: the balance coefficient β its
policy chose in the states it visited), one run per algorithm and dataset, the lowest seed that
logged them: x the MLflow step, y the bins, colour each step's share of its counts.</p>
<div class="curves">
{figures}
</div>
</section>"""


def _phases_section(timelines: list[PhaseTimeline], ui: str, experiment_id: str) -> str:
    """Which phase ran when: per algorithm and dataset (one run, the lowest seed), each phase's
    budget, iterations, MLflow steps, start and wall time; nothing when no run logged phases."""
    if not timelines:
        return ""
    rows = []
    for t in timelines:
        link = f'<a href="{escape(f"{ui}/#/experiments/{experiment_id}/runs/{t.run_id}")}"><code>{escape(t.run_id[:8])}</code></a>'
        for i, p in enumerate(t.phases):
            who = f"{escape(t.algorithm)} · {escape(t.dataset)} · seed {escape(t.seed)} · {link}" if i == 0 else ""
            rows.append(
                f"<tr><td>{who}</td><td><code>{escape(p.name)}</code></td>"
                f'<td class="num">{p.budget:,} {escape(p.unit.replace("_", " "))}</td><td class="num">{p.iterations}</td>'
                f'<td class="num">{p.first_step:,}–{p.last_step:,}</td><td class="num">{_duration(p.start_s)}</td>'
                f'<td class="num">{_duration(p.wall_s)}</td></tr>'
            )
    return f"""<section>
<h2>Phases</h2>
<p class="note">The phases each trial ran, in order, as the lowest seed of each algorithm and
dataset ran them: the budget in its unit, the iterations and MLflow steps it took, when it began
after the trial's first iteration began, and its wall time (evaluations included).</p>
<div class="wide"><table>
<thead><tr><th>run</th><th>phase</th><th>budget</th><th>iterations</th><th>MLflow steps</th><th>began at</th><th>wall time</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table></div>
</section>"""


def _duration(seconds: float) -> str:
    """h:mm:ss."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _swatch(algorithm: str, colors: dict[str, str]) -> str:
    """The algorithm's name after a dot of its curve colour."""
    return (
        f'<span class="swatch" style="background:{escape(colors[algorithm])}"></span>'
        f"{escape(algorithm)}"
    )


def _score_table(rows: list[ScoreRow], colors: dict[str, str]) -> str:
    """Algorithms down, datasets across; each cell the mean, its CI and seeds."""
    datasets = sorted({r.dataset for r in rows})
    algorithms = sorted({r.algorithm for r in rows})
    cell = {(r.algorithm, r.dataset): r for r in rows}
    best = {d: max(r.mean for r in rows if r.dataset == d) for d in datasets}
    head = "".join(f"<th>{escape(d)}</th>" for d in datasets)
    body = []
    for algorithm in algorithms:
        cells = []
        for dataset in datasets:
            r = cell.get((algorithm, dataset))
            if r is None:
                cells.append('<td class="missing">—</td>')
                continue
            mark = ' class="best"' if r.mean == best[dataset] else ""
            start = "" if r.offline_end is None else f'<span class="start">offline end {_offline_end(r)} →</span> '
            cells.append(
                f'<td{mark}>{start}<span class="mean">{r.mean:.1f}</span> '
                f'<span class="ci">[{r.ci_low:.1f}, {r.ci_high:.1f}]</span> '
                f'<span class="n">n={r.n_seeds}</span></td>'
            )
        body.append(f'<tr><th scope="row">{_swatch(algorithm, colors)}</th>{"".join(cells)}</tr>')
    return (
        f'<table class="scores"><thead><tr><th>algorithm</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _iqm_section(
    iqm: dict[str, tuple[float, float, float]],
    iqm_offline: dict[str, tuple[float, float, float]],
    colors: dict[str, str],
    covers: dict[str, str],
) -> str:
    """The IQM table: at the offline end (where every run has one) and final, the final one
    with a bar and CI whisker per algorithm on one shared scale; each algorithm's datasets named
    where they differ (`iqm_coverage`)."""
    if not iqm:
        return ""
    low_end = min(0.0, *(low for _, low, _ in iqm.values()))
    high_end = max(0.0, *(high for _, _, high in iqm.values()))
    span = (high_end - low_end) or 1.0

    def at(x: float) -> float:
        return 100 * (x - low_end) / span

    rows = []
    for algorithm, (value, low, high) in sorted(iqm.items(), key=lambda kv: -kv[1][0]):
        left, right = sorted((at(0.0), at(value)))
        offline = iqm_offline.get(algorithm)
        offline_cell = (
            "<td>–</td>" if offline is None
            else f'<td><span class="mean">{offline[0]:.1f}</span> <span class="ci">[{offline[1]:.1f}, {offline[2]:.1f}]</span></td>'
        )
        rows.append(
            f'<tr><th scope="row">{_swatch(algorithm, colors)}{escape(covers.get(algorithm, ""))}</th>{offline_cell}'
            f'<td><span class="mean">{value:.1f}</span> '
            f'<span class="ci">[{low:.1f}, {high:.1f}]</span></td>'
            f'<td class="plot"><div class="track">'
            f'<div class="bar" style="left:{left:.2f}%;width:{right - left:.2f}%;'
            f'background:{escape(colors[algorithm])}"></div>'
            f'<div class="whisker" style="left:{at(low):.2f}%;width:{at(high) - at(low):.2f}%">'
            f"</div></div></td></tr>"
        )
    return f"""<section>
<h2>Aggregate over datasets</h2>
<p class="note">Interquartile mean of every dataset × seed score at the offline phase's end and
at the end, with rliable's 95% stratified-bootstrap CI; only seeds that finished on all of an
algorithm's datasets enter (where algorithms ran on different datasets, each row names its own);
"–" where some run has no offline phase.</p>
<table class="iqm"><thead><tr><th>algorithm</th><th>offline end</th><th>final IQM [95% CI]</th>
<th class="plot"><span>{low_end:.0f}</span><span>{high_end:.0f}</span></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</section>"""


def _trial_table(trials: list[TrialRow], ui: str, experiment_id: str) -> str:
    """One row per run, its id linking to the run's page in the MLflow UI; a rule above each
(algorithm, dataset) group, whose name its later rows repeat in grey."""
    body = []
    previous = None
    for t in trials:
        final = "—" if t.final is None else f"{t.final:.1f}"
        url = f"{ui}/#/experiments/{experiment_id}/runs/{t.run_id}"
        marks = [
            *(["first"] if (t.algorithm, t.dataset) != previous else []),
            *(["skipped"] if not t.counted else []),
        ]
        previous = (t.algorithm, t.dataset)
        body.append(
            f'<tr class="{" ".join(marks)}">'
            f"<td>{escape(t.algorithm)}</td><td>{escape(t.dataset)}</td>"
            f'<td class="num">{escape(t.seed)}</td><td class="num">{final}</td>'
            f'<td><span class="status {escape(t.status.lower())}">{escape(t.status)}</span></td>'
            f'<td><a href="{escape(url)}"><code>{escape(t.run_id)}</code></a></td></tr>'
        )
    return (
        '<table class="trials"><thead><tr><th>algorithm</th><th>dataset</th>'
        '<th class="num">seed</th><th class="num">final score</th><th>status</th>'
        f"<th>MLflow run</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


_CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa;
  --accent: #0969da; --best: #dafbe1; --best-ink: #116329; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 28px 32px 48px; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
.kicker { margin: 0; color: var(--muted); font-size: 12px; font-weight: 600;
  letter-spacing: .04em; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 4px; }
.meta, .note, footer { color: var(--muted); font-size: 13px; }
.note { margin: 0 0 10px; max-width: 80ch; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table { border-collapse: collapse; }
.wide { overflow-x: auto; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
thead th { background: var(--soft); font-weight: 600; font-size: 13px; }
.scores td, .scores thead th:not(:first-child) { text-align: center; }
.mean { font-weight: 600; font-variant-numeric: tabular-nums; }
.ci, .n, .start { color: var(--muted); font-size: 12.5px; font-variant-numeric: tabular-nums; }
.scores .n, .scores .start { display: block; }
.scores td.best { background: var(--best); }
.scores td.best .mean { color: var(--best-ink); }
.missing { color: var(--muted); }
.iqm td.plot, .iqm th.plot { width: 360px; }
.iqm th.plot { color: var(--muted); font-weight: 400; }
.iqm th.plot span + span { float: right; }
.track { position: relative; height: 18px; background: var(--soft); border-radius: 3px; }
.bar { position: absolute; top: 3px; bottom: 3px; border-radius: 2px; opacity: .8; }
.whisker { position: absolute; top: 3px; height: 12px; border: solid var(--ink);
  border-width: 0 2px; background: linear-gradient(var(--ink), var(--ink)) center / 100% 2px
  no-repeat; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 8px; vertical-align: 0; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; padding: 4px 2px 0; }
.trials { font-size: 13.5px; }
.trials td { padding: 4px 12px; border-bottom-color: #eaeef2; }
.trials tr:not(.first) td:nth-child(-n+2) { color: #aab1b9; }
.trials tr.first td { border-top: 2px solid var(--line); }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.trials tr.skipped td { color: var(--muted); background: var(--soft); }
.status { font-size: 11.5px; font-weight: 600; padding: 1px 7px; border-radius: 10px;
  background: #eaeef2; color: var(--muted); }
.status.finished { background: #dafbe1; color: #116329; }
.status.failed, .status.killed { background: #ffebe9; color: #a40e26; }
.status.running, .status.scheduled { background: #ddf4ff; color: #0550ae; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
footer { margin-top: 32px; padding-top: 12px; border-top: 1px solid var(--line); }
"""
