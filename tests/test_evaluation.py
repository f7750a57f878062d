"""o2o's evaluation on real algorithms and real envs: exactly N whole episodes, none chosen by
finishing order, on recorded seeds that are not the training env's, and reproducible.

`FallOrSurvive` is Hopper's fall-or-survive in miniature: half its episodes end at their first
step, half run to the time limit, so whichever episodes a protocol scores shows in the score."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from o2o.algorithms.iql import IQLConfig
from o2o.algorithms.pex import PEXConfig
from o2o.platform.evaluation import EVAL_SEED_OFFSET, EVAL_SEEDS_PER_TRIAL, evaluation_seeds

SURVIVAL_STEPS = 1000
FALL_OR_SURVIVE = "o2o-test/FallOrSurvive-v0"
TRUE_MEAN_RETURN = (1 + SURVIVAL_STEPS) / 2
"""Reward 1 per step; an episode lasts 1 step or SURVIVAL_STEPS steps with equal probability."""


class FallOrSurvive(gym.Env):
    """Each reset draws from the env's RNG (fixed by a seeded reset) whether the episode fails at
    its first step (terminated) or survives to the time limit (truncated), with probability 1/2.
    Its action box is [0, 3], and an action outside it is refused: a policy's [−1, 1] action
    executed without the map onto the box fails loudly."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(0.0, 3.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._falls = bool(self.np_random.random() < 0.5)
        self._t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(np.asarray(action, np.float32)):
            raise ValueError(f"action {action} outside the box {self.action_space}")
        self._t += 1
        return self._obs(), 1.0, self._falls, False, {}

    def _obs(self) -> np.ndarray:
        return np.full(3, self._t / SURVIVAL_STEPS, np.float32)


gym.register(FALL_OR_SURVIVE, entry_point=FallOrSurvive, max_episode_steps=SURVIVAL_STEPS)


def episode_return(seed: int) -> float:
    """The return of the episode a reset with `seed` starts, run alone to its end."""
    env = gym.make(FALL_OR_SURVIVE)
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        total += float(reward)
        done = terminated or truncated
    return total


def online_only(config: Any, env: str, episodes: int, **o2o: Any) -> Any:
    """`config` on `env` with no dataset: a short online phase on its own replay, small networks."""
    settings = {"online_env_steps": 20, "env_steps_per_iteration": 20, "sampling_rule": "online", "hidden_sizes": [32, 32]}
    settings.update(o2o)
    return (
        config.environment(env)
        .o2o(**settings)
        .training(train_batch_size_per_learner=16)
        .evaluation(evaluation_interval=100, evaluation_duration=episodes)
        .debugging(seed=3)
    )


@pytest.mark.usefixtures("ray_session")
def test_every_episode_is_scored_whole_not_the_first_to_finish() -> None:
    episodes = 50
    algo = online_only(IQLConfig(), FALL_OR_SURVIVE, episodes).build_algo()
    try:
        evaluation = algo.evaluate()["env_runners"]
        seeds = evaluation_seeds(3, episodes)
        # exactly the N episodes of the trial's seeds, each run to its end: the mean of the same
        # episodes run one by one (RLlib's protocol scored the first 50 to finish: 600.4 here)
        assert evaluation["num_episodes"] == episodes
        assert evaluation["episode_return_mean"] == pytest.approx(np.mean([episode_return(s) for s in seeds]))
        # a random sample of the task's episodes: within 3 standard errors of the true mean
        standard_error = (SURVIVAL_STEPS - 1) / 2 / np.sqrt(episodes)
        assert abs(evaluation["episode_return_mean"] - TRUE_MEAN_RETURN) < 3 * standard_error, evaluation
        # both outcomes were scored, whole
        assert evaluation["episode_return_min"] == 1.0 and evaluation["episode_return_max"] == SURVIVAL_STEPS
        # RLlib builds no evaluation EnvRunner whose envs would sit idle
        assert algo.eval_env_runner_group is None
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_evaluation_seeds_are_not_the_training_seed_and_are_recorded() -> None:
    episodes = 7
    algo = online_only(IQLConfig(), FALL_OR_SURVIVE, episodes).build_algo()
    try:
        result = algo.train()  # the online phase's one iteration, evaluated at its end
        assert result["done"]
        metrics = result["o2o"]
        first = EVAL_SEED_OFFSET + EVAL_SEEDS_PER_TRIAL * 3
        # what reproduces the score travels with it (MLflow logs every `result["o2o"]` metric):
        # the number of episodes and the first seed, episode k resetting with first + k
        assert metrics["eval/episodes"] == episodes
        assert metrics["eval/seed_first"] == first
        assert evaluation_seeds(3, episodes) == list(range(first, first + episodes))
        assert metrics["eval/return_mean"] == pytest.approx(np.mean([episode_return(first + k) for k in range(episodes)]))
        # never the seed the training env resets with, nor another trial seed's evaluation seeds
        assert algo.config.seed not in evaluation_seeds(3, EVAL_SEEDS_PER_TRIAL)
        assert not set(evaluation_seeds(3, EVAL_SEEDS_PER_TRIAL)) & set(evaluation_seeds(4, EVAL_SEEDS_PER_TRIAL))
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_two_evaluations_of_the_same_weights_agree_and_leave_training_rng_alone() -> None:
    # PEX's online policy samples while it evaluates (ε = 0.1), on Hopper's random start states
    algo = online_only(PEXConfig(), "Hopper-v5", 5, online_env_steps=10, env_steps_per_iteration=10).build_algo()
    try:
        algo.train()
        assert bool(algo.env_runner.module.expanded), "the composed policy (which samples) acts"
        rng = torch.get_rng_state()
        first, second = algo.evaluate()["env_runners"], algo.evaluate()["env_runners"]
        # the same episodes (seeds) and the same draws of the policy: the same score, exactly
        assert first["episode_return_mean"] == second["episode_return_mean"]
        assert first["episode_len_mean"] == second["episode_len_mean"] < 1000, "an untrained hopper falls"
        # and training's torch random stream is where it was
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        algo.stop()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"evaluation_duration": 10_001}, "evaluation_duration is the number of evaluation episodes, at most 10000; got 10001"),
        ({"evaluation_duration_unit": "timesteps"}, "evaluation_duration_unit: o2o's evaluation runs whole episodes"),
        ({"evaluation_num_env_runners": 2}, "evaluation_num_env_runners: o2o's evaluation"),
        ({"evaluation_config": {"explore": True}}, "evaluation_config: o2o's evaluation"),
    ],
)
def test_evaluation_settings_that_cannot_take_effect_are_refused(setting: dict, message: str) -> None:
    config = IQLConfig().environment("Hopper-v5").evaluation(**setting)
    with pytest.raises(ValueError, match=message):
        config.validate()


@pytest.mark.parametrize(("section", "setting"), [("learners", "num_learners"), ("env_runners", "num_env_runners")])
def test_a_remote_learner_or_env_runner_is_refused(section: str, setting: str) -> None:
    """Evaluation acts with the local EnvRunner's module; a remote learner or EnvRunner is refused
    before any is started (a remote learner failed in setup, remote EnvRunners sat idle)."""
    config = IQLConfig().environment("Hopper-v5")
    getattr(config, section)(**{setting: 1})
    with pytest.raises(ValueError, match=r"num_learners \(\d\) and num_env_runners \(\d\) must be 0"):
        config.validate()


def test_a_negative_seed_is_refused_since_evaluation_seeds_derive_from_it() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        IQLConfig().environment("Hopper-v5").debugging(seed=-1).validate()
