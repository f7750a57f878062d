"""OPT without Ray: the meta-adaptation objective against its definition (value and second-order
gradient), κ's ramp, the actor's κ-mix, which networks each phase moves, and the refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from o2o.algorithms import config_class
from o2o.algorithms.opt.learner import kappa, meta_adaptation_loss, mixed_q
from o2o.algorithms.td3.learner import critic_loss
from o2o.platform.engine import Phase
from o2o.platform.networks import QEnsemble
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions, moved, parameters_of, random_transitions

OPT = ["opt_td3bc", "opt_spot"]


def tiny_critic() -> QEnsemble:
    torch.manual_seed(0)
    return QEnsemble(2, 3, [5]).double()


def minibatch(seed: int, target_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Six (state (2,), action (1,), TD target) triples in float64."""
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    return draw(6, 2), draw(6, 1), target_scale * draw(6)


def objective_by_hand(critic: QEnsemble, flat: torch.Tensor, offline, online, lr: float, weight: float) -> float:  # noqa: ANN001
    """L_off(θ) + w·L_on(θ − η∇L_off(θ)) at the flat parameter vector `flat`: the inner step
    taken as a plain update, the value a finite difference then differentiates."""
    named = [(n, p.shape) for n, p in critic.named_parameters()]

    def unflatten(vector: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [int(np.prod(shape)) for _, shape in named]
        return {n: v.view(shape) for (n, shape), v in zip(named, vector.split(sizes))}

    theta = flat.detach().clone().requires_grad_(True)
    loss_off = critic_loss(torch.func.functional_call(critic, unflatten(theta), offline[:2]), offline[2])
    (grad,) = torch.autograd.grad(loss_off, theta)
    adapted = unflatten(theta.detach() - lr * grad)
    loss_on = critic_loss(torch.func.functional_call(critic, adapted, online[:2]), online[2])
    return float(loss_off.detach() + weight * loss_on)


def test_meta_adaptation_objective_and_its_second_order_gradient_by_hand() -> None:
    critic = tiny_critic()
    offline, online = minibatch(1), minibatch(2, target_scale=3.0)  # online targets far off: L_on > L_off
    lr = 0.1
    objective, loss_off, loss_on = meta_adaptation_loss(critic, offline, online, lr)
    assert loss_on > loss_off
    weight = float(loss_off / loss_on)  # min(L_off, L_on) / L_on
    flat = torch.cat([p.detach().flatten() for p in critic.parameters()])
    assert float(objective.detach()) == pytest.approx(objective_by_hand(critic, flat, offline, online, lr, weight), rel=1e-10)

    objective.backward()
    gradient = torch.cat([p.grad.flatten() for p in critic.parameters()])
    eps = 1e-6
    for i in range(0, flat.numel(), 7):  # w held fixed, as the objective detaches it
        step = torch.zeros_like(flat)
        step[i] = eps
        numeric = (
            objective_by_hand(critic, flat + step, offline, online, lr, weight)
            - objective_by_hand(critic, flat - step, offline, online, lr, weight)
        ) / (2 * eps)
        assert float(gradient[i]) == pytest.approx(numeric, rel=1e-5, abs=1e-8), f"parameter {i}"


def test_online_term_keeps_its_full_weight_when_smaller() -> None:
    critic = tiny_critic()
    offline, online = minibatch(1, target_scale=5.0), minibatch(2)
    objective, loss_off, loss_on = meta_adaptation_loss(critic, offline, online, 0.1)
    assert loss_on < loss_off
    assert float(objective.detach()) == pytest.approx(float(loss_off + loss_on), rel=1e-12)


@pytest.mark.parametrize(("progress", "expected"), [(0.0, 0.3), (0.5, 0.6), (1.0, 0.9), (3.0, 0.9)])
def test_kappa_rises_linearly_then_holds(progress: float, expected: float) -> None:
    assert kappa(0.3, 0.9, progress) == pytest.approx(expected)


def test_mixed_q_by_hand() -> None:
    q_off, q_on = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])
    torch.testing.assert_close(mixed_q(q_off, q_on, 0.25), torch.tensor([1.5, 1.0]))


def opt_learner(name: str, **training: object):  # noqa: ANN201 - OPTLearner
    return learner_on_random_transitions(config_class(name)().o2o(online_env_steps=100).training(**training))


def add_online_rows(learner, n: int) -> None:  # noqa: ANN001
    rows = random_transitions(n)
    learner.add_online({"obs": rows.obs, "actions": rows.actions, "rewards": rows.rewards,
                        "new_obs": rows.new_obs, "terminateds": rows.terminateds.astype(np.float32)})


