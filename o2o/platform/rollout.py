"""The online EnvRunner: RLlib's SingleAgentEnvRunner with a lean step loop for O2O.

O2O fine-tuning alternates one environment step with a few gradient updates, so the cost of a
single step is the whole game. RLlib's `sample(num_timesteps=1)` runs its connector pipelines
and builds episode objects for every step (measured here: several milliseconds a step, more than
a gradient update); `collect()` steps the same env with the module's exploration forward and
returns replay rows directly. Evaluation (`o2o.platform.evaluation`) acts with this runner's
module on envs of its own. Observation filters and other connectors are applied by neither;
o2o's methods use none. A checkpoint holds the open episode (`collect_state`), so a restored
trial takes the same steps as the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from o2o.platform.actions import action_bounds, to_env


@dataclass
class Collected:
    """Replay rows from `collect()` and the returns of the episodes that ended meanwhile."""

    rows: dict[str, np.ndarray]
    episode_returns: list[float] = field(default_factory=list)


class O2OEnvRunner(SingleAgentEnvRunner):
    """Adds `collect(n)`: n env steps with the module in exploration mode, as replay rows."""

    def _collect_setup(self) -> None:
        self._env1: gym.Env = self.env.unwrapped.envs[0]
        self._act_low, self._act_high = action_bounds(self._env1.action_space)
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
            new_obs, reward, terminated, truncated, _ = self._env1.step(to_env(action, self._act_low, self._act_high))
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

    def collect_state(self) -> dict[str, Any] | None:
        """Where collection stands, so a restored trial steps on exactly as this one would: the
        open episode (its observation and return so far and, for a MuJoCo env, the env itself:
        `env_state`) and the generator of the random actions. None before the first `collect`."""
        if not hasattr(self, "_env1"):
            return None
        return {
            "obs": np.array(self._obs),
            "episode_return": self._episode_return,
            "action_rng": self._action_space_rng.bit_generator.state,
            "env": env_state(self._env1),
        }

    def set_collect_state(self, state: dict[str, Any] | None) -> None:
        """Continue collection from `collect_state()`'s snapshot. An env whose state could not be
        taken (not MuJoCo) starts a new episode instead, from a reset seeded by the trial's seed."""
        if state is None:
            return
        self._collect_setup()
        self._action_space_rng.bit_generator.state = state["action_rng"]
        if state["env"] is not None:
            set_env_state(self._env1, state["env"])
            self._obs = np.array(state["obs"])
            self._episode_return = state["episode_return"]


def env_state(env: gym.Env) -> dict[str, Any] | None:
    """A Gymnasium MuJoCo env mid-episode: MuJoCo's integration state (positions, velocities,
    actuator state, time and the solver's warm start, from which stepping repeats the original
    bit for bit), the env's random generator, and each wrapper's step counter (the time limit's).
    None for an env that is not MuJoCo: o2o cannot take its state."""
    import mujoco

    base = env.unwrapped
    if not isinstance(getattr(base, "data", None), mujoco.MjData) or not hasattr(base, "model"):
        return None
    kind = mujoco.mjtState.mjSTATE_INTEGRATION
    simulator = np.empty(mujoco.mj_stateSize(base.model, kind))
    mujoco.mj_getState(base.model, base.data, simulator, kind)
    return {
        "mujoco": simulator,
        "np_random": base.np_random.bit_generator.state,
        "elapsed_steps": [getattr(w, "_elapsed_steps", None) for w in _wrappers(env)],
    }


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put `env` (made from the same id) into the state `env_state` took."""
    import mujoco

    base = env.unwrapped
    mujoco.mj_setState(base.model, base.data, np.asarray(state["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
    base.np_random.bit_generator.state = state["np_random"]
    for wrapper, steps in zip(_wrappers(env), state["elapsed_steps"], strict=True):
        if steps is not None:
            wrapper._elapsed_steps = steps


def _wrappers(env: gym.Env) -> list[gym.Env]:
    """`env` and every wrapper inside it, outermost first, down to the unwrapped env."""
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain
