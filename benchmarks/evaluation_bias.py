"""The same weights scored by RLlib's first-to-finish evaluation and by o2o's fixed episodes.

Protocol. One set of weights — a trial's checkpoint (`--checkpoint`), or an algorithm built on an
env with no dataset and trained online from scratch for `--online-steps` steps (0: its initial
weights) — is evaluated `--repeats` times by each protocol, `--episodes` episodes each time:

- first to finish (what o2o ran before, RLlib's evaluation): one RLlib `SingleAgentEnvRunner`
  built from the trial's config with `--envs` envs, the module's inference forward
  (`explore=False`), `sample(num_episodes=N)`: the first N episodes to end across the envs, the
  ones still running dropped. RLlib seeds its envs with the config's seed at every `sample`;
  repeat r uses seed `--seed` + r;
- fixed episodes (o2o's evaluation, `o2o.platform.evaluation.evaluate_policy`): the N episodes
  of `evaluation_seeds(--seed + r, N)`, each run to its end, on `--envs` envs side by side.

Both act with the same module weights (the learner's, handed to the local EnvRunner) and map
actions onto the env's bounds alike. It prints each repeat's two mean returns, then the mean and
standard deviation over repeats per protocol; the difference of the means over many repeats
estimates the first-to-finish bias, a single repeat shows what one evaluation reported.

    .venv/bin/python benchmarks/evaluation_bias.py --checkpoint runs/<sweep>/<trial>/checkpoint_000010
    .venv/bin/python benchmarks/evaluation_bias.py --algorithm td3 --env Hopper-v5 --online-steps 5000 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a trial's checkpoint directory (Algorithm.from_checkpoint)")
    source.add_argument("--algorithm", help="a registered algorithm, built with no dataset on --env")
    parser.add_argument("--env", default="Hopper-v5", help="Gymnasium id for --algorithm (default Hopper-v5)")
    parser.add_argument("--online-steps", type=int, default=0, help="online steps from scratch before scoring (--algorithm)")
    parser.add_argument("--episodes", type=int, default=50, help="episodes per evaluation (default 50)")
    parser.add_argument("--envs", type=int, default=5, help="envs stepped side by side (default 5, as before)")
    parser.add_argument("--repeats", type=int, default=1, help="evaluations per protocol, seeds --seed + r")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repeat (default 0)")
    args = parser.parse_args()
    if args.episodes < 1 or args.envs < 1 or args.repeats < 1 or args.seed < 0 or args.online_steps < 0:
        parser.error("--episodes, --envs and --repeats must be >= 1; --seed and --online-steps >= 0")
    return args


def build(args: argparse.Namespace) -> Any:
    """The algorithm whose weights are scored: restored from the checkpoint, or built and trained."""
    from ray.rllib.algorithms.algorithm import Algorithm

    from o2o.algorithms import config_class

    if args.checkpoint:
        return Algorithm.from_checkpoint(args.checkpoint)
    config = (
        config_class(args.algorithm)()
        .environment(args.env)
        .o2o(online_env_steps=args.online_steps, sampling_rule="online")
        .evaluation(evaluation_interval=0)
        .debugging(seed=args.seed)
    )
    algo = config.build_algo()
    while algo.current_phase is not None:
        algo.train()
    return algo


def first_to_finish(algo: Any, episodes: int, envs: int, seed: int) -> float:
    """RLlib's evaluation: the mean return of the first `episodes` episodes to end on `envs` envs."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = algo.config.copy(copy_frozen=False).env_runners(num_envs_per_env_runner=envs).debugging(seed=seed)
    runner = SingleAgentEnvRunner(config=config)
    try:
        runner.module.load_state_dict(algo.env_runner.module.state_dict())
        done = runner.sample(num_episodes=episodes, explore=False)
        return statistics.fmean(float(episode.get_return()) for episode in done)
    finally:
        runner.stop()


def fixed_episodes(algo: Any, episodes: int, envs: int, seed: int) -> float:
    """o2o's evaluation: the mean return of the episodes of `evaluation_seeds(seed, episodes)`."""
    from ray.rllib.env.env_context import EnvContext

    from o2o.platform.evaluation import evaluate_policy, evaluation_seeds

    context = EnvContext(algo.config.env_config, worker_index=0)
    seeds = evaluation_seeds(seed, episodes)
    evaluation = evaluate_policy(algo.env_runner.module, lambda: algo.env_creator(context), seeds, envs)
    return float(evaluation.returns.mean())


def main() -> None:
    args = parse_args()
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # its own, never another's
    algo = build(args)
    try:
        algo._sync_weights()  # the learner's weights, on the module both protocols act with
        old, new = [], []
        print(f"{args.episodes} episodes on {args.envs} envs per evaluation")
        print("repeat  first_to_finish  fixed_episodes")
        for r in range(args.repeats):
            old.append(first_to_finish(algo, args.episodes, args.envs, args.seed + r))
            new.append(fixed_episodes(algo, args.episodes, args.envs, args.seed + r))
            print(f"{r:6d}  {old[-1]:15.1f}  {new[-1]:14.1f}")
        spread = statistics.stdev if args.repeats > 1 else (lambda _: 0.0)
        print(f"mean    {statistics.fmean(old):15.1f}  {statistics.fmean(new):14.1f}")
        print(f"sd      {spread(old):15.1f}  {spread(new):14.1f}")
    finally:
        algo.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
