"""MLflow tracking for Tune sweeps: one MLflow run per seed of each Tune trial, kept across restarts.

The tracker is a Tune callback, so it lives in the driver and sees every trial's results; it
uses an explicit `MlflowClient` (no global active run), since many trials log at once.

Contract with the engine, which writes three keys into every training result:

- ``result["o2o"]``: flat ``{metric name: float}`` (``eval/normalized_score``, ``offline/…``,
  ``online/…``, ``perf/…``) — the only metrics logged; the rest of RLlib's result is not;
- ``result["o2o_step"]``: a global monotone step (every update + every env step), MLflow's step;
- ``result["o2o_tags"]``: ``{tag: str}`` (dataset id and hash, phase), set when they change;

and one key that a method sends only on the iterations it has something to show:

- ``result["o2o_histograms"]``: ``{name: {"edges": [n + 1 ascending floats], "counts": [n ints]}}``
  (FamO2O's ``online/beta``: the balance coefficients its policy chose in that iteration's
  states), each logged as the JSON artifact ``histograms/<name, "/" as ".">/<step, 10 digits>.json``
  holding ``{"name", "step", "edges", "counts"}``, which ``o2o report`` draws as a heatmap over steps.

A trial whose config has ``seeds_per_trial`` K > 1 trains seeds ``seed``, ``seed`` + 1, …,
``seed`` + K - 1 side by side and gets K runs, one per seed, so that ``o2o report`` sees every
seed as it sees a one-seed trial's: run i carries the tag ``o2o.seed_lane`` = "i", the param
``seed`` = ``seed`` + i and the name ``<dataset>-s<seed + i>-<trial id>``. Its results add

- ``result["o2o_seeds"]``: K dicts, dict i the metrics of seed ``seed`` + i (the keys ``o2o``
  has in a one-seed trial), each logged to run i at ``o2o_step``; ``o2o`` is then their mean,
  for Tune's progress output, and is not logged;

- ``result["o2o_histograms_seeds"]``: where the method records histograms, K dicts, dict i seed
  ``seed`` + i's ``o2o_histograms``, each logged to run i;

and share ``o2o_step``, ``o2o_tags`` (set on every run) and ``done``. Such a result may not carry
``o2o_histograms`` (one set of histograms for all its seeds); one that does, or whose
``o2o_seeds`` or ``o2o_histograms_seeds`` is missing or of another length, is refused before
anything is logged.

A trial that Tune restarts after a failure, or that a resumed sweep picks up with a new driver,
continues the same MLflow runs (found by the ``o2o.trial_id`` tag, and ``o2o.seed_lane`` where
the trial trains several seeds), and steps at or below the last one logged to a run are dropped,
so replayed iterations never duplicate points or histograms.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from o2o import environment_variables

SECRET_NAME = re.compile(r"token|secret|password|credential", re.IGNORECASE)
"""Param and tag names that are never logged, whatever their value."""

TAG_SWEEP = "o2o.sweep"
TAG_TRIAL_ID = "o2o.trial_id"
TAG_SEED_LANE = "o2o.seed_lane"
"""On each run of a trial of `seeds_per_trial` K > 1: its place i in 0..K-1, the run of seed
`seed` + i. A one-seed trial's run has none (so stores from before K > 1 resume unchanged)."""
HISTOGRAMS = "histograms"
"""The artifact folder of a run's histograms, one subfolder per histogram name."""

FIRST_CONTACT_TIMEOUT_S = 10
"""Seconds a tracking server has to answer o2o's first request before its URI is refused."""


def histogram_artifact(name: str, step: int) -> str:
    """Where a run keeps histogram `name` at `step`: one folder per name ("/" would nest
    folders, so it becomes "."), one file per step, zero-padded so names sort as steps do."""
    return f"{HISTOGRAMS}/{name.replace('/', '.')}/{step:010d}.json"


def check_server(uri: str) -> None:
    """Refuse, within seconds, an HTTP(S) tracking URI whose server does not answer: ValueError
    with MLflow's reason on one line.

    MLflow retries a failed request 7 times with exponential backoff, about 4.5 minutes of
    silence for a connection that is refused; this first request goes once, with a
    FIRST_CONTACT_TIMEOUT_S timeout. The requests after it keep MLflow's retries, which ride
    out a server restart during a sweep. Other schemes (sqlite, file) are left to MLflow.
    """
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(FIRST_CONTACT_TIMEOUT_S)}
    with environment_variables(limits):
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except MlflowException as exc:
            raise ValueError(" ".join(str(exc).split())) from None


