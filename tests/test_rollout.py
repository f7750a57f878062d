"""Episode boundaries in `O2OEnvRunner.collect`, the rows online fine-tuning learns from: a
termination ends the bootstrap (terminateds 1) at the terminal observation, a time-limit
truncation does not (terminateds 0), the row after a boundary starts from the reset
observation, and each finished episode's return is reported once, also when the episode spans
two `collect` calls. A real EnvRunner outside Ray (as the dataset factory drives it) on a
registered gymnasium env whose dynamics are known exactly."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from o2o.algorithms.sac import SACConfig
from o2o.platform.rollout import O2OEnvRunner

ENV_ID = "o2o-test/EpisodeBoundaries-v0"
TERMINAL_STEP = 3
"""Even-numbered episodes terminate on this step."""
TIME_LIMIT = 5
"""Odd-numbered episodes run into the TimeLimit registered with the env, and are truncated."""


class EpisodeBoundaries(gym.Env):
    """obs = [t, episode]: t steps taken in the episode, episode the resets so far − 1; reward t.
    Episodes 0, 2, … terminate at t = TERMINAL_STEP; episodes 1, 3, … never terminate."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.episode = -1
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        terminated = self.episode % 2 == 0 and self.t == TERMINAL_STEP
        return self._obs(), float(self.t), terminated, False, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode], np.float32)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=EpisodeBoundaries, max_episode_steps=TIME_LIMIT)


@pytest.mark.parametrize("random_actions", [False, True], ids=["policy", "random"])
def test_collect_ends_episodes_at_terminations_and_truncations(random_actions: bool) -> None:
    runner = O2OEnvRunner(config=SACConfig().environment(ENV_ID).debugging(seed=0))
    try:
        first = runner.collect(12, random_actions=random_actions)
        second = runner.collect(4, random_actions=random_actions)
    finally:
        runner.stop()
    rows = {k: np.concatenate([first.rows[k], second.rows[k]]) for k in first.rows}
    # Episode 0 terminates after 3 steps (rows 0–2), episode 1 is truncated after 5 (rows 3–7),
    # episode 2 terminates after 3 (rows 8–10), episode 3 is truncated after 5 (rows 11–15),
    # split 1 + 4 between the two calls.
    t = [0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 4]
    episode = [0] * 3 + [1] * 5 + [2] * 3 + [3] * 5
    np.testing.assert_array_equal(
        rows["obs"], np.stack([t, episode], -1), "each row after a boundary starts from the reset observation"
    )
    np.testing.assert_array_equal(
        rows["new_obs"],
        np.stack([np.add(t, 1), episode], -1),
        "a boundary row keeps its episode's last observation, not the reset one",
    )
    terminal = [2, 10]
    expected_terminateds = np.zeros(16, np.float32)
    expected_terminateds[terminal] = 1.0
    # rows 7 and 15 are time-limit truncations: their new_obs must still be bootstrapped from
    np.testing.assert_array_equal(rows["terminateds"], expected_terminateds)
    np.testing.assert_array_equal(rows["rewards"], np.add(t, 1))
    # 1+2+3 and 1+…+5 per finished episode, once each; episode 3's return sums both calls' rewards
    assert first.episode_returns == [6.0, 15.0, 6.0]
    assert second.episode_returns == [15.0]
