"""SAC's losses, in the paper's order.

Soft Actor-Critic — Haarnoja, Zhou, Abbeel, Levine, ICML 2018 (arXiv:1801.01290), with the
automatic temperature of Haarnoja et al. 2018b (arXiv:1812.05905). Checked against CleanRL
`sac_continuous_action.py`.

The actor loss reads the critics with detached parameters, so critic, actor and temperature
losses touch disjoint parameters and share one backward pass and one Adam. Under RLPD's
`policy_update_per_env_step` the actor therefore reads the critics as they were before the
step's last critic update, where RLPD (ikostrikov/rlpd `sac_learner.py`) updates the actor
after all of the step's critic updates: one critic step of the step's `utd_ratio` apart.
"""

from __future__ import annotations

import math
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

    seeds_batched = True

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        net = self.module[module_id]
        groups = [
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
            {"params": [net.log_alpha], "name": "alpha"},
        ]
        self.optimizer = self.grouped_adam(module_id, "sac", groups)

    def learning_rates(self) -> dict[str, float]:
        """Critics and actor at `lr`, the temperature at `alpha_lr`."""
        return {"critic": self.hp.lr, "actor": self.hp.lr, "alpha": self.hp.alpha_lr}

    @property
    def target_entropy(self) -> float:
        """H̄ of eq. 18: `target_entropy_per_dim` × |A| (the paper: −|A|)."""
        return self.hp.target_entropy_per_dim * float(self.net.action_space.shape[0])

    def policy_update_due(self) -> bool:
        """Whether this update steps the actor and the temperature: always, except online under
        `policy_update_per_env_step`, where only every `utd_ratio`-th update of the phase does —
        the last critic update of each env step, as the engine runs `utd_ratio` per step."""
        hp, phase = self.hp, self.phase
        if not hp.policy_update_per_env_step or phase is None or phase.unit != "env_steps":
            return True
        return math.floor((self.phase_updates + 1) / hp.utd_ratio + 1e-9) > math.floor(self.phase_updates / hp.utd_ratio + 1e-9)

    def policy_losses(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 7's actor loss and eq. 18's temperature loss on one reparameterised draw
        ã ~ π(·|s), and log π(ã|s) (detached, for the entropy metric). Shared with CQL and
        Cal-QL, whose actor and temperature are SAC's."""
        net = self.net
        actions, logp = net.actor.sample(self.policy_obs(obs))
        q_all = net.critic(obs, actions, detach_params=True)
        q_pi = q_all.min(0).values if self.hp.actor_q_reduction == "min" else q_all.mean(0)
        pi_loss = self.actor_objective(logp, q_pi, alpha)
        alpha_loss = temperature_loss(net.log_alpha, logp.detach(), self.target_entropy)
        return pi_loss, alpha_loss, logp.detach()

    def actor_objective(self, logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The actor's loss from log π(ã|s) and Q(s, ã) (B,): eq. 7 here; FamO2O weighs Q by
        each state's balance coefficient."""
        return actor_loss(logp, q_pi, alpha)

    def reduce_target(self, q_next: torch.Tensor) -> torch.Tensor:
        """The TD target's value of the target critics (N, B) → (B,): their minimum (RLPD: of a
        random subset); E2O takes its weighted min-pair."""
        return self.target_min(q_next)

    def critic_objective(
        self, q: torch.Tensor, target: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The critics' loss and any metrics of it beyond the TD error: eq. 5 here; E2O weighs
        it by the target critics' disagreement `q_next` (N, B)."""
        return critic_loss(q, target), {}

    def sac_losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor], policy_due: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One seed's critic loss, plus on a `policy_due` update the actor's and the
        temperature's: their sum, and the metrics."""
        obs = batch["obs"]
        alpha = net.log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_logp = net.actor.sample(self.policy_obs(batch["new_obs"]))
            q_next = net.critic_target(batch["new_obs"], next_actions)
            target = soft_td_target(batch["rewards"], batch["terminateds"], self.reduce_target(q_next), next_logp, alpha, self.hp.gamma)
        q = net.critic(obs, batch["actions"])
        q_loss, extra = self.critic_objective(q, target, q_next)
        metrics = {"critic_loss": q_loss.detach(), "alpha": alpha, "q_mean": q.detach().mean(), **extra}
        if not policy_due:
            return q_loss, metrics
        pi_loss, alpha_loss, logp = self.policy_losses(obs, alpha)
        metrics.update(actor_loss=pi_loss.detach(), entropy=-logp.mean())
        return q_loss + pi_loss + alpha_loss, metrics

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        policy_due = self.policy_update_due()
        loss, metrics = self.seed_losses(lambda net, b: self.sac_losses(net, b, policy_due), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        soft_update_(self.net.critic_target.parameters(), self.net.critic.parameters(), self.hp.tau)
        return metrics
