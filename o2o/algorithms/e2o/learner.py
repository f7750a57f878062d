"""E2O's losses: CQL on an N-critic ensemble offline; online, SAC-N's update with E2O's target
and its uncertainty-weighted critic loss.

E2O — Zhao, Jiang, Hao, Li, Chen, Zhang, Tang, Meng. "Ensemble-based Offline-to-Online
Reinforcement Learning: From Pessimistic Learning to Optimistic Exploration", arXiv:2306.06871.
What each piece does follows METHODS.md, which records the authors' code (TJU-DRL-LAB/
AI-Optimizer, `offline-rl-algorithms/E2O/e2o_impl.py`, a d3rlpy v1 fork).

The offline phase is `CQLLearner`'s update, unchanged but for the target's reduction
(`target_q`). Online (`conservative` off) the update is SAC-N's: the critics regress to
r + γ(1 − d)(WMP_ij Q̄(s', a') − α log π(a'|s')), a' ~ π(·|s'), their loss scaled by
sigmoid(−c·σ) + 0.5; the actor maximises min_i Q_i − α log π; α is SAC's auto temperature. The
entropy is in the online target whatever `backup_entropy` says (SAC-N is SAC), which is CQL's
switch for its own target. Departure, where the record is silent: σ is torch's sample standard
deviation (N − 1 in the denominator) of the N critics' values.
"""

from __future__ import annotations

import torch

from o2o.algorithms.cql.learner import CQLLearner
from o2o.algorithms.sac.learner import SACLearner, critic_loss


def weighted_min_pair(q: torch.Tensor) -> torch.Tensor:
    """E2O's target reduction: the mean over all C(N, 2) critic pairs i < j of min(Q_i, Q_j).
    Ordered ascending, the k-th smallest value (k = 0 … N − 1) is the minimum of the N − 1 − k
    pairs it forms with larger ones, so the mean is Σ_k (N − 1 − k)·Q_(k) / C(N, 2); no pair is
    enumerated. q (N, B) → (B,)."""
    n = q.shape[0]
    ordered = q.sort(dim=0).values
    pairs_led = torch.arange(n - 1, -1, -1, dtype=q.dtype, device=q.device).unsqueeze(-1)
    return (pairs_led * ordered).sum(0) / (n * (n - 1) / 2)


def uncertainty_weight(target_q: torch.Tensor, scale: float, per_sample: bool) -> torch.Tensor:
    """E2O's critic-loss scale sigmoid(−c·σ) + 0.5, in (0.5, 1]: the more the target critics
    disagree, the less the update trusts its target. σ is the spread across critics of each
    critic's minibatch-mean target value (the authors': one scalar), or per transition of the
    critics' target values. target_q (N, B), without gradient → () or (B,)."""
    spread = target_q.std(0) if per_sample else target_q.mean(-1).std()
    return torch.sigmoid(-scale * spread) + 0.5


def weighted_critic_loss(q: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """SAC-N's critic loss Σ_i E_b[w·(Q_i(s, a) − y)²] with the uncertainty weight w, a scalar or
    one per transition. q (N, B), target (B,), weight () or (B,) → ()."""
    return (weight * (q - target).pow(2)).mean(-1).sum()


class E2OLearner(CQLLearner):
    """CQL's update while `conservative` (offline); SAC's, on E2O's target and uncertainty-
    weighted critic loss, otherwise (online: SAC-N)."""

    seeds_batched = True

    def reduce_target(self, q_next: torch.Tensor) -> torch.Tensor:
        """The TD target's value of the N target critics (N, B) → (B,), per `target_q`."""
        return weighted_min_pair(q_next) if self.hp.target_q == "weighted_min_pair" else self.target_min(q_next)

    def critic_objective(
        self, q: torch.Tensor, target: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SAC-N's critic loss scaled per `uncertainty_weight`; the TD error stays the reported
        `critic_loss`, as every method reports it."""
        if self.hp.uncertainty_weight == "none":
            return super().critic_objective(q, target, q_next)
        weight = uncertainty_weight(q_next, self.hp.uncertainty_scale, per_sample=self.hp.uncertainty_weight == "sample")
        return weighted_critic_loss(q, target, weight), {
            "critic_loss": critic_loss(q.detach(), target),
            "uncertainty_weight": weight.mean(),
            "target_spread": q_next.std(0).mean(),
        }

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return super().update_step(batch) if self.hp.conservative else SACLearner.update_step(self, batch)
