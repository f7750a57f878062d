"""K seeds in one trial (`seeds_per_trial`) against K one-seed trials, on o2o's own learner.

`seeds.py` measured what batching seeds can buy with updates written lean; this measures what
the platform's K-seed trial delivers: the method's learner (`O2OLearner`, its module stacked
over the seeds, its losses run per seed by `vmap`) and the online EnvRunner (`O2OEnvRunner`,
K environments), on a real dataset and a real MuJoCo env, run as a trial's iterations run them:

- offline: `run_updates(U)` on the dataset (`Sampling("offline")`);
- online: in the method's online phase (its overrides and sampling rule: OPT's Q_on beside the
  base's critics on balanced replay, FamO2O's β from its balance model), per env step
  `collect(1)` (one env step per seed), `add_online`, one update, the learner → EnvRunner weight
  copy (the engine's `_sync_weights`).

Configurations: "trial" is one process training K seeds; "separate" is K processes of one seed
each, started together behind a barrier after warm-up, each holding its own copy of the dataset
— K one-seed trials on this machine. Reported per configuration: updates per second per seed
(offline), env steps per second per seed (online, with their updates), and the peak RSS summed
over the configuration's processes. One torch thread per process unless `--threads`.

    python benchmarks/seeds_trial.py --algorithms iql td3bc --ks 1 2 4 8 --json seeds_trial.json

Ray is not started: the learner and the EnvRunner are built from the config as RLlib builds them
in a trial's process; `o2o sweep` with `seeds_per_trial` runs the same code inside Tune
(benchmarks/README.md compares a sweep's logged rates with these).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from typing import Any

import gymnasium as gym
import torch

from seeds import run_together

ENV = "Hopper-v5"


def build(algorithm: str, dataset: str, k: int, seed: int = 0) -> tuple[Any, Any]:
    """The learner (its store holding `dataset`) and the online EnvRunner of a K-seed trial."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    from o2o.algorithms import config_class
    from o2o.platform.data import read_parquet
    from o2o.platform.factory import make_dataset
    from o2o.platform.rollout import O2OEnvRunner

    data = read_parquet(make_dataset(dataset).parquet_path)
    config = config_class(algorithm)().environment(ENV).debugging(seed=seed).o2o(seeds_per_trial=k)
    learner = config.build_learner(env=gym.make(ENV))
    learner.build_replay(data, data.obs.shape[1], data.actions.shape[1])
    runner = O2OEnvRunner(config=config)
    source = learner.module[DEFAULT_MODULE_ID].state_dict(keep_vars=True)
    target = runner.module.state_dict(keep_vars=True)
    runner.weight_pairs = ([target[n].data for n in target], [source[n].data for n in target])
    return learner, runner


def online_steps(learner: Any, runner: Any, steps: int) -> None:
    """`steps` online env steps per seed, each followed by one update on the phase's rule and
    the weight copy."""
    from o2o.platform.replay import Sampling

    sampling = Sampling(learner.hp.sampling_rule, learner.hp.offline_fraction)
    for _ in range(steps):
        learner.add_online(runner.collect(1).rows)
        learner.run_updates(1, sampling)
        with torch.no_grad():
            torch._foreach_copy_(*runner.weight_pairs)


def _worker(algorithm: str, dataset: str, k: int, seed: int, updates: int, steps: int, threads: int,
            barrier: Any, results: Any) -> None:
    """One process: build, warm up, wait for its siblings, time offline then online, report."""
    from o2o.platform.engine import Phase
    from o2o.platform.replay import Sampling

    try:
        torch.set_num_threads(threads)
        learner, runner = build(algorithm, dataset, k, seed)
        learner.on_phase_start(Phase("offline", updates, "updates"))
        learner.run_updates(20, Sampling("offline"))
        barrier.wait()
        start = time.perf_counter()
        learner.run_updates(updates, Sampling("offline"))
        offline_s = time.perf_counter() - start
        learner.on_phase_start(Phase("online", steps, "env_steps"))
        online_steps(learner, runner, 20)
        start = time.perf_counter()
        online_steps(learner, runner, steps)
        online_s = time.perf_counter() - start
        results.put({
            "updates_per_s_per_seed": updates / offline_s,
            "env_steps_per_s_per_seed": steps / online_s,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        })
    except Exception as exc:  # noqa: BLE001 - the configuration's row records it
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def measure(algorithm: str, dataset: str, side: str, k: int, updates: int, steps: int, threads: int) -> dict[str, Any]:
    """One configuration in fresh processes: its per-seed rates (the mean over its processes)
    and its processes' summed peak RSS."""
    copies, seeds_each = (k, 1) if side == "separate" else (1, k)
    out = run_together(_worker, [
        (algorithm, dataset, seeds_each, i, updates, steps, 1 if side == "separate" else threads) for i in range(copies)
    ])
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        return {"error": errors[0]}
    return {
        "updates_per_s_per_seed": statistics.mean(o["updates_per_s_per_seed"] for o in out),
        "env_steps_per_s_per_seed": statistics.mean(o["env_steps_per_s_per_seed"] for o in out),
        "peak_rss_bytes": sum(o["peak_rss_bytes"] for o in out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["iql", "td3bc"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--dataset", default="hopper-medium-replay")
    parser.add_argument("--updates", type=int, default=200, help="timed offline updates per seed")
    parser.add_argument("--steps", type=int, default=200, help="timed online env steps per seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a one-process K-seed trial")
    parser.add_argument("--separate-max", type=int, default=8, help="largest K also run as K one-seed processes")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"args": vars(args), "rows": []}
    print("| algorithm | K | side | updates/s per seed | env steps/s per seed | peak RSS (MiB) |")
    print("|---|---:|---|---:|---:|---:|")
    for algorithm in args.algorithms:
        for k in args.ks:
            sides = ["trial"] + (["separate"] if 1 < k <= args.separate_max else [])
            for side in sides:
                row = {"algorithm": algorithm, "k": k, "side": side,
                       **measure(algorithm, args.dataset, side, k, args.updates, args.steps, args.threads)}
                results["rows"].append(row)
                if "error" in row:
                    print(f"| {algorithm} | {k} | {side} | error: {row['error']} | | |", flush=True)
                    continue
                print(f"| {algorithm} | {k} | {side} | {row['updates_per_s_per_seed']:.0f} | "
                      f"{row['env_steps_per_s_per_seed']:.0f} | {row['peak_rss_bytes'] / 2**20:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