@pytest.mark.parametrize("name", OPT)
def test_pretraining_moves_q_on_alone(name: str) -> None:
    learner = opt_learner(name, policy_delay=1)
    net = learner.net
    learner.on_phase_start(Phase("online_collection", 40, "env_steps", trains_policy=False))
    add_online_rows(learner, 40)
    actor, critic, online, online_target = (parameters_of(m) for m in (net.actor, net.critic, net.critic_online, net.critic_online_target))
    learner.on_phase_start(Phase("online_pretraining", 3, "updates", trains_policy=False))
    metrics = learner.run_updates(3, Sampling("offline"))
    assert set(metrics) == {"meta_objective", "offline_td_loss", "online_td_loss"}
    assert moved(online, net.critic_online) and moved(online_target, net.critic_online_target)
    assert not moved(actor, net.actor) and not moved(critic, net.critic), "the actor and Q_off stay as offline left them"


@pytest.mark.parametrize("name", OPT)
def test_fine_tuning_actor_ascends_the_kappa_mix(name: str) -> None:
    learner = opt_learner(name, kappa_start=0.2, kappa_end=0.8, kappa_env_steps=100)
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    add_online_rows(learner, 50)  # halfway up κ's ramp
    assert learner.current_kappa() == pytest.approx(0.5)
    obs, actions = torch.randn(8, 11), torch.rand(8, 3) * 2 - 1
    with torch.no_grad():
        expected = 0.5 * learner.net.critic(obs, actions)[0] + 0.5 * learner.net.critic_online(obs, actions)[0]
    torch.testing.assert_close(learner.actor_q(obs, actions), expected)
    learner.on_phase_start(Phase("offline", 1, "updates"))
    with torch.no_grad():
        torch.testing.assert_close(learner.actor_q(obs, actions), learner.net.critic(obs, actions)[0])


@pytest.mark.parametrize("name", OPT)
def test_fine_tuning_updates_both_critics(name: str) -> None:
    learner = opt_learner(name, policy_delay=1)
    net = learner.net
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    add_online_rows(learner, 20)
    critic, online, actor = parameters_of(net.critic), parameters_of(net.critic_online), parameters_of(net.actor)
    metrics = learner.run_updates(2, Sampling("balanced"))
    assert moved(critic, net.critic) and moved(online, net.critic_online) and moved(actor, net.actor)
    assert {"online_critic_loss", "online_q_mean", "kappa", "critic_loss", "actor_loss"} <= set(metrics)
    assert metrics["kappa"] == pytest.approx(0.1 + 0.8 * 20 / 150_000)


def test_defaults_follow_the_ports() -> None:
    td3bc, spot = config_class("opt_td3bc")(), config_class("opt_spot")()
    for config in (td3bc, spot):
        assert (config.collection_env_steps, config.pretraining_updates, config.meta_lr) == (25_000, 50_000, 3e-4)
        assert (config.kappa_start, config.kappa_end, config.kappa_env_steps) == (0.1, 0.9, 150_000)
        assert (config.sampling_rule, config.balanced_temperature) == ("balanced", 5.0)
        phases = [p.name for p in config.algo_class.phases(config)]
        assert phases[-3:] == ["online_collection", "online_pretraining", "online"]
    online = td3bc.for_phase("online")
    assert (online.bc_weight, online.utd_ratio, td3bc.bc_weight, td3bc.alpha) == (0.0, 5.0, 1.0, 2.5)
    assert spot.for_phase("online").cool_support_weight and spot.utd_ratio == 1.0


@pytest.mark.parametrize(
    ("name", "training", "message"),
    [
        ("opt_td3bc", {"kappa_end": 1.5}, "kappa_start and kappa_end must lie in [0, 1], got 0.1 and 1.5"),
        ("opt_spot", {"phase_overrides": {"online": {"kappa_env_steps": 0}}}, "kappa_env_steps must be >= 1 and meta_lr > 0 in phase_overrides['online']"),
        ("opt_td3bc", {"collection_env_steps": 0}, "online_pretraining trains Q_on on online minibatches: it needs collection_env_steps >= 1"),
        ("opt_td3bc", {"phase_overrides": {"online": {"pretraining_updates": 10}}}, "pretraining_updates cannot be phase overrides"),
        ("opt_spot", {"phase_overrides": {"online_pretraining": {"meta_lr": -1.0}}}, "meta_lr > 0 in phase_overrides['online_pretraining']"),
    ],
)
def test_settings_that_cannot_take_effect_are_refused(name: str, training: dict, message: str) -> None:
    config = config_class(name)().environment("Hopper-v5").offline_data(input_=["unread.parquet"]).training(**training)
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({}, "sampling_rule balanced weighs each row by how online it looks against the dataset: it needs a dataset"),
        ({"sampling_rule": "union"}, "online_pretraining trains Q_on on dataset minibatches as well as online ones: it needs a dataset"),
    ],
)
def test_without_a_dataset_opt_is_refused(training: dict, message: str) -> None:
    config = config_class("opt_td3bc")().environment("Hopper-v5").o2o(online_env_steps=100).training(**training)
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
