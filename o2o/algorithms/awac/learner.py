"""AWAC's losses, in the paper's order.

Advantage-Weighted Actor-Critic — Nair, Gupta, Dalal, Levine. "AWAC: Accelerating Online
Reinforcement Learning with Offline Datasets", arXiv:2006.09359. Checked against CORL
`algorithms/offline/awac.py` and `algorithms/finetune/awac.py`, and the authors' rlkit
`rlkit/torch/sac/awac_trainer.py`.

Policy evaluation (Algorithm 1, critic step): twin critics regress on a bootstrapped target at
an action drawn from the current policy, with no entropy term — CORL's backup, and rlkit's with
its AWAC runs' α = 0. Policy improvement (Algorithm 1, actor step): the KL-constrained step
max_π E_{a~π}[A(s, a)] s.t. KL(π ‖ π_β) ≤ ε has the solution π*(a|s) ∝ π_β(a|s)·exp(A(s, a)/λ);
the actor is projected onto it by maximum likelihood of the replay's actions, each weighted by
exp(A/λ), so it never evaluates the critic at actions the data does not hold.

The advantage is min_i Q_i(s, a) − min_i Q_i(s, ã) with ã one sample of π(·|s): V(s) is estimated
by a policy sample, not by the mean action (CORL, and rlkit with `awr_use_mle_for_vf=False`).
Both read the current critics, not the targets. The weights carry no gradient, so the critic and
actor losses touch disjoint parameters: one backward pass, one Adam with a parameter group per
network. Both losses read the critics as they were before this update's step — as rlkit, which
computes every loss before stepping; CORL steps the critics first and then computes the actor's
advantages with them, one Adam step apart from ours.
"""

from __future__ import annotations

from typing import Any

import torch

from o2o.platform.engine import O2OLearner
from o2o.platform.networks import soft_update_


def td_target(rewards: torch.Tensor, terminateds: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """Algorithm 1, critic step: y = r + γ(1 − d)·min_i Q̄_i(s', a'), a' ~ π(·|s'); `next_q` is the
    min over the target critics. SAC's backup without its −α log π(a'|s') term."""
    return rewards + gamma * (1.0 - terminateds) * next_q


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Algorithm 1, critic step: Σ_i E[(Q_i(s, a) − y)²] over the twin critics (CORL's
    mse(Q_1, y) + mse(Q_2, y))."""
    return (q - target).pow(2).mean(-1).sum()


def advantage(q_data: torch.Tensor, q_policy: torch.Tensor) -> torch.Tensor:
    """A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã), ã ~ π(·|s): the dataset action's value less a
    one-sample estimate of V^π(s). q_data, q_policy (N, B) → (B,)."""
    return q_data.min(0).values - q_policy.min(0).values


def advantage_weights(advantage: torch.Tensor, awac_lambda: float, max_weight: float) -> torch.Tensor:
    """min(exp(A/λ), max_weight): the density ratio π*(a|s)/π_β(a|s) of the constrained policy
    improvement step, up to its per-state normaliser, clipped as CORL clips it."""
    return torch.exp(advantage / awac_lambda).clamp(max=max_weight)


def actor_loss(log_prob: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Algorithm 1, actor step: L_π = −E_{(s,a)~β}[ log π(a|s) · exp(A(s, a)/λ) ], the weights held
    constant (they come from the critics, which this loss must not move)."""
    return -(weights.detach() * log_prob).mean()


class AWACLearner(O2OLearner):
    """One AWAC update: critics to the TD target, actor by advantage-weighted likelihood, soft
    target critics. Offline and online alike."""

    seeds_batched = True

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        net = self.module[module_id]
        groups = [
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
        ]
        self.optimizer = self.grouped_adam(module_id, "awac", groups)

    def losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One seed's critic and actor losses on its networks `net`: their sum, and the metrics."""
        hp = self.hp
        obs, actions = batch["obs"], batch["actions"]
        with torch.no_grad():
            next_actions = net.actor.sample(batch["new_obs"])
            next_q = self.target_min(net.critic_target(batch["new_obs"], next_actions))
            target = td_target(batch["rewards"], batch["terminateds"], next_q, hp.gamma)
            q_policy = net.critic(obs, net.actor.sample(obs))
        q = net.critic(obs, actions)
        q_loss = critic_loss(q, target)
        adv = advantage(q.detach(), q_policy)
        weights = advantage_weights(adv, hp.awac_lambda, hp.max_weight)
        pi_loss = actor_loss(net.actor.log_prob(obs, actions), weights)
        return q_loss + pi_loss, {
            "critic_loss": q_loss.detach(),
            "actor_loss": pi_loss.detach(),
            "q_mean": q.detach().mean(),
            "advantage_mean": adv.mean(),
            "weight_mean": weights.mean(),
        }

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, metrics = self.seed_losses(self.losses, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        soft_update_(self.net.critic_target.parameters(), self.net.critic.parameters(), self.hp.tau)
        return metrics
