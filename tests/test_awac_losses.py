"""AWAC's losses on hand-computed cases — the TD target, the advantage, the clipped weights, the
weighted likelihood — one update's gradients, the module EnvRunners get, and the config's
defaults and checks. No Ray session needed."""

from __future__ import annotations

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from o2o.algorithms.awac.config import AWACConfig
from o2o.algorithms.awac.learner import (
    AWACLearner,
    actor_loss,
    advantage,
    advantage_weights,
    critic_loss,
    td_target,
)
from o2o.algorithms.awac.module import AWACModule

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_td_target_bootstraps_only_from_non_terminal_states_with_no_entropy_term() -> None:
    rewards = torch.tensor([1.0, 0.5, -1.0])
    terminateds = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([10.0, 10.0, -2.0])
    # 1 + 0.9·10 = 10; the terminal transition keeps its reward only; −1 + 0.9·(−2) = −2.8.
    # Nothing else enters: AWAC's backup has no −α log π(a'|s') (CORL; rlkit with α = 0).
    target = td_target(rewards, terminateds, next_q, gamma=0.9)
    torch.testing.assert_close(target, torch.tensor([10.0, 0.5, -2.8]))


def test_critic_loss_sums_each_critics_mean_squared_error() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (critics, batch)
    target = torch.tensor([1.0, 1.0])
    # Q_1: (0² + 1²)/2 = 0.5; Q_2: (2² + 3²)/2 = 6.5 — summed, as CORL adds the two MSEs.
    assert critic_loss(q, target).item() == pytest.approx(7.0)


def test_advantage_takes_the_min_critic_at_the_data_action_and_at_the_policy_sample() -> None:
    # Each min picks a different critic per state: min over rows is (1, 3) for the dataset
    # actions and (0, 4) for the policy samples, so A = (1 − 0, 3 − 4).
    q_data = torch.tensor([[1.0, 5.0], [2.0, 3.0]])
    q_policy = torch.tensor([[0.0, 4.0], [1.0, 6.0]])
    torch.testing.assert_close(advantage(q_data, q_policy), torch.tensor([1.0, -1.0]))


def test_advantage_weights_are_exp_of_advantage_over_lambda() -> None:
    adv = torch.tensor([0.0, math.log(2.0), -math.log(2.0)])
    # λ = 1: exp(A) = (1, 2, ½). λ = ½ doubles the exponent: (1, 4, ¼) — smaller λ sharpens.
    torch.testing.assert_close(advantage_weights(adv, 1.0, 100.0), torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(advantage_weights(adv, 0.5, 100.0), torch.tensor([1.0, 4.0, 0.25]))


def test_advantage_weights_are_clipped_at_max_weight_even_where_exp_overflows() -> None:
    adv = torch.tensor([math.log(50.0), 10.0, 1000.0])
    weights = advantage_weights(adv, awac_lambda=1.0, max_weight=100.0)
    # 50 stays; exp(10) ≈ 22026 and exp(1000) = inf in float32 are both cut to the clip.
    torch.testing.assert_close(weights, torch.tensor([50.0, 100.0, 100.0]))
    assert torch.isfinite(weights).all(), "an overflowing exp must not reach the loss as inf"


def test_actor_loss_is_the_weighted_negative_log_likelihood_with_constant_weights() -> None:
    log_prob = torch.tensor([-1.0, -2.0], requires_grad=True)
    weights = torch.tensor([2.0, 0.5], requires_grad=True)
    loss = actor_loss(log_prob, weights)
    # −(2·(−1) + 0.5·(−2))/2 = 1.5.
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    # ∂L/∂log π_b = −w_b/B: better actions are pulled up harder.
    torch.testing.assert_close(log_prob.grad, torch.tensor([-1.0, -0.25]))
    assert weights.grad is None, "the weights come from the critics and must not be differentiated"


def _learner(awac_lambda: float) -> SimpleNamespace:
    """Enough of an AWACLearner for `update_step`: a seeded module, its hyperparameters, and an
    Adam whose steps first record the gradients they apply."""
    torch.manual_seed(0)
    config = AWACConfig().training(awac_lambda=awac_lambda)
    net = AWACModule(
        observation_space=OBS_SPACE, action_space=ACT_SPACE, inference_only=False, model_config=config.network_config()
    )
    adam = torch.optim.Adam([*net.critic.parameters(), *net.actor.parameters()], lr=config.lr)
    grads: dict[str, torch.Tensor] = {}

    def step() -> None:
        grads.update({k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})
        adam.step()

    optimizer = SimpleNamespace(zero_grad=adam.zero_grad, step=step)
    learner = SimpleNamespace(net=net, hp=config, optimizer=optimizer, grads=grads, target_min=lambda q: q.min(0).values)
    learner.losses = lambda n, batch: AWACLearner.losses(learner, n, batch)
    learner.seed_losses = lambda losses, batch: losses(net, batch)  # one seed, as `O2OLearner.seed_losses` runs it
    return learner


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "obs": torch.randn(8, 3, generator=generator),
        "actions": torch.rand(8, 2, generator=generator) * 2 - 1,
        "rewards": torch.randn(8, generator=generator),
        "new_obs": torch.randn(8, 3, generator=generator),
        "terminateds": torch.zeros(8),
    }


def test_one_update_moves_critics_by_the_td_error_alone_and_lambda_reaches_only_the_actor() -> None:
    sharp, flat = _learner(awac_lambda=0.05), _learner(awac_lambda=1.0)
    for learner in (sharp, flat):
        target_before = [p.clone() for p in learner.net.critic_target.parameters()]
        torch.manual_seed(2)  # the same policy samples a' and ã in both updates
        metrics = AWACLearner.update_step(learner, _batch())
        assert set(metrics) >= {"critic_loss", "actor_loss", "q_mean", "advantage_mean"}
        assert all(v.dim() == 0 for v in metrics.values()), "metrics are 0-d tensors"
        for before, after, online in zip(
            target_before, learner.net.critic_target.parameters(), learner.net.critic.parameters()
        ):
            # Polyak averaging after the step: θ' ← (1 − τ)θ' + τθ.
            torch.testing.assert_close(after, (1 - learner.hp.tau) * before + learner.hp.tau * online)
    critic = [k for k in sharp.grads if k.startswith("critic.")]
    actor = [k for k in sharp.grads if k.startswith("actor.")]
    assert critic and actor, "one backward pass reaches both networks"
    assert not any(k.startswith("critic_target.") for k in sharp.grads), "targets are never differentiated"
    # Same seed, same draws: only λ differs, and λ enters the actor's loss alone.
    for key in critic:
        torch.testing.assert_close(sharp.grads[key], flat.grads[key], msg=f"λ leaked into {key}")
    assert any(not torch.allclose(sharp.grads[k], flat.grads[k]) for k in actor), "λ changes the actor's step"


def test_envrunner_module_holds_only_the_actor_acting_by_its_mean_or_a_sample() -> None:
    config = AWACConfig()
    module = AWACModule(
        observation_space=OBS_SPACE, action_space=ACT_SPACE, inference_only=True, model_config=config.network_config()
    )
    # the actor, and the state statistics its forwards standardize observations with
    assert {k.split(".")[0] for k in module.state_dict()} == {"actor", "obs_normalizer"}, "EnvRunners build the actor only"
    torch.manual_seed(0)
    batch = {Columns.OBS: torch.randn(5000, 3)}
    greedy = module.forward_inference(batch)[Columns.ACTIONS]
    explored = module.forward_exploration(batch)[Columns.ACTIONS]
    torch.testing.assert_close(greedy, module.actor.mean(batch[Columns.OBS]), msg="evaluation acts by the mean")
    assert explored.abs().max() <= 1.0, "exploration samples stay in the action bounds"
    assert (explored - greedy).std() > 0.1, "exploration samples around the mean (σ = 1 at start)"


def test_defaults_follow_corl_and_online_replays_the_union() -> None:
    config = AWACConfig()
    assert config.awac_lambda == 1.0 and config.max_weight == 100.0
    assert config.sampling_rule == "union", "online AWAC samples dataset and online rows from one buffer"
    assert config.hidden_sizes == [256, 256, 256] and config.num_critics == 2
    assert {"awac_lambda", "max_weight"} <= AWACConfig.hyperparameter_names(), "a spec may set both"


@pytest.mark.parametrize("field", ["awac_lambda", "max_weight"])
def test_non_positive_lambda_or_clip_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match="awac_lambda and max_weight must be > 0"):
        AWACConfig().training(**{field: 0.0}).validate()
    with pytest.raises(ValueError, match=r"in phase_overrides\['online'\]"):
        AWACConfig().o2o(phase_overrides={"online": {field: -1.0}}).validate()
