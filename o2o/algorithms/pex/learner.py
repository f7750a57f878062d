"""PEX's learner: IQL's losses, the policy expansion at the online start, and the new policy's
AWR on actions of the composed policy.

Policy Expansion — Zhang, Xu, Yu. "Policy Expansion for Bridging Offline-to-Online Reinforcement
Learning", ICLR 2023, arXiv:2302.00935. Checked against Haichao-Zhang/PEX (`pex/algorithms/pex.py`
`PEX.select_action`/`policy_update`, `pex/algorithms/iql.py`, `main_online.py`).

Offline the update is IQL's (`IQLLearner`). At the online start the policy set is expanded: the
trained actor is frozen as π_offline and the actor restarts as a fresh π_new; every Adam moment
starts afresh, as the authors' online run builds new optimizers. Online, V and Q keep IQL's losses
on the minibatch's transitions; π_new's AWR imitates, at each minibatch state, an action drawn from
the composed policy (π_offline's mean or π_new's sample, picked by softmax(α·Q)), weighted by
exp(β(Q̂(s, a) − V(s))) — the authors' `policy_update`, which replaces the batch's actions by
`select_action(observations)`. Their V there is the one just updated; ours is the same update's
V before its step, as every IQL loss here shares one backward pass.
"""

from __future__ import annotations

import torch

from o2o.algorithms.iql.learner import IQLLearner
from o2o.platform.engine import Phase


class PEXLearner(IQLLearner):
    """IQL's update; online, the policy set is expanded and π_new learns from the composed policy."""

    seeds_batched = True

    def on_phase_start(self, phase: Phase) -> None:
        """Online: expand the policy set (`PEXModule.expand_policy`) and forget every Adam moment
        and step count, so the value, critic and new actor take a fresh Adam's first step."""
        super().on_phase_start(phase)
        if phase.name == "online":
            self.net.expand_policy()
            self.optimizer.state.clear()

    def awr_actions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """With `awr_actions` "composite", the new policy's AWR (IQL eq. 7) fits actions of the
        composed policy (the authors' `policy_update`); with "replay", the batch's, as IQL."""
        if self.hp.awr_actions == "replay":
            return super().awr_actions(batch)
        composite, choice = self.net.compose(batch["obs"], epsilon=1.0)
        return composite, {"offline_policy_share": (choice == 0).float().mean()}
