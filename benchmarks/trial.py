"""A real `o2o sweep` trial: the rates it logs, and what each process of the sweep costs.

`run_trial(spec)` runs `o2o sweep SPEC` in a subprocess on a local Ray (fresh Tune storage and
MLflow store in a temporary directory) and, while it runs, samples the CPU time of every
process under it — the driver (Tune, the MLflow callback), GCS, the raylet, Ray's agents and
monitors, idle workers, the trial actor — every `SAMPLE_S` seconds. Each sample's CPU is
booked to the process's label at that moment (a worker is `ray::IDLE` before it becomes the
trial actor). Two windows:

- startup: from the sweep's start to the start of its trial's first iteration (Ray starting,
  the dataset read, the trial actor built);
- training: from the first iteration's start to the last one's end (the trial's iterations,
  its evaluations, its checkpoints, and whatever Ray and Tune do meanwhile) — the steady cost
  of a trial beside its learner.

Iterations are placed on the clock by their own result (`time_total_s`, `time_this_iter_s`,
and Tune's whole-second `timestamp`), not by when Tune writes the result, which can lag.

The trial's `perf/updates_per_s` and `perf/env_steps_per_s` are read from its Tune result file
(`result.json`), one per iteration, with the time each iteration spent outside its update and
collection loop (`time_this_iter_s` minus units / rate: an evaluation, RLlib's bookkeeping).
Per phase, its units per CPU-second of the trial actor (evaluations and checkpoints included,
to the nearest sample at each end of each iteration) compare with a loop's on a machine whose
load moves. Each label also records the niceness its processes ran at, and the trial actor's
CPU is split into its main thread's (the learner, the env, evaluation) and its other threads'
(Ray's core worker: RPC, heartbeats, metrics export).

`BURNERS` busy-loop processes (nice 0, in this session) can run throughout the measurement:
the oversubscribed machine made reproducible.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

SAMPLE_S = 0.5
"""Seconds between two samples of the sweep's processes."""
SCRIPTS = {
    "log_monitor.py": "log monitor",
    "autoscaler/_private/monitor.py": "autoscaler monitor",
    "dashboard/dashboard.py": "dashboard head",
    "dashboard/agent.py": "ray::DashboardAgent",
    "runtime_env/agent/main.py": "ray::RuntimeEnvAgent",
    "workers/default_worker.py": "worker (starting)",
    "workers/setup_worker.py": "worker (starting)",
}
"""Ray's Python processes by the script they run, for those not (yet) named `ray::…`."""


def label(proc: psutil.Process, driver: int) -> str:
    """What a process of the sweep is: the driver, a Ray daemon, or a worker by its `ray::` title
    (the trial actor's is its algorithm class, e.g. `ray::IQLAlgorithm`)."""
    if proc.pid == driver:
        return "driver (o2o sweep: Tune, MLflow)"
    cmd = proc.cmdline()
    if not cmd:
        return "(exiting)"
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0].split(".")[0]
    for script, name in SCRIPTS.items():
        if any(part.endswith(script) for part in cmd):
            return name
    return proc.name()


def burn() -> None:
    """Spin for ever: one process's worth of CPU demand."""
    while True:
        pass


def start_burners(n: int) -> list[subprocess.Popen]:
    """n busy-loop processes at this process's niceness, in its session (Linux schedules a
    session's processes as one group, so they compete with the sweep's as other users' work in
    the same terminal or container would)."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import trial; trial.burn()"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for proc in burners:
        proc.kill()
        proc.wait()


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def main_thread_seconds(proc: psutil.Process) -> float:
    """CPU seconds of the process's main thread (the one whose id is the process's)."""
    return next((t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid), 0.0)


def result_rows(storage: Path) -> list[dict[str, Any]]:
    """Every complete result line of every trial under `storage`, in file order (Tune may be
    writing the last one)."""
    rows = []
    for path in sorted(storage.glob("*/*/result.json")):
        rows += [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]
    return rows


Sample = tuple[float, dict[str, float], int]
"""(epoch seconds, CPU seconds of each label since the sample before, processes seen); a label
`name` + MAIN_THREAD holds its processes' main threads' share."""
MAIN_THREAD = " (main thread)"
RATES = {"offline": ("perf/updates_per_s", "counters/updates"), "online": ("perf/env_steps_per_s", "counters/env_steps")}
"""Phase → its rate metric and the counter of its units."""


def iteration_spans(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each result's iteration as (start, end) in epoch seconds: Tune's `timestamp` (whole
    seconds) sets the trial's clock, `time_total_s` and `time_this_iter_s` place each
    iteration on it (to half a second)."""
    offset = statistics.median(r["timestamp"] - r["time_total_s"] for r in rows) + 0.5
    return [(offset + r["time_total_s"] - r["time_this_iter_s"], offset + r["time_total_s"]) for r in rows]


def cpu_within(samples: list[Sample], name: str, spans: list[tuple[float, float]]) -> float:
    """CPU seconds of label `name` in the samples taken within `spans`."""
    return sum(booked.get(name, 0.0) for t, booked, _ in samples if any(a < t <= b for a, b in spans))


