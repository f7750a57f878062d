"""How physical generated transitions are: the dynamics error against the simulator.

A generated transition (s, a, r, s′) is checked by putting the simulator in state s, applying a
and comparing its next observation and reward with the generated s′ and r. This needs the
observation to determine the simulator's state, which holds for the MuJoCo locomotion tasks the
factory makes (Gymnasium v5's Hopper, Walker2d, HalfCheetah): the observation is qpos without
the torso's x position, then qvel; the dynamics do not depend on x, so x is set to 0. Hopper's and
Walker2d's observations clip qvel to ±10: a row whose s has a velocity at that bound does not
determine the state, so it is left out of the error and counted as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

VELOCITY_CLIP: dict[str, float | None] = {"Hopper-v5": 10.0, "Walker2d-v5": 10.0, "HalfCheetah-v5": None}
"""Environments whose observation is their MuJoCo state (x position left out) → the bound their
observation clips qvel to (None: not clipped)."""


@dataclass(frozen=True)
class DynamicsError:
    """Mean over transitions of the squared error per observation dimension of s′ and of r,
    against the simulator from the same (s, a); the share of transitions whose s′ is within
    `tolerance` (RMS per dimension) of the simulator's; over the `transitions` whose s determines
    the state, the `excluded` others having a velocity at the observation's clip bound (NaN
    errors where none is left)."""

    next_obs_mse: float
    reward_mse: float
    within_tolerance: float
    tolerance: float
    transitions: int
    excluded: int


def simulate(env_id: str, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's next observation and reward from each (s, a): (N, obs_dim), (N,)."""
    if env_id not in VELOCITY_CLIP:
        raise ValueError(
            f"{env_id}: the dynamics error needs an observation that is the simulator's state ({', '.join(VELOCITY_CLIP)})"
        )
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        sim = env.unwrapped
        nq = sim.model.nq
        if obs.shape[1] != nq - 1 + sim.model.nv:
            raise ValueError(f"{env_id}: observations have {obs.shape[1]} dimensions, its state {nq - 1 + sim.model.nv}")
        next_obs = np.empty_like(obs, dtype=np.float64)
        rewards = np.empty(len(obs))
        for i, (s, a) in enumerate(zip(obs.astype(np.float64), actions.astype(np.float64), strict=True)):
            sim.set_state(np.concatenate([[0.0], s[: nq - 1]]), s[nq - 1 :])
            # The unwrapped step: no time limit or order checks, and a terminal state steps too.
            next_obs[i], rewards[i], *_ = sim.step(a)
        return next_obs, rewards
    finally:
        env.close()


def dynamics_error(
    env_id: str,
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    new_obs: np.ndarray,
    tolerance: float = 0.1,
) -> DynamicsError:
    """The generated (or real) transitions' error against the simulator (`simulate`), over the
    rows whose s determines the simulator's state."""
    obs = np.asarray(obs, np.float64)
    clip = VELOCITY_CLIP.get(env_id)
    kept = np.ones(len(obs), bool)
    if clip is not None:  # qvel is the observation's last nv entries (Hopper and Walker2d: nq = nv)
        velocities = obs[:, obs.shape[1] // 2 :]
        kept = np.all(np.abs(velocities) < clip - 1e-6, axis=1)
    sim_next, sim_rewards = simulate(env_id, obs[kept], np.asarray(actions)[kept])
    per_row = np.mean((np.asarray(new_obs, np.float64)[kept] - sim_next) ** 2, axis=1)
    reward_error = (np.asarray(rewards, np.float64)[kept] - sim_rewards) ** 2
    empty = not kept.any()
    return DynamicsError(
        next_obs_mse=float("nan") if empty else float(per_row.mean()),
        reward_mse=float("nan") if empty else float(reward_error.mean()),
        within_tolerance=float("nan") if empty else float(np.mean(np.sqrt(per_row) <= tolerance)),
        tolerance=tolerance,
        transitions=int(kept.sum()),
        excluded=int((~kept).sum()),
    )


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to rows `a` and `b` (n, D) — FID's formula on
    raw transition columns: ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a^½ Σ_b Σ_a^½)^½). 0 for the same
    statistics; a generator reports it between its rows and the real online and offline rows, in
    its model's normalized space, where every column counts alike."""
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    mean_gap = (a.mean(0) - b.mean(0)).pow(2).sum()
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(mean_gap + cov_a.trace() + cov_b.trace() - 2 * cross)
