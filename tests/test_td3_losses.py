"""TD3's and TD3+BC's losses on hand-computed cases, the clip of the target smoothing noise,
the delayed actor and target updates of the real learner, and what the TD3 module gives
EnvRunners. No Ray session needed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from torch import nn

from o2o.algorithms.td3.config import TD3Config
from o2o.algorithms.td3.learner import (
    clipped_double_q_target,
    critic_loss,
    deterministic_policy_loss,
)
from o2o.algorithms.td3.module import TD3Module
from o2o.algorithms.td3bc.config import TD3BCConfig
from o2o.algorithms.td3bc.learner import behavior_cloning_loss, q_normalizer, td3_bc_actor_loss
from o2o.platform.engine import Phase
from o2o.platform.networks import DeterministicActor
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions


def test_clipped_double_q_target_bootstraps_only_from_non_terminal_states() -> None:
    rewards = torch.tensor([1.0, 0.5])
    terminateds = torch.tensor([0.0, 1.0])
    next_q_min = torch.tensor([10.0, 10.0])
    target = clipped_double_q_target(rewards, terminateds, next_q_min, gamma=0.9)
    # 1 + 0.9·10 = 10; the terminal transition keeps its reward only.
    torch.testing.assert_close(target, torch.tensor([10.0, 0.5]))


def test_critic_loss_sums_each_critics_mean_squared_error() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (critics, batch)
    target = torch.tensor([1.0, 1.0])
    # Q_1: (0² + 1²)/2 = 0.5; Q_2: (2² + 3²)/2 = 6.5 — summed as the authors' two mse_loss terms.
    assert critic_loss(q, target).item() == pytest.approx(7.0)


def test_deterministic_policy_loss_is_minus_mean_q() -> None:
    assert deterministic_policy_loss(torch.tensor([1.0, -3.0])).item() == pytest.approx(1.0)


def test_q_normalizer_is_alpha_over_mean_abs_q_and_carries_no_gradient() -> None:
    q_pi = torch.tensor([1.0, -3.0], requires_grad=True)
    scale = q_normalizer(q_pi, alpha=2.5)
    assert scale.item() == pytest.approx(2.5 / 2.0)
    assert not scale.requires_grad, "λ rescales the Q term; it must not be differentiated"


def test_behavior_cloning_loss_averages_over_batch_and_action_dims() -> None:
    pi = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    actions = torch.zeros(2, 2)
    # (0.25 + 0 + 0 + 1) / 4, like F.mse_loss(pi, a) in sfujim/TD3_BC.
    assert behavior_cloning_loss(pi, actions).item() == pytest.approx(0.3125)


def test_td3_bc_actor_loss_on_two_numbers() -> None:
    q_pi = torch.tensor([1.0, -3.0], requires_grad=True)
    pi = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    scale = q_normalizer(q_pi, alpha=2.5)  # 1.25
    bc = behavior_cloning_loss(pi, torch.zeros(2, 2))  # 0.3125
    loss = td3_bc_actor_loss(q_pi, scale, bc, bc_weight=1.0)
    # −1.25 · mean(1, −3) + 0.3125 = 1.25 + 0.3125.
    assert loss.item() == pytest.approx(1.5625)
    loss.backward()
    # With λ detached, ∂L/∂Q_i = −λ/N; differentiating through mean|Q| would change it.
    torch.testing.assert_close(q_pi.grad, torch.tensor([-0.625, -0.625]))
    without_bc = td3_bc_actor_loss(q_pi, scale, bc, bc_weight=0.0)
    assert without_bc.item() == pytest.approx(1.25), "bc_weight 0 leaves TD3's loss with Q scaled by λ"


def test_target_smoothing_noise_is_clipped() -> None:
    torch.manual_seed(0)
    actor = DeterministicActor(3, 4, [8])
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.zero_()  # π'(s) = 0, so the smoothed action is the noise itself
    clip = TD3Config().target_noise_clip
    noisy = actor.noisy(torch.randn(1000, 3), std=10.0, clip=clip)
    assert noisy.abs().max().item() == pytest.approx(clip), "noise beyond ±c is cut to ±c"
    assert (noisy.abs() == clip).float().mean() > 0.9, "with σ ≫ c almost every draw hits the clip"


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_actor_and_targets_move_only_on_every_policy_delay_th_update() -> None:
    learner = learner_on_random_transitions(TD3Config().training(policy_delay=2))
    net, tau = learner.net, learner.config.tau
    targets = [*net.critic_target.parameters(), *net.actor_target.parameters()]
    with torch.no_grad():
        for p in targets:
            p.zero_()  # far from the networks, so a Polyak step τ·(θ − θ') is large enough to measure
    learner.on_phase_start(Phase("offline", 3, "updates"))
    for update in range(1, 7):
        if update == 4:
            learner.on_phase_start(Phase("online", 100, "env_steps"))  # the rhythm runs on across phases
        actor, critic, before = params(net.actor), params(net.critic), [p.detach().clone() for p in targets]
        learner.run_updates(1, Sampling("offline"))
        critic_moved, actor_moved = moved(critic, net.critic), moved(actor, net.actor)
        targets_moved = any(not torch.equal(a, b) for a, b in zip(before, targets))
        assert critic_moved, f"update {update}: the critics learn on every update"
        if update % 2:
            assert not actor_moved, f"update {update}: the actor waits for the delayed update"
            assert not targets_moved, f"update {update}: the targets wait too"
        else:
            assert actor_moved and targets_moved, f"update {update} is a policy update"
            # θ' ← θ' + τ(θ − θ'), toward the networks as this update's step left them
            sources = [*net.critic.parameters(), *net.actor.parameters()]
            for old, new, source in zip(before, targets, sources):
                torch.testing.assert_close(new - old, tau * (source.detach() - old), rtol=1e-3, atol=1e-7)


def test_envrunner_module_holds_only_the_actor_and_explores_with_gaussian_noise() -> None:
    config = TD3BCConfig()
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    module = TD3Module(
        observation_space=obs_space, action_space=act_space, inference_only=True, model_config=config.network_config()
    )
    # the actor, and the state statistics its forwards standardize observations with
    assert {k.split(".")[0] for k in module.state_dict()} == {"actor", "obs_normalizer"}, "EnvRunners build the actor only"
    with torch.no_grad():
        module.actor.net[-1].weight.zero_()
        module.actor.net[-1].bias.zero_()  # μ(s) = 0: exploration actions are the noise alone
    torch.manual_seed(0)
    batch = {Columns.OBS: torch.randn(20000, 3)}
    greedy = module.forward_inference(batch)[Columns.ACTIONS]
    explored = module.forward_exploration(batch)[Columns.ACTIONS]
    assert torch.equal(greedy, torch.zeros_like(greedy)), "evaluation acts deterministically"
    assert explored.std().item() == pytest.approx(config.exploration_noise, rel=0.05)
