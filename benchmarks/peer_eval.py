"""The evaluation both sides of `peer_learning.py` share, in o2o's venv and in d3rlpy's.

It imports only numpy and Gymnasium, so the d3rlpy worker (another Gymnasium, no o2o) and the
o2o worker score their policies with the same code: exactly N whole episodes, each reset with a
recorded seed, the policy's deterministic action at every step, returns kept in seed order (no
episode dropped or reordered by when it finished).

`simulator_digest` lets the orchestrator check that the two venvs simulate the same thing: the
same fixed action sequence, stepped in each venv, must give the same bytes. `TrainingClock` is
how both sides time their training.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Self

import gymnasium as gym
import numpy as np

EVAL_SEED_BASE = 1_000_000
"""Evaluation episodes reset with seeds from here on, away from the seeds training envs use."""

Policy = Callable[[np.ndarray], np.ndarray]
"""A deterministic policy: one float32 state (obs_dim,) → one action (act_dim,) in [−1, 1]."""


class TrainingClock:
    """Wall seconds and this process's CPU seconds (all its threads) spent inside `with clock:`
    blocks. On a shared machine the CPU seconds move less with the other load than wall time."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Self:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]


def run_record(
    side: str,
    seed: int,
    seeds: list[int],
    offline_returns: list[float],
    final_returns: list[float] | None,
    offline: TrainingClock,
    online: TrainingClock,
    online_transitions: int,
    packages: tuple[str, ...],
) -> dict:
    """One side's result for one training seed, in the shape `peer_learning.py` reads from both
    venvs: the evaluation returns, the training clocks and the versions of `packages`."""
    import torch
    from importlib.metadata import version

    return {
        "side": side,
        "seed": seed,
        "eval_seeds": seeds,
        "offline_returns": offline_returns,
        "final_returns": final_returns,
        "offline_train_s": offline.wall,
        "online_train_s": online.wall,
        "offline_train_cpu_s": offline.cpu,
        "online_train_cpu_s": online.cpu,
        "online_transitions": online_transitions,
        "versions": {p: version(p) for p in packages},
        "torch_threads": torch.get_num_threads(),
    }


def episode_seeds(train_seed: int, episodes: int) -> list[int]:
    """The reset seeds of a training seed's evaluation episodes (the same on both sides)."""
    return [EVAL_SEED_BASE + 1000 * train_seed + i for i in range(episodes)]


def evaluate(env_id: str, policy: Policy, seeds: list[int]) -> list[float]:
    """Undiscounted return of one whole episode per seed, in the order of `seeds`."""
    env = gym.make(env_id)
    returns = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                action = policy(np.asarray(obs, dtype=np.float32))
                obs, reward, terminated, truncated, _ = env.step(np.asarray(action, dtype=np.float32))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def simulator_digest(env_id: str, seed: int = 0, steps: int = 2000) -> str:
    """sha256 of the states, rewards and episode ends of `steps` steps of a fixed action
    sequence (resets seeded in turn); equal digests mean the two venvs simulate alike."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    digest = hashlib.sha256()
    episode = 0
    obs, _ = env.reset(seed=seed)
    try:
        for _ in range(steps):
            action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            digest.update(np.asarray(obs, dtype=np.float64).tobytes())
            digest.update(np.float64(reward).tobytes())
            digest.update(bytes([terminated, truncated]))
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
    finally:
        env.close()
    return digest.hexdigest()[:16]
