"""SAC's losses, in the paper's order.

Soft Actor-Critic — Haarnoja, Zhou, Abbeel, Levine, ICML 2018 (arXiv:1801.01290), with the
automatic temperature of Haarnoja et al. 2018b (arXiv:1812.05905). Checked against CleanRL
`sac_continuous_action.py`.

The actor loss reads the critics with detached parameters, so critic, actor and temperature
losses touch disjoint parameters and share one backward pass and one Adam.
"""

from __future__ import annotations

from typing import Any

import torch

from o2o.platform.engine import O2OLearner
from o2o.platform.networks import soft_update_


def soft_td_target(
    rewards: torch.Tensor, terminateds: torch.Tensor, next_q: torch.Tensor, next_logp: torch.Tensor, alpha: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Eq. 3: y = r + γ(1 − d)(min_i Q̄_i(s', a') − α log π(a'|s')), a' ~ π(·|s')."""
    return rewards + gamma * (1.0 - terminateds) * (next_q - alpha * next_logp)


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: Σ_i E[(Q_i(s, a) − y)²] over the twin critics."""
    return (q - target).pow(2).mean(-1).sum()


def actor_loss(logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 7: E[α log π(ã|s) − Q(s, ã)], ã ~ π(·|s) reparameterised; Q is min_i Q_i (the
    paper's twin critics) or the ensemble mean (RLPD), per `actor_q_reduction`."""
    return (alpha * logp - q_pi).mean()


def temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Eq. 18 (arXiv:1812.05905): −E[log α · (log π(ã|s) + H̄)]."""
    return -(log_alpha * (logp + target_entropy)).mean()


class SACLearner(O2OLearner):
    """One SAC update: critics to the soft TD target, actor, temperature, soft target."""

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        net = self.module[module_id]
        groups = [
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
            {"params": [net.log_alpha], "name": "alpha", "lr": self.config.alpha_lr},
        ]
        self.optimizer = self.grouped_adam(module_id, "sac", groups)

    @property
    def target_entropy(self) -> float:
        """H̄ of eq. 18: the config's `target_entropy`, or −|A| (the paper's choice)."""
        if self.hp.target_entropy is not None:
            return self.hp.target_entropy
        return -float(self.net.action_space.shape[0])

    def policy_losses(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 7's actor loss and eq. 18's temperature loss on one reparameterised draw
        ã ~ π(·|s), and log π(ã|s) (detached, for the entropy metric). Shared with CQL and
        Cal-QL, whose actor and temperature are SAC's."""
        net = self.net
        actions, logp = net.actor.sample(obs)
        q_all = net.critic(obs, actions, detach_params=True)
        q_pi = q_all.min(0).values if self.hp.actor_q_reduction == "min" else q_all.mean(0)
        pi_loss = actor_loss(logp, q_pi, alpha)
        alpha_loss = temperature_loss(net.log_alpha, logp.detach(), self.target_entropy)
        return pi_loss, alpha_loss, logp.detach()

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net, hp = self.net, self.hp
        obs = batch["obs"]
        alpha = net.log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_logp = net.actor.sample(batch["new_obs"])
            next_q = self.target_min(net.critic_target(batch["new_obs"], next_actions))
            target = soft_td_target(batch["rewards"], batch["terminateds"], next_q, next_logp, alpha, hp.gamma)
        q = net.critic(obs, batch["actions"])
        q_loss = critic_loss(q, target)
        pi_loss, alpha_loss, logp = self.policy_losses(obs, alpha)

        self.optimizer.zero_grad(set_to_none=True)
        (q_loss + pi_loss + alpha_loss).backward()
        self.optimizer.step()
        soft_update_(net.critic_target.parameters(), net.critic.parameters(), hp.tau)
        return {
            "critic_loss": q_loss.detach(),
            "actor_loss": pi_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.mean(),
            "q_mean": q.detach().mean(),
        }
