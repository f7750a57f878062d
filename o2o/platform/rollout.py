"""The online EnvRunner: RLlib's SingleAgentEnvRunner with a lean step loop for O2O.

O2O fine-tuning alternates one environment step with a few gradient updates, so the cost of a
single step is the whole game. RLlib's `sample(num_timesteps=1)` runs its connector pipelines
and builds episode objects for every step (measured here: several milliseconds a step, more than
a gradient update); `collect()` steps the same env with the module's exploration forward and
returns replay rows directly. Evaluation still goes through RLlib's `sample()` on a separate
runner. Observation filters and other connectors are not applied by `collect()`; o2o's methods
use none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner


@dataclass
class Collected:
    """Replay rows from `collect()` and the returns of the episodes that ended meanwhile."""

    rows: dict[str, np.ndarray]
    episode_returns: list[float] = field(default_factory=list)


class O2OEnvRunner(SingleAgentEnvRunner):
    """Adds `collect(n)`: n env steps with the module in exploration mode, as replay rows."""

    def _collect_setup(self) -> None:
        self._env1: gym.Env = self.env.unwrapped.envs[0]
        space = self._env1.action_space
        self._act_low = space.low.astype(np.float32)
        self._act_scale = ((space.high - space.low) / 2.0).astype(np.float32)
        self._obs, _ = self._env1.reset(seed=self.config.seed)
        self._action_space_rng = np.random.default_rng(self.config.seed)
        self._episode_return = 0.0

    def collect(self, num_steps: int, random_actions: bool = False) -> Collected:
        """Step the env `num_steps` times; actions in [−1, 1] are stored, scaled ones executed."""
        if not hasattr(self, "_env1"):
            self._collect_setup()
        obs_dim = self._obs.shape[0]
        act_dim = self._act_low.shape[0]
        out = {
            "obs": np.empty((num_steps, obs_dim), np.float32),
            "actions": np.empty((num_steps, act_dim), np.float32),
            "rewards": np.empty(num_steps, np.float32),
            "new_obs": np.empty((num_steps, obs_dim), np.float32),
            "terminateds": np.empty(num_steps, np.float32),
        }
        returns: list[float] = []
        for i in range(num_steps):
            if random_actions:
                action = self._action_space_rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            else:
                batch = {Columns.OBS: torch.from_numpy(np.asarray(self._obs, np.float32)[None])}
                action = self.module.forward_exploration(batch)[Columns.ACTIONS][0].numpy()
            new_obs, reward, terminated, truncated, _ = self._env1.step(self._act_low + (action + 1.0) * self._act_scale)
            out["obs"][i] = self._obs
            out["actions"][i] = action
            out["rewards"][i] = reward
            out["new_obs"][i] = new_obs
            out["terminateds"][i] = float(terminated)
            self._episode_return += float(reward)
            if terminated or truncated:
                returns.append(self._episode_return)
                self._episode_return = 0.0
                new_obs, _ = self._env1.reset()
            self._obs = new_obs
        return Collected(out, returns)
