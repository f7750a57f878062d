"""SAC's losses on numbers computed by hand (the soft TD target, the twin-critic loss, the actor
loss, the temperature loss and the direction it moves α), and that the actor and temperature
losses send no gradient into parameters another loss owns, which their one shared backward pass
relies on. No Ray session needed."""

from __future__ import annotations

import math

import pytest
import torch

from o2o.algorithms.sac import SACConfig
from o2o.algorithms.sac.learner import actor_loss, critic_loss, soft_td_target, temperature_loss

from helpers import learner_on_random_transitions


def test_soft_td_target_subtracts_the_entropy_bonus_and_stops_at_terminals() -> None:
    rewards = torch.tensor([1.0, 0.5, 0.0])
    terminateds = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([10.0, 10.0, 10.0])
    next_logp = torch.tensor([-1.0, -1.0, 2.0])
    target = soft_td_target(rewards, terminateds, next_q, next_logp, torch.tensor(0.5), gamma=0.9)
    # 1 + 0.9·(10 − 0.5·(−1)) = 1 + 0.9·10.5 = 10.45; terminal: the reward 0.5 alone;
    # 0 + 0.9·(10 − 0.5·2) = 0.9·9 = 8.1 (a likelier next action earns a smaller bonus).
    torch.testing.assert_close(target, torch.tensor([10.45, 0.5, 8.1]))


def test_critic_loss_sums_each_critics_mean_squared_error() -> None:
    q = torch.tensor([[0.0, 2.0], [1.0, -1.0]])  # (critics, batch)
    target = torch.tensor([1.0, 0.0])
    # Q_1: errors −1, 2 → (1 + 4)/2 = 2.5; Q_2: errors 0, −1 → (0 + 1)/2 = 0.5; summed: 3.
    assert critic_loss(q, target).item() == pytest.approx(3.0)


def test_actor_loss_is_alpha_log_pi_minus_q_averaged() -> None:
    logp = torch.tensor([-1.0, 2.0], requires_grad=True)
    q_pi = torch.tensor([3.0, -1.0], requires_grad=True)
    loss = actor_loss(logp, q_pi, torch.tensor(0.5))
    # mean(0.5·(−1) − 3, 0.5·2 − (−1)) = mean(−3.5, 2) = −0.75
    assert loss.item() == pytest.approx(-0.75)
    loss.backward()
    # ∂L/∂log π_i = α/N = 0.25 (less likely actions preferred); ∂L/∂Q_i = −1/N = −0.5
    torch.testing.assert_close(logp.grad, torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(q_pi.grad, torch.tensor([-0.5, -0.5]))


@pytest.mark.parametrize(
    ("logp", "target_entropy", "expected_grad"),
    [
        # log π + H̄ = (−4, −1): the policy's entropy −E[log π] = −0.5 exceeds H̄ = −3, so
        # ∂L/∂log α = −mean(−4, −1) = 2.5 > 0 and gradient descent lowers α.
        ([-1.0, 2.0], -3.0, 2.5),
        # log π + H̄ = (1, 3): entropy −3 is below H̄ = −1, ∂L/∂log α = −2 < 0 raises α.
        ([2.0, 4.0], -1.0, -2.0),
    ],
    ids=["entropy-above-target", "entropy-below-target"],
)
def test_temperature_loss_moves_alpha_toward_the_target_entropy(
    logp: list[float], target_entropy: float, expected_grad: float
) -> None:
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = temperature_loss(log_alpha, torch.tensor(logp), target_entropy)
    # −E[log α·(log π + H̄)] = −log 0.5 · mean(log π + H̄) = log 0.5 · (∂L/∂log α)
    assert loss.item() == pytest.approx(math.log(0.5) * expected_grad)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(expected_grad)


def test_actor_and_temperature_losses_touch_only_their_own_parameters() -> None:
    learner = learner_on_random_transitions(SACConfig())
    net = learner.net
    obs = torch.randn(16, net.observation_space.shape[0])
    pi_loss, alpha_loss, _ = learner.policy_losses(obs, net.log_alpha.exp().detach())
    actor, critic = list(net.actor.parameters()), list(net.critic.parameters())

    def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))

    assert all(g is not None for g in grads(pi_loss, actor)), "the actor loss trains the actor"
    assert all(g is None for g in grads(pi_loss, critic)), "…and reads Q with the critics' parameters fixed"
    assert grads(alpha_loss, [net.log_alpha])[0] is not None, "the temperature loss trains α"
    assert all(g is None for g in grads(alpha_loss, [*actor, *critic])), "…and reads log π as a constant"