def _histogram_payload(
    name: str, step: int, histogram: Mapping[str, Sequence[float]], trial_id: str
) -> dict[str, Any]:
    """The JSON a histogram is kept as; ValueError naming it and its trial unless it has n + 1
    ascending edges around n counts (the report draws bins from consecutive edges)."""
    edges = [float(e) for e in histogram.get("edges", ())]
    counts = [int(c) for c in histogram.get("counts", ())]
    if not counts or len(edges) != len(counts) + 1:
        raise ValueError(
            f"trial {trial_id}: histogram {name!r} at step {step} has {len(edges)} 'edges' for "
            f"{len(counts)} 'counts'; it needs at least one count and one edge more than counts"
        )
    if any(low >= high for low, high in zip(edges, edges[1:])):
        raise ValueError(f"trial {trial_id}: histogram {name!r} at step {step} has edges that do not ascend")
    return {"name": name, "step": step, "edges": edges, "counts": counts}


def _seeds_per_trial(config: Mapping[str, Any]) -> int:
    """K, the seeds a trial of `config` trains (1 where its config does not say)."""
    return int(config.get("seeds_per_trial") or 1)


def _lanes(trial: Trial) -> list[int | None]:
    """The seed lane of each of the trial's runs, in seed order: None for a one-seed trial's
    only run (which has no lane tag), else 0..K-1."""
    k = _seeds_per_trial(trial.config)
    return [None] if k == 1 else list(range(k))


def _run_key(trial: Trial, lane: int | None) -> str:
    """How the tracker knows a run in memory: the trial id for a one-seed trial's run,
    `<trial id>/<lane>` for one seed's run of a K-seed trial."""
    return trial.trial_id if lane is None else f"{trial.trial_id}/{lane}"


@dataclass
class _RunState:
    """What the tracker remembers about one MLflow run (a trial's, or one seed's of a trial)."""

    run_id: str
    last_step: int = -1
    tags: dict[str, str] = field(default_factory=dict)


