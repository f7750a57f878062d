"""Throughput of o2o's learners against plain single-file PyTorch loops doing the same updates.

For every registered algorithm (`o2o.algorithms.REGISTRY`), three measurements:

- offline: gradient updates per second of o2o's learner (`run_updates` on its learner-resident
  replay) and of the algorithm's plain loop (`plain_loops.PLAIN_LOOPS`), both on 100k synthetic
  Hopper-sized transitions;
- online: environment steps per second on Hopper-v5 at one update per step, o2o's engine path
  (`Algorithm.train()`: EnvRunner collection, replay append, update, weight sync every step)
  against the plain loop acting with the same actor and doing the same update;
- memory: peak RSS of a fresh process that builds the learner (or the plain loop) on 1M
  transitions and runs a few updates.

Protocol (benchmarks/README.md): one process, one torch thread, the same networks (256×2,
also for AWAC and CQL, whose defaults are 3×256), batch 256, Hopper-v5 dimensions; each side
warmed up, then timed over the same number of updates (or env steps), alternating sides for
`--rounds` rounds; the median is reported. An algorithm without a plain loop is measured on
o2o's side only, so a newly registered one shows up in the table at once.

    python benchmarks/throughput.py                                  # every algorithm, all three
    python benchmarks/throughput.py --algorithms iql td3bc --only offline --json out.json
"""

from __future__ import annotations

import argparse
import json
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

from plain_loops import ACT, BATCH, GAMMA, OBS, PLAIN_LOOPS, PlainOnline, Replay

HERE = Path(__file__).resolve().parent
EPISODE = 1000
"""Length of the synthetic dataset's episodes (Hopper's time limit); Cal-QL's returns-to-go and
IQL's return-range reward scale read them."""
ONLINE_SETTINGS: dict[str, dict[str, Any]] = {
    # SPOT pretrains its VAE on the dataset first; the online benchmark has no dataset.
    "spot": {"vae_pretrain_updates": 0},
}
"""Per-algorithm settings the online benchmark needs, each with its reason."""
Results = dict[str, Any]


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


def timed(fn: Callable[[int], object], n: int) -> float:
    """Rate of `fn(n)`, n units of work, in units per second."""
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def summary(rates: dict[str, list[float]]) -> Results:
    """Median rate per side over the rounds, the o2o / plain ratio where both ran, the rounds."""
    median = {k: statistics.median(v) for k, v in rates.items()}
    ratio = median["o2o"] / median["plain"] if "plain" in median else None
    return {"median": median, "ratio": ratio, "rounds": rates}


def bench_offline(name: str, data: dict[str, np.ndarray], updates: int, rounds: int) -> Results:
    """Offline updates/s of o2o's learner and of the plain loop, alternating, after 50 each."""
    from o2o.platform.replay import Sampling

    learner = o2o_learner(name, data)
    sides: dict[str, Callable[[int], object]] = {"o2o": lambda n: learner.run_updates(n, Sampling("offline"))}
    if name in PLAIN_LOOPS:
        torch.manual_seed(0)
        agent = PLAIN_LOOPS[name](False)
        replay = Replay(len(data["rewards"]), agent.needs_returns_to_go).load(data)
        sides = {"plain": lambda n: [agent.update(replay.sample()) for _ in range(n)], **sides}
    for f in sides.values():
        f(50)
    rates: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for k, f in sides.items():
            rates[k].append(timed(f, updates))
    return summary(rates)


def bench_online(name: str, steps: int, rounds: int) -> Results:
    """Online env steps/s at UTD 1 (Ray already initialised): o2o's `perf/env_steps_per_s` of a
    `train()` iteration of `steps` steps (and the rate of the whole `train()` call) against the
    plain loop's, alternating, both warmed up past the first update."""
    algo = o2o_online_algo(name, steps)
    while algo.env_steps < BATCH + 50:
        algo.train()
    whole_call: list[float] = []

    def o2o_iteration() -> float:
        start = time.perf_counter()
        rate = algo.train()["o2o"]["perf/env_steps_per_s"]
        whole_call.append(steps / (time.perf_counter() - start))
        return rate

    sides: dict[str, Callable[[], float]] = {"o2o": o2o_iteration}
    if name in PLAIN_LOOPS:
        plain = PlainOnline(PLAIN_LOOPS[name](True))
        for _ in range(BATCH + 50):
            plain.step()
        sides = {"plain": lambda: timed(lambda n: [plain.step() for _ in range(n)], steps), **sides}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    try:
        for _ in range(rounds):
            for k, f in sides.items():
                rates[k].append(f())
    finally:
        algo.stop()
    # RLlib's per-`train()` bookkeeping lies outside `perf/env_steps_per_s`; with a sweep's
    # 5000-step iterations it is spread over 25× more steps than here.
    return {**summary(rates), "o2o_whole_train_call_median": statistics.median(whole_call)}


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


# --- report --------------------------------------------------------------------------------------


def table(results: Results) -> str:
    """One Markdown row per algorithm: updates/s and env steps/s of each side with their ratio,
    peak RSS of each side on 1M transitions; "—" where a side or a measurement did not run."""

    def rate(section: str, name: str) -> list[str]:
        r = results.get(section, {}).get(name)
        if r is None:
            return ["—"] * 3
        o2o, plain = r["median"]["o2o"], r["median"].get("plain")
        ratio = r["ratio"]
        return [f"{o2o:.0f}", "—" if plain is None else f"{plain:.0f}", "—" if ratio is None else f"{ratio:.2f}×"]

    def rss(name: str) -> list[str]:
        m = results.get("memory_1m", {}).get(name, {})
        return [f"{m[s]['rss_peak_mb']:.0f}" if s in m else "—" for s in ("o2o", "plain")]

    lines = [
        "| algorithm | updates/s o2o | plain | ratio | env steps/s o2o | plain | ratio | peak RSS MB o2o | plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in results["algorithms"]:
        lines.append("| " + " | ".join([name, *rate("offline", name), *rate("online", name), *rss(name)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=None, help="registered names (default: all)")
    parser.add_argument("--only", choices=["offline", "online", "memory"], default=None)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write every measurement, rounds included, here")
    parser.add_argument(
        "--trial-parquet",
        default=None,
        help="also measure a whole IQL trial's peak memory on this canonical Parquet (e.g. hopper-medium's, 1M rows)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = registered(args.algorithms)
    results: Results = {"algorithms": names, "torch_threads": torch.get_num_threads()}
    if args.only in (None, "offline"):
        data = synthetic(100_000)
        results["offline"] = {name: bench_offline(name, data, args.updates, args.rounds) for name in names}
    if args.only in (None, "online"):
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        results["online"] = {name: bench_online(name, args.steps, args.rounds) for name in names}
        ray.shutdown()
    if args.only in (None, "memory"):
        results["memory_1m"] = {name: peak_memory_1m(name) for name in names}
        if args.trial_parquet:
            results["memory_trial"] = peak_memory_trial(args.trial_parquet)
    results["peak_rss_mb_driver"] = rss_mb("VmHWM")
    print(table(results))
    if "memory_trial" in results:
        print(f"\nwhole IQL trial on {args.trial_parquet}: peak RSS {results['memory_trial']['rss_peak_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
