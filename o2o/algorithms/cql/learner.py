"""CQL's losses, in the paper's order.

Conservative Q-Learning — Kumar, Zhou, Tucker, Levine. "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS 2020, arXiv:2006.04779. The CQL(H) variant (eq. 4) on SAC, with
the log-sum-exp estimated by importance sampling (App. F). Checked against CORL
`algorithms/offline/cql.py` and `algorithms/finetune/cql.py` (ports of young-geng/CQL).

The critics minimise the TD error plus α·(log Σ_a exp Q(s, a) − Q(s, a_D)); the log-sum-exp runs
over `num_sampled_actions` uniform actions, as many from π(·|s) and as many from π(·|s') (all
evaluated at s), each Q less the log-density of its proposal. Actor and temperature are SAC's.
The actor loss reads the critics with detached parameters and the sampled actions carry no
gradient, so the critic, actor, temperature and Lagrange losses touch disjoint parameters: one
backward pass and one Adam whose parameter groups carry each network's learning rate — the same
updates as CORL's four optimizers, which all step on gradients of the pre-update parameters.

Where this departs from CORL: the π(·|s') samples of the regularizer also give the TD target its
next action (the first of them, or the best under `max_target_backup`), where CORL draws the
target's separately — both are independent draws from π(·|s'), so no expectation changes and one
actor pass is saved. Like CORL, the log-sum-exp omits the constant −log(3N) of the
importance-sampled mean; it moves no gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from o2o.algorithms.sac.learner import SACLearner, critic_loss, soft_td_target
from o2o.platform.networks import QEnsemble, soft_update_


def conservative_gap(
    q_sampled: torch.Tensor, log_density: torch.Tensor, q_data: torch.Tensor, temperature: float, clip_min: float
) -> torch.Tensor:
    """Eq. 4's regularizer per critic, its log-sum-exp importance-sampled (App. F):
    E_s[ τ·log Σ_j exp((Q_i(s, a_j) − log μ_j(a_j|s)) / τ) − Q_i(s, a_D) ], each state's term
    clipped below at `clip_min`. q_sampled (N, B, K), log_density (B, K) of the proposal μ_j
    each action came from, q_data (N, B) → (N,)."""
    soft_max = temperature * torch.logsumexp((q_sampled - log_density) / temperature, dim=-1)
    return (soft_max - q_data).clamp(min=clip_min).mean(-1)


def conservative_loss(gap: torch.Tensor, weight: torch.Tensor | float, target_gap: float) -> torch.Tensor:
    """The critic's conservative term, Σ_i w·(gap_i − τ_gap): eq. 4 with w = α and τ_gap = 0, or
    App. F's Lagrange form with w = α·α' (α' detached, it is the dual's) and τ_gap the target."""
    return (weight * (gap - target_gap)).sum()


def lagrange_loss(multiplier: torch.Tensor, gap: torch.Tensor, cql_alpha: float, target_gap: float) -> torch.Tensor:
    """App. F's dual step on α' ≥ 0: minimise −α'·α·(mean_i gap_i − τ_gap), so α' grows while the
    gap exceeds τ_gap and shrinks once it is below (the gap is detached: only α' moves)."""
    return -multiplier * cql_alpha * (gap.detach().mean() - target_gap)


def q_at(critic: QEnsemble, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q_i(s_b, a_bk) for K actions per state: obs (B, O), actions (B, K, A) → (N, B, K)."""
    batch, k, _ = actions.shape
    flat_obs = obs.unsqueeze(1).expand(batch, k, obs.shape[-1]).reshape(batch * k, -1)
    return critic(flat_obs, actions.reshape(batch * k, -1)).view(-1, batch, k)


def repeat_states(obs: torch.Tensor, k: int) -> torch.Tensor:
    """(B, O) → (B, k, O): each state k times, so the actor draws k actions per state."""
    return obs.unsqueeze(1).expand(obs.shape[0], k, obs.shape[-1])


class CQLLearner(SACLearner):
    """One CQL update: critics to the TD target plus the conservative term; SAC's actor and
    temperature; the Lagrange multiplier when on; Polyak target critics."""

    seeds_batched = True

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        net = self.module[module_id]
        groups = [
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
            {"params": [net.log_alpha], "name": "alpha"},
            {"params": [net.log_cql_multiplier], "name": "cql_multiplier"},
        ]
        self.optimizer = self.grouped_adam(module_id, "cql", groups)

    def learning_rates(self) -> dict[str, float]:
        """Critics at `lr`, actor at `actor_lr`, temperature at `alpha_lr`, α' at `lr` (CORL's
        `qf_lr`)."""
        hp = self.hp
        return {"critic": hp.lr, "actor": hp.actor_lr, "alpha": hp.alpha_lr, "cql_multiplier": hp.lr}

    def policy_action_q(
        self, q_policy: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy actions' Q-values (N, B, 2K) as they enter the log-sum-exp, and metrics about
        them. CQL uses them as they are; Cal-QL lower-bounds them."""
        return q_policy, {}

    def next_action_value(
        self, new_obs: torch.Tensor, next_actions: torch.Tensor, next_logp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """min_i Q̄_i(s', a') and log π(a'|s') for the TD target, from K draws a' ~ π(·|s')
        (B, K, A): the first draw, or under `max_target_backup` the one of highest target value."""
        if self.hp.max_target_backup:
            q_next = q_at(self.net.critic_target, new_obs, next_actions)
            q_next = self.target_min(q_next.flatten(1)).view(q_next.shape[1:])
            best = q_next.argmax(-1, keepdim=True)
            return q_next.gather(-1, best).squeeze(-1), next_logp.gather(-1, best).squeeze(-1)
        return self.reduce_target(self.net.critic_target(new_obs, next_actions[:, 0])), next_logp[:, 0]

    def conservative_terms(
        self, batch: dict[str, torch.Tensor], q: torch.Tensor, next_actions: torch.Tensor, next_logp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | float, dict[str, torch.Tensor]]:
        """Eq. 4's conservative term on q (N, B), the critics' values of the data's actions, and
        App. F's dual loss (0 unless `cql_lagrange`): the log-sum-exp runs over K uniform actions,
        K draws from π(·|s) and the K draws from π(·|s') the target already made (B, K, A)."""
        net, hp = self.net, self.hp
        obs, k, act_dim = batch["obs"], hp.num_sampled_actions, next_actions.shape[-1]
        with torch.no_grad():
            current_actions, current_logp = net.actor.sample(self.policy_obs(repeat_states(obs, k)))
            random_actions = torch.rand_like(current_actions) * 2.0 - 1.0
            uniform_logp = torch.full_like(current_logp, -act_dim * math.log(2.0))  # log U([−1, 1]^|A|)
            log_density = torch.cat([uniform_logp, current_logp, next_logp], dim=-1)
        q_sampled = q_at(net.critic, obs, torch.cat([random_actions, current_actions, next_actions], dim=1))
        q_policy, extra = self.policy_action_q(q_sampled[..., k:], batch)
        q_sampled = torch.cat([q_sampled[..., :k], q_policy], dim=-1)
        gap = conservative_gap(q_sampled, log_density, q, hp.cql_temperature, hp.cql_clip_diff_min)
        extra["cql_gap"] = gap.detach().mean()
        if not hp.cql_lagrange:
            return conservative_loss(gap, hp.cql_alpha, 0.0), 0.0, extra
        multiplier = net.log_cql_multiplier.exp().clamp(max=1e6)
        extra["cql_multiplier"] = multiplier.detach()
        return (
            conservative_loss(gap, hp.cql_alpha * multiplier.detach(), hp.cql_target_action_gap),
            lagrange_loss(multiplier, gap, hp.cql_alpha, hp.cql_target_action_gap),
            extra,
        )

    def cql_losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """With `cql_alpha` 0 (CQL → SAC fine-tuning online) the conservative term is not computed
        at all: it would weigh nothing, and its 3K actions per state are most of an update's cost.
        The TD target then needs one draw a' ~ π(·|s'), or K under `max_target_backup`."""
        hp = self.hp
        obs, actions = batch["obs"], batch["actions"]
        conservative = hp.cql_alpha > 0
        k = hp.num_sampled_actions if conservative or hp.max_target_backup else 1
        alpha = net.log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_logp = net.actor.sample(self.policy_obs(repeat_states(batch["new_obs"], k)))
            next_q, next_q_logp = self.next_action_value(batch["new_obs"], next_actions, next_logp)
            backup_alpha = alpha if hp.backup_entropy else 0.0
            target = soft_td_target(batch["rewards"], batch["terminateds"], next_q, next_q_logp, backup_alpha, hp.gamma)
        q = net.critic(obs, actions)
        td_loss = critic_loss(q, target)
        if conservative:
            cql_loss, dual_loss, extra = self.conservative_terms(batch, q, next_actions, next_logp)
        else:
            cql_loss, dual_loss, extra = torch.zeros((), device=q.device), 0.0, {}
        pi_loss, alpha_loss, logp = self.policy_losses(obs, alpha)
        return td_loss + cql_loss + dual_loss + pi_loss + alpha_loss, {
            "critic_loss": td_loss.detach(),
            "cql_loss": cql_loss.detach(),
            "actor_loss": pi_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.mean(),
            "q_mean": q.detach().mean(),
            **extra,
        }

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, metrics = self.seed_losses(self.cql_losses, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        soft_update_(self.net.critic_target.parameters(), self.net.critic.parameters(), self.hp.tau)
        return metrics
