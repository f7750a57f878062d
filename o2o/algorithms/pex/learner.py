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

from o2o.algorithms.iql.learner import IQLLearner, awr_loss, critic_loss, expectile_loss
from o2o.platform.engine import Phase
from o2o.platform.networks import soft_update_


class PEXLearner(IQLLearner):
    """IQL's update; online, the policy set is expanded and π_new learns from the composed policy."""

    def on_phase_start(self, phase: Phase) -> None:
        """Online: expand the policy set (`PEXModule.expand_policy`) and forget every Adam moment
        and step count, so the value, critic and new actor take a fresh Adam's first step."""
        super().on_phase_start(phase)
        if phase.name == "online":
            self.net.expand_policy()
            self.optimizer.state.clear()

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """IQL's update where `awr_actions` is "replay"; with "composite", IQL's V and Q losses and
        the AWR loss (IQL eq. 7) on actions of the composed policy."""
        if self.hp.awr_actions == "replay":
            return super().update_step(batch)
        net, hp = self.net, self.hp
        obs, actions = batch["obs"], batch["actions"]
        composite, choice = net.compose(obs, epsilon=1.0)
        with torch.no_grad():
            q_target = self.target_min(net.critic_target(obs, actions))
            q_target_composite = self.target_min(net.critic_target(obs, composite))
            td_target = batch["rewards"] + hp.gamma * (1.0 - batch["terminateds"]) * net.v(batch["new_obs"])
        v = net.v(obs)
        value_loss = expectile_loss(q_target - v, hp.expectile)
        q = net.critic(obs, actions)
        q_loss = critic_loss(q, td_target)
        advantage = q_target_composite - v.detach()
        actor_loss = awr_loss(net.actor.log_prob(obs, composite), advantage, hp.temperature, hp.max_weight)

        self.actor_group["lr"] = self.actor_lr()
        self.optimizer.zero_grad(set_to_none=True)
        (value_loss + q_loss + actor_loss).backward()
        self.optimizer.step()
        soft_update_(net.critic_target.parameters(), net.critic.parameters(), hp.tau)
        return {
            "value_loss": value_loss.detach(),
            "critic_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q.detach().mean(),
            "v_mean": v.detach().mean(),
            "advantage_mean": advantage.mean(),
            "offline_policy_share": (choice == 0).float().mean(),
        }
