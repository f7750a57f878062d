"""Actions as o2o's networks see them: in [−1, 1] on every dimension, whatever the env's box.

Every o2o policy ends in tanh or is clipped to [−1, 1], CQL draws its uniform proposals there,
and TD3's noise clips there. So the replay holds actions in [−1, 1]: a dataset's actions are
mapped into it from the environment's bounds when it is copied into the store, and the
EnvRunners and the evaluation map the policy's actions back out before stepping the
environment. On the MuJoCo locomotion tasks the bounds are already [−1, 1] and both maps are
the identity.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def action_bounds(space: gym.spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """The box's (low, high) as float32 vectors; ValueError if a bound is infinite, since a
    policy in [−1, 1] cannot be mapped onto an unbounded action space."""
    low = np.asarray(space.low, np.float64).reshape(-1)
    high = np.asarray(space.high, np.float64).reshape(-1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(
            f"the action space {space} has infinite bounds; o2o's policies act in [-1, 1] scaled to "
            "the action bounds, so the environment needs finite ones"
        )
    return low.astype(np.float32), high.astype(np.float32)


def to_env(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[−1, 1] → [low, high]: low + (a + 1)·(high − low)/2."""
    return low + (actions + 1.0) * ((high - low) / 2.0)


def from_env(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[low, high] → [−1, 1], the inverse of `to_env`; the identity where the bounds are ±1."""
    if np.array_equal(low, -np.ones_like(low)) and np.array_equal(high, np.ones_like(high)):
        return actions
    return (2.0 * (actions - low) / (high - low) - 1.0).astype(actions.dtype)
