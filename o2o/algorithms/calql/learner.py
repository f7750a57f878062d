"""Cal-QL's change to CQL: the policy actions' Q-values in the conservative term are
lower-bounded by the Monte-Carlo return-to-go.

Cal-QL — Nakamoto, Zhai, Singh, Sobol Mark, Ma, Finn, Kumar, Levine. "Cal-QL: Calibrated
Offline RL Pre-Training for Efficient Online Fine-Tuning", NeurIPS 2023, arXiv:2303.05479.
Checked against nakamotoo/Cal-QL (`JaxCQL/conservative_sac.py`) and CORL
`algorithms/finetune/cal_ql.py`.

The reference policy is the behaviour policy, its value V^μ(s) estimated by the discounted
return-to-go of the dataset episode through s, which the engine stores as `mc_returns` because
this learner declares `needs_returns_to_go`. Everything else is CQL's update.
"""

from __future__ import annotations

import torch

from o2o.algorithms.cql.learner import CQLLearner


def calibrated_q(q_policy: torch.Tensor, mc_returns: torch.Tensor) -> torch.Tensor:
    """The Cal-QL objective's max(Q_θ(s, a), V^μ(s)) for a ~ π, V^μ(s) the Monte-Carlo
    return-to-go: the regularizer stops pushing down a policy action's Q once it is at the
    reference value. q_policy (N, B, K), mc_returns (B,) → (N, B, K)."""
    return torch.maximum(q_policy, mc_returns.view(1, -1, 1))


class CalQLLearner(CQLLearner):
    """CQL's update whose policy-action Q-values in the log-sum-exp are calibrated while
    `calibrate` is on (offline by default; see `CalQLConfig`)."""

    needs_returns_to_go = True

    seeds_batched = True

    def policy_action_q(
        self, q_policy: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Bound the policy actions' Q-values by `mc_returns` (online rows hold −∞: unbounded);
        report the share of them below the bound (the authors' `bound_rate`) either way."""
        mc_returns = batch["mc_returns"]
        rate = (q_policy < mc_returns.view(1, -1, 1)).float().mean()
        if self.hp.calibrate:
            q_policy = calibrated_q(q_policy, mc_returns)
        return q_policy, {"calibration_rate": rate.detach()}
