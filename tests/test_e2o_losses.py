"""E2O's pieces by hand: the weighted min-pair target, the uncertainty weight, the weighted critic
loss, UCB exploration; its learner switching from CQL's update to SAC-N's at the online phase;
its defaults and refusals. No Ray session needed."""

from __future__ import annotations

import itertools
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from o2o.algorithms.e2o import E2OConfig
from o2o.algorithms.e2o.learner import uncertainty_weight, weighted_critic_loss, weighted_min_pair
from o2o.algorithms.e2o.module import E2OModule, ucb_choice
from o2o.algorithms.sac.learner import critic_loss
from o2o.platform.engine import Phase
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions


def test_weighted_min_pair_is_the_mean_over_pairs_of_their_minimum() -> None:
    q = torch.tensor([[3.0, -1.0], [1.0, 0.0], [2.0, 5.0], [0.5, 2.0]])  # N = 4 critics, B = 2
    by_hand = [np.mean([min(q[i, b], q[j, b]) for i, j in itertools.combinations(range(4), 2)]) for b in range(2)]
    torch.testing.assert_close(weighted_min_pair(q), torch.tensor(by_hand, dtype=torch.float32))
    # column 0: pairs' minima 1, 2, .5, 1, .5, .5 → 5.5 / 6
    assert weighted_min_pair(q)[0].item() == pytest.approx(5.5 / 6)
    torch.testing.assert_close(weighted_min_pair(q[:2]), q[:2].min(0).values)  # N = 2: the twin minimum


def test_uncertainty_weight_by_hand() -> None:
    q = torch.tensor([[1.0, 3.0], [2.0, 4.0], [6.0, 8.0]])  # 3 critics, 2 transitions
    batch_means = torch.tensor([2.0, 3.0, 7.0])  # each critic's minibatch-mean target value
    sigma = batch_means.std()  # sample std: sqrt(((2-4)² + (3-4)² + (7-4)²) / 2) = sqrt(7)
    assert sigma.item() == pytest.approx(7**0.5)
    assert uncertainty_weight(q, 10.0, per_sample=False).item() == pytest.approx(1 / (1 + np.exp(10 * 7**0.5)) + 0.5)
    per_sample = uncertainty_weight(q, 0.5, per_sample=True)
    expected = [1 / (1 + np.exp(0.5 * np.std(q[:, b].numpy(), ddof=1))) + 0.5 for b in range(2)]
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-6)
    agreeing = torch.full((10, 4), 2.5)
    assert uncertainty_weight(agreeing, 10.0, per_sample=False).item() == 1.0  # sigmoid(0) + 0.5


def test_weighted_critic_loss_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    target = torch.tensor([2.0, 2.0])
    # critic 0: (1, 0) squared errors, critic 1: (4, 4)
    assert weighted_critic_loss(q, target, torch.tensor(1.0)).item() == pytest.approx(0.5 + 4.0)
    assert weighted_critic_loss(q, target, torch.tensor(1.0)) == critic_loss(q, target)
    assert weighted_critic_loss(q, target, torch.tensor(0.5)).item() == pytest.approx(0.5 * 4.5)
    assert weighted_critic_loss(q, target, torch.tensor([1.0, 0.5])).item() == pytest.approx((1 + 0) / 2 + (4 + 2) / 2)


def test_ucb_picks_the_highest_mean_plus_scaled_spread() -> None:
    q = torch.tensor([[[1.0, 2.0, 0.0]], [[1.0, 2.0, 4.0]]])  # N = 2, B = 1, K = 3
    # means 1, 2, 2; sample stds 0, 0, 2.83: the third wins once λ > 0, the second at λ = 0 by order
    assert ucb_choice(q, 10.0).tolist() == [2]
    assert ucb_choice(q, 0.0).tolist() == [1]


def _module(inference_only: bool) -> E2OModule:
    config = E2OConfig().training(ucb_actions=4)
    return E2OModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (11,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        inference_only=inference_only,
        model_config=config.network_config(),
    )


def test_the_envrunner_explores_with_the_critics_by_ucb() -> None:
    """The EnvRunner's module holds the actor and the critics (not their target); `explore`
    draws K actions per state and executes the one of highest UCB score."""
    runner = _module(inference_only=True)
    assert {k.split(".")[0] for k in runner.state_dict()} == {"actor", "critic", "obs_normalizer"}
    obs = torch.randn(5, 11)
    torch.manual_seed(3)
    chosen = runner.explore(obs)
    torch.manual_seed(3)
    states = obs.repeat_interleave(4, dim=0)
    drawn = runner.actor.sample(states)[0]
    q = runner.critic(states, drawn).view(-1, 5, 4)
    best = ucb_choice(q, 10.0)
    torch.testing.assert_close(chosen, drawn.view(5, 4, 3)[torch.arange(5), best])
    assert chosen.abs().max() <= 1.0


def test_defaults_are_the_authors() -> None:
    config = E2OConfig()
    assert (config.num_critics, config.hidden_sizes, config.critic_hidden_sizes) == (10, [256, 256], [256, 256, 256])
    assert (config.cql_alpha, config.actor_lr, config.learning_starts, config.sampling_rule) == (5.0, 3e-5, 1000, "online")
    online = config.for_phase("online")
    assert (online.conservative, online.target_q, online.uncertainty_weight) == (False, "weighted_min_pair", "batch")
    assert (config.conservative, config.target_q, config.uncertainty_weight) == (True, "min", "none")
    assert (config.ucb_actions, config.ucb_coefficient, config.uncertainty_scale) == (10, 10.0, 10.0)


def test_the_online_phase_runs_sac_n_without_the_conservative_term() -> None:
    config = E2OConfig().o2o(num_critics=4, hidden_sizes=[32, 32], critic_hidden_sizes=[32, 32, 32])
    learner = learner_on_random_transitions(config)
    learner.on_phase_start(Phase("offline", 1, "updates"))
    offline = learner.run_updates(2, Sampling("offline"))
    assert offline["cql_loss"] != 0.0 and "uncertainty_weight" not in offline, "offline: CQL's update"
    learner.on_phase_start(Phase("online", 1, "env_steps"))
    before = [p.detach().clone() for p in learner.net.critic.parameters()]
    online = learner.run_updates(2, Sampling("offline"))
    assert "cql_loss" not in online, "online: SAC-N's update, no conservative term"
    assert 0.5 < online["uncertainty_weight"] <= 1.0 and online["target_spread"] > 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.net.critic.parameters())), "the critics step"


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"target_q": "mean"}, "target_q must be one of min, weighted_min_pair, got 'mean'"),
        ({"uncertainty_weight": "batch"}, "uncertainty_weight 'batch' weighs the online (SAC-N) critic loss"),
        (
            {"phase_overrides": {"online": {"uncertainty_weight": "critic"}}},
            "uncertainty_weight must be one of none, batch, sample in phase_overrides['online'], got 'critic'",
        ),
        ({"target_q": "weighted_min_pair", "max_target_backup": True}, "does not combine with CQL's max_target_backup"),
        ({"num_critics": 1}, "weighted_min_pair in phase_overrides['online'] needs num_critics >= 2, got 1"),
        ({"ucb_actions": 0}, "ucb_actions must be >= 1, got 0"),
    ],
)
def test_settings_that_cannot_take_effect_are_refused(training: dict, message: str) -> None:
    config = E2OConfig().environment("Hopper-v5").o2o(online_env_steps=10).training(**training)
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
