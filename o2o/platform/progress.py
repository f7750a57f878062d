"""What `o2o sweep` prints while a sweep runs: one line per trial event, in o2o's terms.

Tune's own output — each trial's whole RLlib config when it starts (~250 lines), a trial table of
RLlib counters that stay 0 offline, a TensorBoard hint — is off at the default verbosity
(`sweep.run_sweep`); this Tune callback prints instead, per trial: its phase, updates and env
steps so far, its last evaluation score (`eval/normalized_score`), and the rates of the
iteration (updates/s; env steps/s online). Plain lines, flushed as written, so a terminal and
a log read alike (`ray job logs`, CI). A trial's line is printed at its first result, when its
phase or score changes, when it finishes, and otherwise at most every `PRINT_INTERVAL_S`;
a failed trial's line names its error and the file with the whole traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from o2o import environment_variables

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
"""Ray colours its error texts for terminals."""
PRINT_INTERVAL_S = 10.0
"""Most often a running trial's progress line is printed when nothing else changed."""
TUNE_DETAIL_VERBOSITY = 2
"""From this `o2o sweep -v`, Tune prints its own output as well (each trial's config, its
results, the trial table) and the trials' own log lines reach the driver."""
QUIET_TUNE: dict[str, str] = {
    # Tune's legacy output engine, which prints nothing at verbosity 0; its new engine prints the
    # results path and a TensorBoard hint at any verbosity, and a failed trial's whole last result.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Its advice to checkpoint less often when a small sweep's trials checkpoint every few seconds.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
"""Tune's settings (environment variables, read when a fit starts) below TUNE_DETAIL_VERBOSITY.
A failed trial's error is still logged by Tune's controller, with its traceback."""


@contextmanager
def tune_output(verbose: int) -> Iterator[None]:
    """Tune's own output while a sweep at `-v verbose` runs: QUIET_TUNE below
    TUNE_DETAIL_VERBOSITY, Tune's defaults from it on."""
    if verbose >= TUNE_DETAIL_VERBOSITY:
        yield
        return
    with environment_variables(QUIET_TUNE):
        yield


@dataclass
class _Seen:
    """What was last printed for a trial."""

    printed_at: float
    phase: str
    score: float | None
    updates: float
    env_steps: float


class TrialIndex(Callback):
    """Each trial's id and config by its directory, as Tune's controller knows them. A trial's
    result carries them only once it has reported, so the sweep's summary takes them from here
    for a trial that failed before its first result (e.g. in its setup)."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[str, dict[str, Any]]] = {}

    def _note(self, trial: Trial) -> None:
        self.by_path[trial.path] = (trial.trial_id, dict(trial.config or {}))

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._note(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._note(trial)


class ProgressPrinter(Callback):
    """Prints each trial's progress as one line (see the module docstring)."""

    def __init__(self, label_keys: Sequence[str], interval_s: float = PRINT_INTERVAL_S) -> None:
        """`label_keys` are the trial config entries that tell trials apart (dataset, seed,
        grid axes); a trial is called by their values."""
        self.label_keys = list(label_keys)
        self.interval_s = interval_s
        self._start = time.monotonic()
        self._seen: dict[str, _Seen] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tune pickles its callbacks with the sweep; a resumed sweep's lines start anew.
        self.__dict__.update(state, _seen={})

    def setup(self, total_num_samples: int | None = None, **info: Any) -> None:
        """Say what is about to run: trial actors take a while to start."""
        self._start = time.monotonic()
        print(f"[{_clock(0)}] starting {total_num_samples} trial(s)", flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._print(trial, "started")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        metrics = result.get("o2o")
        if not metrics:
            return
        phase = str(result.get("o2o_tags", {}).get("phase", "?"))
        seen = self._seen.get(trial.trial_id)
        # A result carries a score only where it evaluated; the line shows the last one.
        score = metrics.get("eval/normalized_score", None if seen is None else seen.score)
        updates, env_steps = metrics.get("counters/updates", 0.0), metrics.get("counters/env_steps", 0.0)
        now = time.monotonic()
        if seen is not None and phase == seen.phase and score == seen.score and now - seen.printed_at < self.interval_s:
            return
        moved = (updates - seen.updates, env_steps - seen.env_steps) if seen is not None else (updates, env_steps)
        # The phase tag is the trial's phase after the iteration: at a hand-off, the next one.
        shown = f"{seen.phase} → {phase}" if seen is not None and phase != seen.phase else phase
        self._print(trial, _progress(shown, metrics, score, *moved))
        self._seen[trial.trial_id] = _Seen(now, phase, score, updates, env_steps)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        metrics = (trial.last_result or {}).get("o2o") or {}
        seen = self._seen.get(trial.trial_id)
        score = metrics.get("eval/normalized_score", None if seen is None else seen.score)
        self._print(trial, f"finished  {_counters(metrics, score)}")

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._print(trial, f"failed, restarting: {_trial_error(trial)}")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # The traceback's place in the sweep's storage (the driver's copy is temporary).
        where = Path(trial.path, trial.run_metadata.error_filename or "error.txt")
        self._print(trial, f"FAILED: {_trial_error(trial)}  (traceback: {where})")

    def _print(self, trial: Trial, text: str) -> None:
        print(f"[{_clock(time.monotonic() - self._start)}] {self._label(trial)}  {text}", flush=True)

    def _label(self, trial: Trial) -> str:
        """e.g. 'hopper-medium seed 0 expectile=0.9'."""
        config = trial.config or {}
        forms = {"dataset_id": "{}", "seed": "seed {}"}
        return " ".join(forms.get(key, f"{key}={{}}").format(config.get(key)) for key in self.label_keys) or str(trial)


def _progress(
    phase: str, metrics: Mapping[str, float], score: float | None, moved_updates: float, moved_env_steps: float
) -> str:
    """A result's line: phase, counters, score, and the rates of what moved in the iteration."""
    rates = []
    if moved_env_steps > 0:
        env_rate = metrics.get("perf/env_steps_per_s", 0.0)
        rates.append(f"{env_rate:,.0f} env steps/s")
        if moved_updates > 0:  # online updates run inside the env-step loop: the same clock
            rates.append(f"{env_rate * moved_updates / moved_env_steps:,.0f} updates/s")
    elif moved_updates > 0:
        rates.append(f"{metrics.get('perf/updates_per_s', 0.0):,.0f} updates/s")
    return f"{phase:<16}  {_counters(metrics, score)}  {'  '.join(rates)}".rstrip()


def _clock(seconds: float) -> str:
    """Minutes:seconds since the sweep started, e.g. '  3:07'."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:3d}:{secs:02d}"


def _counters(metrics: Mapping[str, float], score: float | None) -> str:
    """Updates and env steps so far, and the last evaluation's score ('-' before the first)."""
    return (
        f"updates {metrics.get('counters/updates', 0.0):>9,.0f}  "
        f"env steps {metrics.get('counters/env_steps', 0.0):>9,.0f}  "
        f"score {'-' if score is None else f'{score:.1f}':>5}"
    )


def error_line(text: str) -> str:
    """The line that names an error in Tune's or Ray's text of it: a traceback's last line
    (e.g. 'ValueError: …'), without Ray's terminal colours."""
    lines = [line.strip() for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return lines[-1] if lines else "no error text"


def _trial_error(trial: Trial) -> str:
    """The trial's latest error, from the file Tune has just written in the driver."""
    try:
        return error_line(Path(trial.error_file).read_text())
    except (OSError, TypeError):  # no file (yet), or no path
        return "see the trial's error file"