class MLflowTracker(Callback):
    """Logs each seed of each Tune trial to its own MLflow run (see the module docstring for
    the contract)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        sweep_name: str,
        param_keys: Sequence[str],
        tags: Mapping[str, str],
    ) -> None:
        """`param_keys` name the trial config entries to log as params (dotted keys look one
        level into nested dicts); `tags` go on every run (code and package versions)."""
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.sweep_name = sweep_name
        self.param_keys = list(param_keys)
        self.tags = {k: str(v) for k, v in tags.items() if not SECRET_NAME.search(k)}
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._runs: dict[str, _RunState] = {}
        """Run key (`_run_key`) → the run's state."""

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the sweep; a resumed driver reconnects and finds its
        # runs again by tag, so neither the client nor the per-run state travels.
        state = self.__dict__.copy()
        state.update(_client=None, _experiment_id=None, _runs={})
        return state

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created on first use (with the sqlite file's directory)."""
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id, creating the experiment if it does not exist."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(self.experiment_name, artifact_location=self._artifacts())
            )
        return self._experiment_id

    def _artifacts(self) -> str | None:
        """Artifacts of a sqlite store live beside its file; a server chooses its own."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).parent.joinpath("mlartifacts").as_uri()
        return None

    def setup(self, **info: Any) -> None:
        """Connect before the first trial, so a bad tracking URI fails the sweep at once."""
        _ = self.experiment_id

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Open the trial's runs, one per seed: each the one already logged to if any (a
        restart), else a new one."""
        for lane in _lanes(trial):
            key = _run_key(trial, lane)
            state = self._runs.get(key) or self._find_run(trial.trial_id, lane)
            if state is None:
                state = self._create_run(trial, lane)
            else:
                self.client.update_run(state.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            self._runs[key] = state

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        """Log the result's ``o2o`` metrics and ``o2o_histograms`` at ``o2o_step`` (K > 1 seeds:
        ``o2o_seeds[i]`` and ``o2o_histograms_seeds[i]`` to seed i's run), skipping steps a run
        has logged; a malformed histogram, or a K > 1 result off the contract, is refused before
        anything is logged."""
        per_run = self._per_run(trial, result)
        if not any(metrics or histograms for metrics, histograms in per_run):
            return
        if "o2o_step" not in result:
            raise ValueError(f"trial {trial.trial_id}: result has 'o2o' data but no 'o2o_step'")
        step = int(result["o2o_step"])
        for _, histograms in per_run:  # every seed's, before any run logs
            for name, histogram in histograms.items():
                _histogram_payload(name, step, histogram, trial.trial_id)
        tags = {k: str(v) for k, v in result.get("o2o_tags", {}).items()}
        for lane, (metrics, histograms) in zip(_lanes(trial), per_run, strict=True):
            self._log(trial, self._runs[_run_key(trial, lane)], step, metrics, histograms, tags)

    @staticmethod
    def _per_run(
        trial: Trial, result: Mapping[str, Any]
    ) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any]]]:
        """The metrics and histograms each of the trial's runs logs from `result`, in seed order:
        ``o2o`` and ``o2o_histograms`` for a one-seed trial, ``o2o_seeds`` and
        ``o2o_histograms_seeds`` for K > 1, whose results must carry one dict of each per seed
        and no ``o2o_histograms`` (ValueError naming the trial otherwise)."""
        runs = _seeds_per_trial(trial.config)
        if runs == 1:
            return [(result.get("o2o"), result.get("o2o_histograms") or {})]
        where = f"trial {trial.trial_id} trains {runs} seeds (seeds_per_trial)"
        shared = result.get("o2o_histograms")
        if shared:
            raise ValueError(
                f"{where} but its result has 'o2o_histograms' ({', '.join(sorted(shared))}), one set "
                "for all its seeds; a K-seed result gives each seed its own ('o2o_histograms_seeds')"
            )
        histograms = result.get("o2o_histograms_seeds") or [{}] * runs
        if len(histograms) != runs:
            raise ValueError(f"{where} but its result's 'o2o_histograms_seeds' holds {len(histograms)} seeds' histograms")
        per_seed = result.get("o2o_seeds")
        if per_seed is None:
            if result.get("o2o"):
                raise ValueError(
                    f"{where} but its result has no 'o2o_seeds', only 'o2o' (their mean, which is "
                    "no seed's own metrics)"
                )
            per_seed = [None] * runs
        if len(per_seed) != runs:
            raise ValueError(f"{where} but its result's 'o2o_seeds' holds {len(per_seed)} seeds' metrics")
        return list(zip(per_seed, histograms))

    def _log(
        self,
        trial: Trial,
        state: _RunState,
        step: int,
        metrics: Mapping[str, Any] | None,
        histograms: Mapping[str, Any],
        tags: dict[str, str],
    ) -> None:
        """Log one run's `metrics` and `histograms` at `step` unless the run has logged it, and
        the `tags` whose value changed."""
        changed = {k: v for k, v in tags.items() if state.tags.get(k) != v}
        if step <= state.last_step and not changed:
            return
        if step > state.last_step:
            payloads = [_histogram_payload(n, step, h, trial.trial_id) for n, h in histograms.items()]
            # Before the metrics: a restart finds its last step from the metrics, so a driver
            # that dies in between replays this step and rewrites the same files.
            for payload in payloads:
                self.client.log_dict(state.run_id, payload, histogram_artifact(payload["name"], step))
        now = int(time.time() * 1000)
        points = (
            [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
            if step > state.last_step
            else []
        )
        self.client.log_batch(
            state.run_id, metrics=points, tags=[RunTag(k, v) for k, v in changed.items()]
        )
        state.tags.update(changed)
        state.last_step = max(state.last_step, step)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Mark the trial's runs FINISHED."""
        self._terminate(trial, RunStatus.FINISHED)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Mark the trial's runs FAILED (a later restart of the trial reopens them)."""
        self._terminate(trial, RunStatus.FAILED)

    def _terminate(self, trial: Trial, status: int) -> None:
        for lane in _lanes(trial):
            state = self._runs.get(_run_key(trial, lane))
            if state is not None:
                self.client.set_terminated(state.run_id, status=RunStatus.to_string(status))

    def _find_run(self, trial_id: str, lane: int | None) -> _RunState | None:
        """The run a previous start of this trial logged to for seed lane `lane` (None: the
        one-seed trial's run, found by trial id alone), with its last logged step."""
        selection = f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' and tags.`{TAG_SWEEP}` = '{self.sweep_name}'"
        if lane is not None:
            selection += f" and tags.`{TAG_SEED_LANE}` = '{lane}'"
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=selection,
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        if not runs:
            return None
        run = runs[0]
        last_step = max(
            (
                point.step
                for key in run.data.metrics
                for point in self.client.get_metric_history(run.info.run_id, key)
            ),
            default=-1,
        )
        # Tags the engine set are known, so they are not rewritten on the first result.
        return _RunState(run.info.run_id, last_step, dict(run.data.tags))

    def _create_run(self, trial: Trial, lane: int | None) -> _RunState:
        """A new run for the trial's seed lane `lane` (None: a one-seed trial's run), whose
        seed, in its name and `seed` param, is the config's `seed` + `lane`."""
        config = trial.config
        values = self._params(config)
        tags = {**self.tags, TAG_SWEEP: self.sweep_name, TAG_TRIAL_ID: trial.trial_id}
        seed = config.get("seed")
        if lane is not None:
            tags[TAG_SEED_LANE] = str(lane)
            if seed is not None:
                seed += lane
                if "seed" in values:
                    values["seed"] = seed
        name = trial.trial_id
        if "dataset_id" in config and "seed" in config:
            name = f"{config['dataset_id']}-s{seed}-{trial.trial_id}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        params = [Param(key, str(value)) for key, value in values.items()]
        self.client.log_batch(run.info.run_id, params=params)
        return _RunState(run.info.run_id)

    def _params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The configured param keys present in `config`, secret-named keys left out."""
        found = {}
        for key in self.param_keys:
            if SECRET_NAME.search(key):
                continue
            if key in config:
                found[key] = config[key]
            elif "." in key:
                head, tail = key.split(".", 1)
                nested = config.get(head)
                if isinstance(nested, Mapping) and tail in nested:
                    found[key] = nested[tail]
        return found