def phase_rates(rows: list[dict[str, Any]], samples: list[Sample], actor: str) -> dict[str, Any]:
    """Per phase: each iteration's logged rate and the seconds it spent outside its loop (with
    whether it evaluated), and the phase's units per CPU-second of the trial actor."""
    spans = iteration_spans(rows)
    out: dict[str, Any] = {}
    previous = {counter: 0.0 for _, counter in RATES.values()}
    for phase, (rate_key, counter) in RATES.items():
        iterations, phase_spans, units_total = [], [], 0.0
        for row, span in zip(rows, spans):
            o2o = row.get("o2o", {})
            if rate_key in o2o:
                units = o2o[counter] - previous[counter]
                units_total += units
                phase_spans.append(span)
                iterations.append(
                    {
                        "rate": o2o[rate_key],
                        "outside_s": row["time_this_iter_s"] - units / o2o[rate_key],
                        "evaluated": "eval/return_mean" in o2o,
                    }
                )
            previous[counter] = o2o.get(counter, previous[counter])
        cpu = cpu_within(samples, actor, phase_spans)
        out[phase] = {"iterations": iterations, "per_actor_cpu_s": units_total / cpu if cpu > 0 else None}
    return out


def run_trial(spec: str, extra_env: dict[str, str]) -> dict[str, Any]:
    """Run `o2o sweep spec` on a local Ray in a fresh temporary storage (removed after a
    successful sweep, kept with its output after a failed one); return the trial's
    per-iteration rates and the CPU seconds of each process label in the two windows."""
    tmp = Path(tempfile.mkdtemp(prefix="o2o-trial-bench-"))
    storage = tmp / "runs"
    cmd = [
        sys.executable, "-m", "o2o.platform.cli", "sweep", spec,
        "--storage", str(storage), "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
    ]
    log = (tmp / "sweep.log").open("w")
    me = psutil.Process()
    start, my_cpu0 = time.time(), cpu_seconds(me)
    sweep = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env})
    driver = psutil.Process(sweep.pid)
    known: dict[int, tuple[float, float]] = {}
    niceness: dict[str, set[int]] = defaultdict(set)
    pids: dict[str, set[int]] = defaultdict(set)
    samples: list[Sample] = []
    while sweep.poll() is None:
        time.sleep(SAMPLE_S)
        booked: dict[str, float] = defaultdict(float)
        try:
            procs = [driver, *driver.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for proc in procs:
            try:
                with proc.oneshot():
                    cpu, main, name = cpu_seconds(proc), main_thread_seconds(proc), label(proc, sweep.pid)
                    niceness[name].add(proc.nice())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pids[name].add(proc.pid)
            cpu_before, main_before = known.get(proc.pid, (0.0, 0.0))
            booked[name] += cpu - cpu_before
            booked[name + MAIN_THREAD] += main - main_before
            known[proc.pid] = (cpu, main)
        samples.append((time.time(), dict(booked), len(procs)))
    wall, my_cpu = time.time() - start, cpu_seconds(me) - my_cpu0
    log.close()
    if sweep.returncode != 0:
        raise SystemExit(f"o2o sweep {spec} failed (exit {sweep.returncode}); its output: {tmp / 'sweep.log'}")
    rows = result_rows(storage)
    shutil.rmtree(tmp)
    spans = iteration_spans(rows)
    windows = {"startup": [(start, spans[0][0])], "training": [(spans[0][0], spans[-1][1])]}
    training = [s for s in samples if spans[0][0] < s[0] <= spans[-1][1]]
    actor = max(
        (name for _, booked, _ in training for name in booked if name.startswith("ray::") and MAIN_THREAD not in name),
        key=lambda name: sum(booked.get(name, 0.0) for _, booked, _ in training),
    )
    cost: dict[str, Any] = {}
    for window, ((a, b),) in windows.items():
        by_label: dict[str, float] = defaultdict(float)
        for t, booked, _ in samples:
            if a < t <= b:
                for name, cpu in booked.items():
                    if MAIN_THREAD not in name or name == actor + MAIN_THREAD:
                        by_label[name] += cpu
        cost[window] = {"seconds": b - a, "cpu_s": dict(sorted(by_label.items(), key=lambda kv: -kv[1]))}
    return {
        "spec": spec,
        "wall_s": wall,
        "sampler_cpu_s": my_cpu,
        "processes_max": max(s[2] for s in samples),
        "phases": phase_rates(rows, samples, actor),
        "trial_actor": actor,
        "niceness": {name: sorted(values) for name, values in niceness.items()},
        "processes": {name: len(values) for name, values in pids.items()},
        "cost": cost,
    }


def cost_table(cost: dict[str, Any], processes: dict[str, int], niceness: dict[str, list[int]]) -> str:
    """Markdown: per process label, how many processes had it and at which niceness, and their
    CPU seconds in each window, also in cores (CPU s / window s)."""
    names = list(dict.fromkeys(n for w in cost.values() for n in w["cpu_s"]))
    head = " | ".join(f"{w} CPU s | cores" for w in cost)
    lines = [f"| process | n | nice | {head} |", "|---|---:|---:|" + "---:|" * (2 * len(cost))]
    for name in [*names, "all"]:
        cells = [str(processes.get(name, "")), "/".join(map(str, niceness.get(name, [])))]
        for w in cost.values():
            whole = sum(v for k, v in w["cpu_s"].items() if MAIN_THREAD not in k)
            cpu = whole if name == "all" else w["cpu_s"].get(name, 0.0)
            cells += [f"{cpu:.1f}", f"{cpu / max(w['seconds'], 1e-9):.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| window, s | | | " + " | ".join(f"{w['seconds']:.0f} | " for w in cost.values()).rstrip(" |") + " |")
    return "\n".join(lines)


