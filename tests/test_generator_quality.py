"""The dynamics error of generated transitions (`o2o.generators.quality`), on real MuJoCo: real
transitions have none, a known perturbation of s′ has exactly its size, and rows whose state
the observation does not determine (a velocity at Hopper's/Walker2d's clip bound) are left out
and counted. No Ray."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from o2o.generators.quality import dynamics_error


def rollout(env_id: str, steps: int = 300) -> dict[str, np.ndarray]:
    """Transitions of uniform random actions, the env reset at each episode's end."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "new_obs": []}
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape)
        new_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, new_obs), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else new_obs
    env.close()
    return {k: np.asarray(v) for k, v in rows.items()}


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"])
def test_real_transitions_have_no_dynamics_error(env_id: str) -> None:
    data = rollout(env_id)
    error = dynamics_error(env_id, **data)
    assert error.next_obs_mse < 1e-20 and error.reward_mse < 1e-20, f"the simulator reproduces its own transitions: {error}"
    assert error.within_tolerance == 1.0
    velocities = data["obs"][:, data["obs"].shape[1] // 2 :]
    clipped = int(np.any(np.abs(velocities) >= 10.0, axis=1).sum()) if env_id != "HalfCheetah-v5" else 0
    assert (error.excluded, error.transitions) == (clipped, 300 - clipped), "rows at the velocity clip are left out, and only those"
    if env_id == "Walker2d-v5":
        assert clipped > 0, "random actions make Walker2d flail past the clip: the exclusion is exercised"


def test_a_perturbed_next_state_errs_by_the_perturbation() -> None:
    data = rollout("HalfCheetah-v5", steps=100)
    shifted = dynamics_error("HalfCheetah-v5", **{**data, "new_obs": data["new_obs"] + 0.05, "rewards": data["rewards"] - 0.3})
    assert shifted.next_obs_mse == pytest.approx(0.05**2, rel=1e-9) and shifted.reward_mse == pytest.approx(0.09, rel=1e-9)
    assert shifted.within_tolerance == 1.0, "an RMS error of 0.05 is within the 0.1 tolerance"
    assert dynamics_error("HalfCheetah-v5", **data, tolerance=0.01).within_tolerance == 1.0
    assert dynamics_error("HalfCheetah-v5", **{**data, "new_obs": data["new_obs"] + 0.05}, tolerance=0.01).within_tolerance == 0.0


def test_environments_whose_observation_is_not_their_state_are_refused() -> None:
    data = rollout("Hopper-v5", steps=5)
    with pytest.raises(ValueError, match="needs an observation that is the simulator's state"):
        dynamics_error("Ant-v5", **data)
    with pytest.raises(ValueError, match="observations have 11 dimensions, its state 17"):
        dynamics_error("HalfCheetah-v5", **data)
