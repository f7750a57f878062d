"""Throughput of o2o's learners against plain single-file PyTorch loops doing the same updates.

For every registered algorithm (`o2o.algorithms.REGISTRY`), three measurements:

- offline: gradient updates per second of o2o's learner (`run_updates` on its learner-resident
  replay), of the algorithm's CORL-style plain loop (`plain_loops.PLAIN_LOOPS`) and, where there
  is one, of its lean loop (`LEAN_LOOPS`: IQL's reference), all on 100k synthetic Hopper-sized
  transitions;
- online: environment steps per second on Hopper-v5 at one update per step, o2o's engine path
  (`Algorithm.train()`: EnvRunner collection, replay append, update, weight sync every step)
  against the plain loop acting with the same actor and doing the same update;
- memory: peak RSS of a fresh process that builds the learner (or the plain loop) on 1M
  transitions and runs a few updates.

`--only finetune` measures what differs between a method and its base in fine-tuning: updates
per second of o2o's learner in its online phase (its online overrides and sampling rule) on the
100k synthetic transitions plus 10k online rows, after 50 offline updates — no env steps, so a
method that needs a dataset online (BAQ's π_β) is measured too.

Protocol (benchmarks/README.md): one process, one torch thread, the same networks (256×2,
also for AWAC and CQL, whose defaults are 3×256), batch 256, Hopper-v5 dimensions; each side
warmed up, then timed over the same number of updates (or env steps), alternating sides for
`--rounds` rounds; the median is reported. An algorithm without a plain loop is measured on
o2o's side only, so a newly registered one shows up in the table at once. Every rate is also
taken per CPU-second of this process (`time.process_time`), which a loaded machine disturbs
far less than the wall clock; the table shows the wall clock's unless `--clock cpu`.

`--trial SPEC` measures a real `o2o sweep` trial instead (`trial.py`): its logged
`perf/updates_per_s` and `perf/env_steps_per_s` beside the lean loop, o2o's learner and the
plain online loop measured in this process right before and right after it, and the CPU time
of each of the sweep's processes.

    python benchmarks/throughput.py                                  # every algorithm, all three
    python benchmarks/throughput.py --algorithms iql td3bc --only offline --json out.json
    python benchmarks/throughput.py --trial tune_specs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from plain_loops import ACT, BATCH, GAMMA, OBS, PLAIN_LOOPS, LeanIQL, PlainOnline, Replay

HERE = Path(__file__).resolve().parent
EPISODE = 1000
"""Length of the synthetic dataset's episodes (Hopper's time limit); Cal-QL's returns-to-go and
IQL's return-range reward scale read them."""
ONLINE_SETTINGS: dict[str, dict[str, Any]] = {
    # SPOT pretrains its VAE on the dataset first; the online benchmark has no dataset.
    "spot": {"vae_pretrain_updates": 0},
    # OPT's collection and Q_on pre-training need a dataset and run before fine-tuning, which is
    # what is measured here: on the base's union replay (balanced replay weighs rows against a
    # dataset), at the benchmark's UTD 1 (not its online phase override of 5).
    "opt_td3bc": {
        "collection_env_steps": 0, "pretraining_updates": 0, "sampling_rule": "union",
        "phase_overrides": {"online": {"bc_weight": 0.0}},
    },
    "opt_spot": {"vae_pretrain_updates": 0, "collection_env_steps": 0, "pretraining_updates": 0, "sampling_rule": "union"},
}
"""Per-algorithm settings the online benchmark needs, each with its reason."""
ONLINE_SKIPPED: dict[str, str] = {
    "baq_td3bc": "BAQ's behaviour model is fitted to a dataset offline; the online benchmark has none (`--only finetune`)",
}
"""Algorithms the online benchmark cannot run, with the reason; `finetune` measures their updates."""
LEAN_LOOPS: dict[str, Callable[[dict[str, np.ndarray]], LeanIQL]] = {"iql": LeanIQL}
"""o2o algorithm name → its lean loop, built on a dataset (it owns its packed replay)."""
Results = dict[str, Any]
Rates = tuple[float, float]
"""(per wall-clock second, per CPU-second of this process)."""


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n Hopper-sized transitions of random numbers in `EPISODE`-step episodes, with each row's
    discounted return-to-go (`mc_returns`, the column Cal-QL reads)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) % EPISODE
    rewards = rng.standard_normal(n, dtype=np.float32)
    # Discounted reverse cumulative sum within each episode, one vectorized step per position.
    padded = np.zeros(-(-n // EPISODE) * EPISODE, np.float32)
    padded[:n] = rewards
    per_episode = padded.reshape(-1, EPISODE)
    returns = np.zeros_like(per_episode)
    returns[:, -1] = per_episode[:, -1]
    for i in range(EPISODE - 2, -1, -1):
        returns[:, i] = per_episode[:, i] + GAMMA * returns[:, i + 1]
    return {
        "obs": rng.standard_normal((n, OBS), dtype=np.float32),
        "actions": rng.uniform(-0.99, 0.99, (n, ACT)).astype(np.float32),
        "rewards": rewards,
        "new_obs": rng.standard_normal((n, OBS), dtype=np.float32),
        "terminateds": (rng.random(n) < 0.01).astype(np.float32),
        "mc_returns": returns.reshape(-1)[:n],
        "eps_id": np.arange(n, dtype=np.int64) // EPISODE,
        "t": t,
    }


def registered(requested: list[str] | None) -> list[str]:
    """The algorithms to measure: those asked for (each must be registered), else every one."""
    from o2o.algorithms import REGISTRY

    unknown = sorted(set(requested or []) - set(REGISTRY))
    if unknown:
        raise SystemExit(f"unknown algorithms {unknown} (registered: {', '.join(REGISTRY)})")
    return list(requested or REGISTRY)


# --- o2o side ------------------------------------------------------------------------------------


def o2o_learner(name: str, data: dict[str, np.ndarray]) -> Any:
    """Algorithm `name`'s learner with 256×2 networks, its replay holding `data`, in its offline
    phase — what a trial's learner is after setup, without Ray or an offline reader."""
    from o2o.algorithms import config_class
    from o2o.platform.data import Transitions
    from o2o.platform.engine import Phase

    config = config_class(name)().environment("Hopper-v5").o2o(offline_updates=10**6, hidden_sizes=[256, 256])
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    transitions = Transitions(
        obs=data["obs"], actions=data["actions"], rewards=data["rewards"], new_obs=data["new_obs"],
        terminateds=data["terminateds"].astype(bool), truncateds=data["t"] == EPISODE - 1,
        eps_id=data["eps_id"], t=data["t"],
    )
    learner.build_replay(transitions, OBS, ACT)
    learner.on_phase_start(Phase("offline", 10**6, "updates"))
    return learner


def o2o_online_algo(name: str, steps: int) -> Any:
    """Algorithm `name` built for online fine-tuning from scratch on Hopper-v5 at UTD 1, acting on
    fresh weights every step, updates from the 256th step on, no evaluation. There is no
    dataset, so every sampling rule draws from the online rows (as the plain loop's replay)."""
    from o2o.algorithms import config_class

    config = (
        config_class(name)()
        .environment("Hopper-v5")
        .o2o(
            online_env_steps=10**7, env_steps_per_iteration=steps, utd_ratio=1.0, weight_sync_interval=1,
            random_steps=0, learning_starts=BATCH, hidden_sizes=[256, 256],
        )
        .training(**ONLINE_SETTINGS.get(name, {}))
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    return config.build_algo()


# --- measurements --------------------------------------------------------------------------------


def timed(fn: Callable[[int], object], n: int) -> Rates:
    """Rate of `fn(n)`, n units of work, in units per wall-clock second and per CPU-second of
    this process."""
    start, cpu = time.perf_counter(), time.process_time()
    fn(n)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def summary(rates: dict[str, list[Rates]]) -> Results:
    """Per clock ("wall", "cpu"): the median rate of each side over the rounds and the o2o /
    plain and o2o / lean ratios where those ran; and the rounds."""
    out: Results = {"rounds": rates}
    for clock, i in (("wall", 0), ("cpu", 1)):
        median = {k: statistics.median(r[i] for r in v) for k, v in rates.items()}
        ratios = {f"ratio_{k}": median["o2o"] / median[k] if k in median else None for k in ("plain", "lean")}
        out[clock] = {"median": median, **ratios}
    return out


def bench_offline(name: str, data: dict[str, np.ndarray], updates: int, rounds: int) -> Results:
    """Offline updates/s of o2o's learner and of the plain and lean loops, alternating, after 50
    updates each."""
    sides = offline_sides(name, data)
    for f in sides.values():
        f(50)
    rates: dict[str, list[Rates]] = {k: [] for k in sides}
    for _ in range(rounds):
        for k, f in sides.items():
            rates[k].append(timed(f, updates))
    return summary(rates)


def offline_sides(name: str, data: dict[str, np.ndarray]) -> dict[str, Callable[[int], object]]:
    """`side(n)` runs n offline updates: o2o's learner, the plain loop and the lean loop of
    `name` (those it has), each on `data`."""
    from o2o.platform.replay import Sampling

    learner = o2o_learner(name, data)
    sides: dict[str, Callable[[int], object]] = {"o2o": lambda n: learner.run_updates(n, Sampling("offline"))}
    if name in PLAIN_LOOPS:
        torch.manual_seed(0)
        agent = PLAIN_LOOPS[name](False)
        replay = Replay(len(data["rewards"]), agent.needs_returns_to_go).load(data)
        sides["plain"] = lambda n: [agent.update(replay.sample()) for _ in range(n)]
    if name in LEAN_LOOPS:
        torch.manual_seed(0)
        lean = LEAN_LOOPS[name](data)
        sides["lean"] = lambda n: [lean.update() for _ in range(n)]
    return sides


def bench_online(name: str, steps: int, rounds: int) -> Results:
    """Online env steps/s at UTD 1 (Ray already initialised): o2o's `perf/env_steps_per_s` of a
    `train()` iteration of `steps` steps (and the rate of the whole `train()` call) against the
    plain loop's, alternating, both warmed up past the first update."""
    algo = o2o_online_algo(name, steps)
    while algo.env_steps < BATCH + 50:
        algo.train()
    whole_call: list[float] = []

    def o2o_iteration() -> Rates:
        start, cpu = time.perf_counter(), time.process_time()
        rate = algo.train()["o2o"]["perf/env_steps_per_s"]
        whole_call.append(steps / (time.perf_counter() - start))
        return rate, steps / (time.process_time() - cpu)

    sides: dict[str, Callable[[], Rates]] = {"o2o": o2o_iteration}
    if name in PLAIN_LOOPS:
        plain = plain_online(name)
        sides = {"plain": lambda: timed(lambda n: [plain.step() for _ in range(n)], steps), **sides}
    rates: dict[str, list[Rates]] = {k: [] for k in sides}
    try:
        for _ in range(rounds):
            for k, f in sides.items():
                rates[k].append(f())
    finally:
        algo.stop()
    # RLlib's per-`train()` bookkeeping lies outside `perf/env_steps_per_s`; with a sweep's
    # 5000-step iterations it is spread over 25× more steps than here. The o2o side's CPU rate
    # is the whole call's (RLlib's bookkeeping included).
    return {**summary(rates), "o2o_whole_train_call_median": statistics.median(whole_call)}


def plain_online(name: str) -> PlainOnline:
    """The plain loop of `name` on Hopper-v5 at UTD 1, warmed up past its first update."""
    plain = PlainOnline(PLAIN_LOOPS[name](True))
    for _ in range(BATCH + 50):
        plain.step()
    return plain


def bench_trial(spec: str, updates: int, steps: int, extra_env: dict[str, str], burners: int) -> Results:
    """A real sweep of `spec` (its first trial's rates, each process's CPU; `trial.run_trial`)
    between two measurements in this process of IQL's lean loop, o2o's IQL learner (offline
    updates/s) and the CORL-style online IQL loop (env steps/s); `burners` busy processes compete
    with all of it."""
    from trial import run_trial, start_burners, stop_burners

    sides = {f"offline {k}": f for k, f in offline_sides("iql", synthetic(100_000)).items() if k != "plain"}
    plain = plain_online("iql")
    sides["online plain"] = lambda n: [plain.step() for _ in range(n)]
    units = {k: steps if k.startswith("online") else updates for k in sides}
    for f in sides.values():
        f(20)

    def window() -> dict[str, Rates]:
        return {k: timed(f, units[k]) for k, f in sides.items()}

    running = start_burners(burners)
    try:
        before = window()
        trial = run_trial(spec, extra_env)
        after = window()
    finally:
        stop_burners(running)
    return {"before": before, "after": after, "trial": trial, "burners": burners, "loadavg_after": os.getloadavg()}


def rss_mb(field: str) -> float:
    """This process's resident memory from /proc/self/status: "VmRSS" now, "VmHWM" at its peak.
    (Not `ru_maxrss`: Linux carries the parent's peak into a child across fork and exec, so a
    child's `ru_maxrss` never reads below its parent's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def memory_child(name: str, side: str, updates: int = 10) -> Results:
    """In a fresh process: build `side` ("o2o" or "plain") of algorithm `name` on 1M synthetic
    transitions, run `updates` updates; RSS after the imports and at its peak, and the bytes of
    the replay store. o2o's store holds the dataset and reserves 1M online rows (untouched until
    written); the plain replay, like CORL's `buffer_size=2_000_000`, zero-fills dataset + 1M."""
    if side == "o2o":
        import o2o.algorithms  # noqa: F401 - Ray and RLlib count as imports, not as the store
        from o2o.platform.replay import Sampling
    base = rss_mb("VmRSS")
    data = synthetic(1_000_000)
    n = len(data["rewards"])
    if side == "o2o":
        learner = o2o_learner(name, data)
        del data
        learner.run_updates(updates, Sampling("offline"))
        store = learner.replay.table.numel() * 4
    else:
        agent = PLAIN_LOOPS[name](False)
        replay = Replay(n + 1_000_000, agent.needs_returns_to_go).load(data)
        del data
        for _ in range(updates):
            agent.update(replay.sample())
        store = sum(v.numel() for v in replay.data.values()) * 4
    return {"rss_before_mb": base, "rss_peak_mb": rss_mb("VmHWM"), "store_mb": store / 2**20}


def peak_memory_1m(name: str) -> Results:
    """`memory_child` of each side of `name` (the plain one where there is a plain loop)."""
    out = {}
    for side in ("o2o", "plain") if name in PLAIN_LOOPS else ("o2o",):
        code = (
            f"import json, sys, torch; sys.path.insert(0, {str(HERE)!r}); torch.set_num_threads(1);"
            f"from throughput import memory_child; print(json.dumps(memory_child({name!r}, {side!r})))"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[side] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def peak_memory_trial(parquet: str) -> Results:
    """Peak RSS of a fresh process that builds an IQL trial on `parquet` the way a sweep does:
    RLlib's offline reader (Ray Data, materialized), validation, the learner's replay store."""
    code = (
        f"import ray, sys; sys.path.insert(0, {str(HERE)!r});"
        "from throughput import rss_mb; from o2o.algorithms.iql import IQLConfig;"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False);"
        "base = rss_mb('VmRSS');"
        f"c = IQLConfig().environment('Hopper-v5').offline_data(input_=[{parquet!r}]).o2o(offline_updates=1);"
        "a = c.build_algo(); n = a.learner_group._learner.replay.n_offline;"
        "print(n, base, rss_mb('VmHWM'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"transitions": int(out[-3]), "rss_before_mb": float(out[-2]), "rss_peak_mb": float(out[-1])}


def bench_finetune(name: str, data: dict[str, np.ndarray], updates: int, rounds: int) -> Results:
    """Fine-tuning updates/s of o2o's learner: its online phase on `data` plus 10k online rows
    (the dataset's first 10k, as online rows), drawn by its online rule, after 50 offline updates
    and 50 online ones."""
    from o2o.platform.engine import Phase
    from o2o.platform.replay import Sampling

    learner = o2o_learner(name, data)
    learner.run_updates(50, Sampling("offline"))
    learner.on_phase_start(Phase("online", 10**6, "env_steps"))
    learner.add_online({k: data[k][:10_000] for k in ("obs", "actions", "rewards", "new_obs", "terminateds")})
    sampling = Sampling(learner.hp.sampling_rule)
    learner.run_updates(50, sampling)
    rates = [timed(lambda n: learner.run_updates(n, sampling), updates) for _ in range(rounds)]
    return {**summary({"o2o": rates}), "sampling_rule": sampling.rule}


# --- report --------------------------------------------------------------------------------------


def table(results: Results, clock: str = "wall") -> str:
    """One Markdown row per algorithm: updates/s and env steps/s of each side (per `clock`
    second) with o2o's ratio to it, peak RSS of each side on 1M transitions; "—" where a side
    or a measurement did not run."""

    def rate(section: str, name: str, others: tuple[str, ...]) -> list[str]:
        r = results.get(section, {}).get(name)
        if r is None:
            return ["—"] * (1 + 2 * len(others))
        median = r[clock]["median"]
        cells = [f"{median['o2o']:.0f}"]
        for k in others:
            ratio = r[clock][f"ratio_{k}"]
            cells += ["—" if ratio is None else f"{median[k]:.0f}", "—" if ratio is None else f"{ratio:.2f}×"]
        return cells

    def rss(name: str) -> list[str]:
        m = results.get("memory_1m", {}).get(name, {})
        return [f"{m[s]['rss_peak_mb']:.0f}" if s in m else "—" for s in ("o2o", "plain")]

    lines = [
        "| algorithm | updates/s o2o | CORL-style | ratio | lean | ratio | env steps/s o2o | CORL-style | ratio | peak RSS MB o2o | CORL-style |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in results["algorithms"]:
        cells = [name, *rate("offline", name, ("plain", "lean")), *rate("online", name, ("plain",)), *rss(name)]
        lines.append("| " + " | ".join(cells) + " |")
    if results.get("finetune"):
        lines += ["", "| algorithm | fine-tuning updates/s o2o | its online rule |", "|---|---:|---|"]
        lines += [
            f"| {name} | {r[clock]['median']['o2o']:.0f} | {r['sampling_rule']} |" for name, r in results["finetune"].items()
        ]
    return "\n".join(lines)


def trial_report(results: Results) -> str:
    """The trial's logged rates beside the loops measured before and after it, the time its
    iterations spent outside their loops, and the CPU of each of its processes."""
    from trial import cost_table

    trial = results["trial"]
    phases = trial["phases"]

    def logged(phase: str) -> str:
        rates = [i["rate"] for i in phases[phase]["iterations"]]
        if not rates:
            return "—"
        per_cpu = phases[phase]["per_actor_cpu_s"]
        cpu = "" if per_cpu is None else f"; per actor CPU-s {per_cpu:.0f}"
        return f"{statistics.median(rates):.1f} ({min(rates):.1f}–{max(rates):.1f}, {len(rates)} it.{cpu})"

    def loop(side: str) -> str:
        b, a = results["before"][side], results["after"][side]
        return f"{b[0]:.1f} / {a[0]:.1f} (per CPU-s {b[1]:.0f} / {a[1]:.0f})"

    lines = [
        (
            f"sweep {trial['spec']}: {trial['wall_s']:.0f} s, up to {trial['processes_max']} processes; "
            f"{results['burners']} busy-loop processes beside; load average before {results['loadavg_before'][0]:.1f}, "
            f"after {results['loadavg_after'][0]:.1f}; sweep environment {results['trial_env'] or 'as is'}"
        ),
        "",
        "| measured | updates/s | env steps/s |",
        "|---|---:|---:|",
        f"| trial's `perf/…` (median, range, iterations) | {logged('offline')} | {logged('online')} |",
        f"| lean IQL loop, before / after | {loop('offline lean')} | — |",
        f"| o2o's IQL learner, before / after | {loop('offline o2o')} | — |",
        f"| CORL-style online IQL loop, before / after | — | {loop('online plain')} |",
        "",
    ]
    for phase in ("offline", "online"):
        for evaluated in (False, True):
            outside = [i["outside_s"] for i in phases[phase]["iterations"] if i["evaluated"] == evaluated]
            if outside:
                what = "with an evaluation" if evaluated else "without"
                lines.append(
                    f"{phase} iterations {what}: {statistics.median(outside):.2f} s outside the loop (median of {len(outside)})"
                )
    lines += ["", cost_table(trial["cost"], trial["processes"], trial["niceness"])]
    lines.append(f"\nthe sampler itself: {trial['sampler_cpu_s']:.1f} CPU s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=None, help="registered names (default: all)")
    parser.add_argument("--only", choices=["offline", "online", "memory", "finetune"], default=None)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write every measurement, rounds included, here")
    parser.add_argument(
        "--trial-parquet",
        default=None,
        help="also measure a whole IQL trial's peak memory on this canonical Parquet (e.g. hopper-medium's, 1M rows)",
    )
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="the rates the table shows")
    parser.add_argument(
        "--trial",
        default=None,
        metavar="SPEC",
        help="instead: a real `o2o sweep SPEC` (its datasets made first) between IQL loops measured in this process",
    )
    parser.add_argument(
        "--trial-env", nargs="+", default=[], metavar="KEY=VALUE", help="environment of the --trial sweep (e.g. RAY_… settings)"
    )
    parser.add_argument(
        "--trial-load", type=int, default=0, metavar="N", help="N busy-loop processes compete with the --trial measurement"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.trial is not None:
        main_trial(args, parser)
        return
    if args.trial_env or args.trial_load:
        parser.error("--trial-env and --trial-load apply to a --trial sweep only")
    names = registered(args.algorithms)
    results: Results = {"algorithms": names, "torch_threads": torch.get_num_threads()}
    if args.only in (None, "offline"):
        data = synthetic(100_000)
        results["offline"] = {name: bench_offline(name, data, args.updates, args.rounds) for name in names}
    if args.only in (None, "online"):
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        results["online"] = {name: bench_online(name, args.steps, args.rounds) for name in names if name not in ONLINE_SKIPPED}
        for name in sorted(set(names) & set(ONLINE_SKIPPED)):
            print(f"online: {name} not measured: {ONLINE_SKIPPED[name]}")
        ray.shutdown()
    if args.only == "finetune":
        data = synthetic(100_000)
        results["finetune"] = {name: bench_finetune(name, data, args.updates, args.rounds) for name in names}
    if args.only in (None, "memory"):
        results["memory_1m"] = {name: peak_memory_1m(name) for name in names}
        if args.trial_parquet:
            results["memory_trial"] = peak_memory_trial(args.trial_parquet)
    results["peak_rss_mb_driver"] = rss_mb("VmHWM")
    print(table(results, args.clock))
    if "memory_trial" in results:
        print(f"\nwhole IQL trial on {args.trial_parquet}: peak RSS {results['memory_trial']['rss_peak_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main_trial(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`--trial SPEC`: refuse the options it ignores, run `bench_trial`, print `trial_report`."""
    ignored = [f"--{k.replace('_', '-')}" for k in ("algorithms", "only", "trial_parquet") if getattr(args, k) is not None]
    ignored += [f"--{k}" for k in ("rounds", "clock") if getattr(args, k) != parser.get_default(k)]
    if ignored:
        parser.error(f"--trial measures IQL once, on both clocks; {', '.join(ignored)} cannot take effect with it")
    if not Path(args.trial).is_file():
        parser.error(f"--trial {args.trial}: no such spec file")
    if os.environ.get("RAY_ADDRESS"):
        parser.error("--trial measures the processes of a local Ray the sweep starts; unset RAY_ADDRESS")
    env = dict(item.split("=", 1) for item in args.trial_env if "=" in item)
    if len(env) != len(args.trial_env):
        parser.error(f"--trial-env takes KEY=VALUE items, got {args.trial_env}")
    if args.trial_load < 0:
        parser.error(f"--trial-load must be >= 0, got {args.trial_load}")
    results = {"loadavg_before": os.getloadavg(), "trial_env": env}
    results.update(bench_trial(args.trial, args.updates, args.steps, env, args.trial_load))
    print(trial_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
