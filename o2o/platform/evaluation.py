"""o2o's evaluation: the deterministic policy on exactly N whole episodes with recorded seeds.

Why not RLlib's. With `evaluation_duration_unit="episodes"` and several envs per EnvRunner, RLlib
returns the first N episodes to *finish* and drops those still running when the N-th ends, so
which episodes are scored depends on their lengths. On tasks that terminate (Hopper, Walker2d,
Ant) failed episodes end early and successful ones run to the time limit: the dropped ones are
mostly successes and the score is biased down, the more so the fewer episodes each env runs
(on E envs, up to E − 1 of the N + E − 1 episodes started are dropped).
`benchmarks/evaluation_bias.py` scores the same weights by both protocols.

Here the episodes are fixed before any is run: episode k resets with seed `seeds[k]` and runs to
its end (terminated or truncated). A few envs step side by side (env j runs episodes j, j+E,
j+2E, …), with one batched forward of the policy per step, so the set of episodes scored never
depends on which finished first.

Seeds. Episode k of every evaluation of a trial with seed s resets with
`EVAL_SEED_OFFSET + EVAL_SEEDS_PER_TRIAL · s + k` (s = 0 when the trial has no seed). Those are
never the training env's seed (the EnvRunner resets with s itself), and they are the same at
every evaluation of the trial: common random numbers, so successive scores of a trial, and the
scores of methods run with the same seed, differ by their policies and not by their start
states. The torch RNG is forked and seeded with the first episode's seed for the duration, so a
policy that samples while it evaluates (PEX's ε) scores reproducibly, and training's RNG stream
is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule

from o2o.platform.actions import action_bounds, to_env

EVAL_SEED_OFFSET = 1_000_000
"""Seed of episode 0 of the evaluations of a trial with seed 0."""
EVAL_SEEDS_PER_TRIAL = 10_000
"""Seeds reserved per trial seed: the largest number of episodes one evaluation may run, so the
evaluation seeds of two trial seeds never overlap."""
EVAL_ENVS = 5
"""Environments stepped side by side (as many as RLlib's evaluation runner had; fewer when an
evaluation runs fewer episodes)."""


def evaluation_seeds(trial_seed: int | None, episodes: int) -> list[int]:
    """The reset seeds of episodes 0 … episodes−1 of every evaluation of a trial with
    `trial_seed` (see the module docstring)."""
    if not 1 <= episodes <= EVAL_SEEDS_PER_TRIAL:
        raise ValueError(f"an evaluation runs 1 to {EVAL_SEEDS_PER_TRIAL} episodes, got {episodes}")
    if trial_seed is not None and trial_seed < 0:
        raise ValueError(f"the trial seed must be >= 0 to derive evaluation seeds, got {trial_seed}")
    first = EVAL_SEED_OFFSET + EVAL_SEEDS_PER_TRIAL * (trial_seed or 0)
    return list(range(first, first + episodes))


@dataclass(frozen=True)
class Evaluation:
    """The return and length of each episode, in episode order, and the seed each reset with."""

    seeds: list[int]
    returns: np.ndarray
    lengths: np.ndarray

    def result(self) -> dict[str, Any]:
        """RLlib's evaluation result shape (`env_runners/episode_return_mean`, …), which
        `Algorithm.step()` files under "evaluation", and the first episode's seed (the others
        follow it, see `evaluation_seeds`)."""
        return {
            "env_runners": {
                "episode_return_mean": float(self.returns.mean()),
                "episode_return_min": float(self.returns.min()),
                "episode_return_max": float(self.returns.max()),
                "episode_len_mean": float(self.lengths.mean()),
                "num_episodes": len(self.seeds),
            },
            "seed_first": self.seeds[0],
        }


def evaluate_policy(
    module: RLModule,
    make_env: Callable[[], gym.Env],
    seeds: Sequence[int],
    num_envs: int = EVAL_ENVS,
) -> Evaluation:
    """Run one episode per seed to its end with the module's inference forward (the method's
    deterministic `act`), stepping min(num_envs, len(seeds)) envs from `make_env` side by side.
    Actions in [−1, 1] are mapped onto the env's Box as the online EnvRunner maps them
    (`o2o.platform.actions.to_env`). `module` lives on the CPU."""
    n = len(seeds)
    envs = [make_env() for _ in range(min(num_envs, n))]
    try:
        low, high = action_bounds(envs[0].action_space)
        returns = np.zeros(n)
        lengths = np.zeros(n, np.int64)
        episode = {j: j for j in range(len(envs))}  # env → the episode it is running
        obs = {j: envs[j].reset(seed=seeds[j])[0] for j in episode}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds[0])
            while episode:
                running = sorted(episode)
                batch = torch.from_numpy(np.stack([np.asarray(obs[j], np.float32) for j in running]))
                actions = module.forward_inference({Columns.OBS: batch})[Columns.ACTIONS].numpy()
                for j, action in zip(running, actions):
                    k = episode[j]
                    obs[j], reward, terminated, truncated, _ = envs[j].step(to_env(action, low, high))
                    returns[k] += float(reward)
                    lengths[k] += 1
                    if terminated or truncated:
                        k += len(envs)
                        if k < n:
                            episode[j] = k
                            obs[j] = envs[j].reset(seed=seeds[k])[0]
                        else:
                            del episode[j]
    finally:
        for env in envs:
            env.close()
    return Evaluation(list(seeds), returns, lengths)
