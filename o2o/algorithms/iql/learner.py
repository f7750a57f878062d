"""IQL's losses, in the paper's order.

Implicit Q-Learning — Kostrikov, Nair, Levine. "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR 2022, arXiv:2110.06169. Checked against ikostrikov/implicit_q_learning
(`critic.py`, `actor.py`) and CORL `algorithms/offline/iql.py`.

The three losses touch disjoint parameters (V, Q, π) and read each other only through detached
targets, so their sum has the same gradients as three separate backward passes: one backward,
one Adam with a parameter group per network.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from o2o.platform.engine import O2OLearner
from o2o.platform.networks import soft_update_


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Eq. 5: L_V = E[ |τ − 1(u < 0)| · u² ], u = Q̂(s, a) − V(s)."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 6: L_Q = Σ_i E[ (r + γ(1 − d)V(s') − Q_i(s, a))² ] over the twin critics."""
    return (q - target).pow(2).mean(-1).sum()


def awr_loss(
    log_prob: torch.Tensor, advantage: torch.Tensor, temperature: float | torch.Tensor, max_weight: float
) -> torch.Tensor:
    """Eq. 7: L_π = −E[ min(exp(β(Q̂ − V)), max_weight) · log π(a|s) ]; β a scalar or one per
    transition."""
    weight = torch.exp(temperature * advantage).clamp(max=max_weight)
    return -(weight * log_prob).mean()


class IQLLearner(O2OLearner):
    """One IQL update: V by expectile regression, Q by TD to V(s'), π by AWR, soft target."""

    seeds_batched = True

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        net = self.module[module_id]
        groups = [
            {"params": list(net.value.parameters()), "name": "value"},
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
        ]
        self.optimizer = self.grouped_adam(module_id, "iql", groups)
        self.actor_group = groups[2]

    def actor_lr(self) -> float:
        """The actor's learning rate now: cosine decay over the phase's budget, or constant."""
        if self.hp.actor_lr_schedule == "constant" or self.phase is None or self.phase.unit != "updates":
            return self.hp.lr
        progress = min(self.phase_updates / max(self.phase.budget, 1), 1.0)
        return self.hp.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def awr_actions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actions the AWR loss (eq. 7) fits, and metrics about them: the batch's own. A
        method that fits other actions overrides this (PEX: its composite policy's)."""
        return batch["actions"], {}

    def awr_temperature(self) -> float | torch.Tensor:
        """β of eq. 7's weight exp(β(Q̂ − V)): the config's `temperature`, or one per transition
        of the minibatch (B,) for a method that varies it (FamO2O: the balance coefficient)."""
        return self.hp.temperature

    def losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eqs. 5–7 on one seed's networks `net` and minibatch: their sum, and the metrics."""
        hp = self.hp
        obs, actions = batch["obs"], batch["actions"]
        fitted, fitted_metrics = self.awr_actions(batch)
        with torch.no_grad():
            q_target = self.target_min(net.critic_target(obs, actions))
            q_fitted = q_target if fitted is actions else self.target_min(net.critic_target(obs, fitted))
            td_target = batch["rewards"] + hp.gamma * (1.0 - batch["terminateds"]) * net.v(batch["new_obs"])
        v = net.v(obs)
        value_loss = expectile_loss(q_target - v, hp.expectile)
        q = net.critic(obs, actions)
        q_loss = critic_loss(q, td_target)
        advantage = q_fitted - v.detach()
        actor_loss = awr_loss(net.actor.log_prob(self.policy_obs(obs), fitted), advantage, self.awr_temperature(), hp.max_weight)
        return value_loss + q_loss + actor_loss, {
            "value_loss": value_loss.detach(),
            "critic_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.detach().mean(),
            "v_mean": v.detach().mean(),
            "advantage_mean": advantage.mean(),
            **fitted_metrics,
        }

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, metrics = self.seed_losses(self.losses, batch)
        self.actor_group["lr"] = self.actor_lr()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        soft_update_(self.net.critic_target.parameters(), self.net.critic.parameters(), self.hp.tau)
        return metrics
