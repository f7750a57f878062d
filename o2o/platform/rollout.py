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

import copy
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from o2o.platform.actions import action_bounds, to_env
from o2o.platform.seeds import PerSeed, stack_seeds


@dataclass
class Collected:
    """Replay rows from `collect()` and the returns of the episodes that ended meanwhile: (n, …)
    rows and a list of returns, or in a K-seed trial (K, n, …) rows and a list per seed."""

    rows: dict[str, np.ndarray]
    episode_returns: list[float] | list[list[float]] = field(default_factory=list)


@dataclass
class _Lane:
    """One seed's environment, its open episode and its random actions' generator."""

    env: gym.Env
    obs: np.ndarray
    action_rng: np.random.Generator
    episode_return: float = 0.0


class O2OEnvRunner(SingleAgentEnvRunner):
    """Adds `collect(n)`: n env steps with the module in exploration mode, as replay rows. In a
    trial of K seeds (`seeds_per_trial`) the module is stacked over the seeds
    (`o2o.platform.seeds`) and the runner steps K environments, env i with seed i's policy,
    reset and randomized from the trial's seed + i."""

    @property
    def num_seeds(self) -> int:
        """The seeds the trial trains side by side: one environment each."""
        return self.config.seeds_per_trial

    def make_module(self) -> None:
        """RLlib's inference module, stacked over the seeds in a K-seed trial."""
        super().make_module()
        if self.num_seeds > 1 and self.module is not None:
            # The learner's weights arrive by sync; the copies only give the stack its shape.
            stack_seeds(self.module, [copy.deepcopy(self.module) for _ in range(self.num_seeds - 1)])
            self._per_seed = PerSeed(self.module)

    def _collect_setup(self) -> None:
        for lane in getattr(self, "_lanes", [])[1:]:  # set up again (a restore): our own envs go
            lane.env.close()
        first: gym.Env = self.env.unwrapped.envs[0]
        self._act_low, self._act_high = action_bounds(first.action_space)
        envs = [first, *(gym.make(first.spec) for _ in range(self.num_seeds - 1))]
        seeds = [None if self.config.seed is None else self.config.seed + i for i in range(len(envs))]
        self._lanes = [_Lane(env, env.reset(seed=seed)[0], np.random.default_rng(seed)) for env, seed in zip(envs, seeds)]

    def _actions(self) -> np.ndarray:
        """The exploring policy's actions in each seed's current state: (K, act)."""
        if len(self._lanes) == 1:
            obs = torch.from_numpy(np.asarray(self._lanes[0].obs, np.float32)[None])
            return self.module.forward_exploration({Columns.OBS: obs})[Columns.ACTIONS].numpy()
        batch = torch.from_numpy(np.stack([lane.obs for lane in self._lanes]).astype(np.float32)[:, None])
        with torch.no_grad():
            actions = self._per_seed(lambda m, o: m.forward_exploration({Columns.OBS: o})[Columns.ACTIONS], batch)
        return actions[:, 0].numpy()

    def collect(self, num_steps: int, random_actions: bool = False) -> Collected:
        """Step the env(s) `num_steps` times; actions in [−1, 1] are stored, scaled ones executed."""
        if not hasattr(self, "_lanes"):
            self._collect_setup()
        k = len(self._lanes)
        obs_dim = self._lanes[0].obs.shape[0]
        act_dim = self._act_low.shape[0]
        out = {
            "obs": np.empty((k, num_steps, obs_dim), np.float32),
            "actions": np.empty((k, num_steps, act_dim), np.float32),
            "rewards": np.empty((k, num_steps), np.float32),
            "new_obs": np.empty((k, num_steps, obs_dim), np.float32),
            "terminateds": np.empty((k, num_steps), np.float32),
        }
        returns: list[list[float]] = [[] for _ in range(k)]
        for i in range(num_steps):
            if random_actions:
                actions = np.stack([lane.action_rng.uniform(-1.0, 1.0, act_dim).astype(np.float32) for lane in self._lanes])
            else:
                actions = self._actions()
            for j, (lane, action) in enumerate(zip(self._lanes, actions)):
                new_obs, reward, terminated, truncated, _ = lane.env.step(to_env(action, self._act_low, self._act_high))
                out["obs"][j, i] = lane.obs
                out["actions"][j, i] = action
                out["rewards"][j, i] = reward
                out["new_obs"][j, i] = new_obs
                out["terminateds"][j, i] = float(terminated)
                lane.episode_return += float(reward)
                if terminated or truncated:
                    returns[j].append(lane.episode_return)
                    lane.episode_return = 0.0
                    new_obs, _ = lane.env.reset()
                lane.obs = new_obs
        if k == 1:
            return Collected({key: v[0] for key, v in out.items()}, returns[0])
        return Collected(out, returns)

    def collect_state(self) -> dict[str, Any] | None:
        """Where collection stands, so a restored trial steps on exactly as this one would: the
        open episode (its observation and return so far and, for a MuJoCo env, the env itself:
        `env_state`) and the generator of the random actions; in a K-seed trial, one such
        snapshot per seed under "lanes". None before the first `collect`."""
        if not hasattr(self, "_lanes"):
            return None
        states = [
            {
                "obs": np.array(lane.obs),
                "episode_return": lane.episode_return,
                "action_rng": lane.action_rng.bit_generator.state,
                "env": env_state(lane.env),
            }
            for lane in self._lanes
        ]
        return states[0] if len(states) == 1 else {"lanes": states}

    def set_collect_state(self, state: dict[str, Any] | None) -> None:
        """Continue collection from `collect_state()`'s snapshot. An env whose state could not be
        taken (not MuJoCo) starts a new episode instead, from a reset seeded by its seed."""
        if state is None:
            return
        self._collect_setup()
        for lane, lane_state in zip(self._lanes, state.get("lanes", [state]), strict=True):
            lane.action_rng.bit_generator.state = lane_state["action_rng"]
            if lane_state["env"] is not None:
                set_env_state(lane.env, lane_state["env"])
                lane.obs = np.array(lane_state["obs"])
                lane.episode_return = lane_state["episode_return"]

    def stop(self) -> None:
        """Close the environments of seeds 1…K − 1 too (RLlib closes seed 0's)."""
        for lane in getattr(self, "_lanes", [])[1:]:
            lane.env.close()
        super().stop()


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
