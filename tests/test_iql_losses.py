"""One real `IQLLearner.update_step` on a tiny batch, checked against IQL's equations written out
here from the networks' outputs before the step: the value, critic and actor losses it reports,
each network's gradient (each loss reaches only its own network, through detached targets, so
the one summed backward equals three), every network stepped, and the target critic moved by
exactly τ toward the stepped critic. The losses' hand-computed cases on a few numbers are in
test_engine.py. No Ray session needed."""

from __future__ import annotations

import torch
from torch import nn

from o2o.algorithms.iql import IQLConfig
from o2o.platform.engine import Phase

from helpers import learner_on_random_transitions, random_transitions

COLUMNS = ("obs", "actions", "rewards", "new_obs", "terminateds")


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_update_step_reports_the_papers_losses_steps_each_network_and_moves_the_target_by_tau() -> None:
    learner = learner_on_random_transitions(IQLConfig())
    net, hp = learner.net, learner.config
    learner.on_phase_start(Phase("offline", 10, "updates"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.critic_target.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a target that lags the critic, as after training
    rows = random_transitions(4)
    batch = {k: torch.as_tensor(getattr(rows, k), dtype=torch.float32) for k in COLUMNS}
    batch["terminateds"] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # two terminal rows: no bootstrap there
    obs, actions, rewards, new_obs, done = (batch[k] for k in COLUMNS)

    # Eq. 5: L_V = mean(|τ − 1(u < 0)|·u²), u = Q̂(s, a) − V(s), Q̂ the min of the target critics.
    q_hat = net.critic_target(obs, actions).min(0).values
    v = net.value(obs).squeeze(-1)
    u = q_hat - v
    value_loss = (torch.where(u < 0, 1 - hp.expectile, hp.expectile) * u**2).mean()
    # Eq. 6: Σ_i mean((r + γ(1 − d)V(s') − Q_i(s, a))²), V(s') a constant.
    y = rewards + hp.gamma * (1 - done) * net.value(new_obs).squeeze(-1).detach()
    critic_loss = ((net.critic(obs, actions) - y) ** 2).mean(1).sum()
    # Eq. 7: −mean(min(exp(β(Q̂ − V)), 100)·log π(a|s)), π = N(tanh μ(s), σ), the weight a constant.
    weight = torch.exp(hp.temperature * u.detach()).clamp(max=hp.max_weight)
    policy = torch.distributions.Normal(torch.tanh(net.actor.net(obs)), net.actor.log_std.exp())
    actor_loss = -(weight * policy.log_prob(actions).sum(-1)).mean()

    owners = {"value": net.value, "critic": net.critic, "actor": net.actor}
    losses = {"value": value_loss, "critic": critic_loss, "actor": actor_loss}
    expected_grads = {k: torch.autograd.grad(losses[k], list(m.parameters())) for k, m in owners.items()}
    before = {k: params(m) for k, m in owners.items()}
    target_before = params(net.critic_target)

    metrics = learner.update_step(batch)

    for name in owners:
        torch.testing.assert_close(metrics[f"{name}_loss"], losses[name].detach(), msg=f"reported {name}_loss")
        for grad, p in zip(expected_grads[name], owners[name].parameters()):
            torch.testing.assert_close(p.grad, grad, msg=f"the {name}'s gradient is its own loss's alone")
        assert any(not torch.equal(a, b) for a, b in zip(before[name], owners[name].parameters())), f"the {name} steps"
    # θ' ← θ' + τ(θ − θ'), toward the critic as this update's step left it
    for old, new, critic in zip(target_before, net.critic_target.parameters(), net.critic.parameters()):
        torch.testing.assert_close(new - old, hp.tau * (critic.detach() - old), rtol=1e-3, atol=1e-7)
