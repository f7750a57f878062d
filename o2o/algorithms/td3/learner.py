"""TD3's losses, in the paper's order.

Twin Delayed DDPG — Fujimoto, van Hoof, Meger. "Addressing Function Approximation Error in
Actor-Critic Methods", ICML 2018, arXiv:1802.09477. Checked against sfujim/TD3 (`TD3.py`,
`main.py`) and CORL `algorithms/offline/td3_bc.py` (whose TD3 part is the same update).

Every update fits the twin critics to the clipped double-Q target at a smoothed target action;
every `policy_delay`-th update also moves the actor and, after it, all target networks. The
actor loss reads the critics with detached parameters, so critic and actor losses touch
disjoint parameters and share one backward pass and one Adam. On the other updates the actor
has no gradient, and Adam leaves its parameters and moments untouched — the same as the
authors' separate optimizers.
"""

from __future__ import annotations

from typing import Any

import torch

from o2o.platform.engine import O2OLearner
from o2o.platform.networks import soft_update_


def clipped_double_q_target(
    rewards: torch.Tensor, terminateds: torch.Tensor, next_q: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Eq. 10 at eq. 15's smoothed action: y = r + γ(1 − d)·min_i Q'_i(s', ã), where
    ã = clip(π'(s') + clip(ε, −c, c), −1, 1) and `next_q` is the min over the target critics."""
    return rewards + gamma * (1.0 - terminateds) * next_q


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Algorithm 1: Σ_i E[(Q_i(s, a) − y)²] over the twin critics; with per-row `weights` (B,),
    Σ_i E[w·(Q_i(s, a) − y)²] (a method that trusts some backups less, BAQ)."""
    squared = (q - target).pow(2)
    if weights is not None:
        squared = squared * weights
    return squared.mean(-1).sum()


def deterministic_policy_loss(q_pi: torch.Tensor) -> torch.Tensor:
    """Eq. 1 (the deterministic policy gradient of Algorithm 1): −E[Q_1(s, π(s))]."""
    return -q_pi.mean()


class TD3Learner(O2OLearner):
    """One TD3 update: critics to the smoothed clipped double-Q target; every `policy_delay`-th
    update, the actor and then the Polyak-averaged targets."""

    seeds_batched = True

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        self.optimizer = self.grouped_adam(module_id, "td3", self.parameter_groups(self.module[module_id]))

    def parameter_groups(self, net: torch.nn.Module) -> list[dict[str, Any]]:
        """The one Adam's parameter groups, a network each, named for `learning_rates`: the
        critics and the actor. Methods with more networks add theirs (SPOT's VAE, OPT's Q_on)."""
        return [
            {"params": list(net.critic.parameters()), "name": "critic"},
            {"params": list(net.actor.parameters()), "name": "actor"},
        ]

    def actor_update_due(self) -> bool:
        """Delayed policy updates (§5.2): this update moves the actor and the targets when it is
        the policy_delay-th, 2·policy_delay-th, … one the learner makes (sfujim/TD3 counts from 1).
        `num_updates` spans all phases and is restored from checkpoints, so the rhythm survives
        both."""
        return (self.num_updates + 1) % self.hp.policy_delay == 0

    def actor_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) as the actor's loss reads it at its own actions: the first critic (sfujim/TD3),
        its parameters detached so the gradient reaches the actor only. (B,). A method that
        steers the actor by another critic as well (OPT) overrides this."""
        return self.net.critic(obs, actions, detach_params=True)[0]

    def td_weights(
        self, batch: dict[str, torch.Tensor], next_actions: torch.Tensor
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Per-row weights (B,) of the critics' squared TD error, given the minibatch and the
        smoothed target actions ã' at s', and their metrics: none here (every backup counts the
        same). BAQ overrides this to trust out-of-distribution backups less."""
        return None, {}

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """The actor's loss under "actor_loss", and its metrics: TD3's deterministic policy
        gradient through the first critic. TD3+BC overrides this only."""
        q_pi = self.actor_q(obs, self.net.actor(obs))
        return {"actor_loss": deterministic_policy_loss(q_pi)}

    def losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor], delayed: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One seed's critic loss at the smoothed clipped double-Q target, plus on a `delayed`
        update the actor's: their sum, and the metrics."""
        hp = self.hp
        obs, actions = batch["obs"], batch["actions"]
        with torch.no_grad():
            next_actions = net.actor_target.noisy(batch["new_obs"], hp.target_noise, hp.target_noise_clip)
            next_q = self.target_min(net.critic_target(batch["new_obs"], next_actions))
            target = clipped_double_q_target(batch["rewards"], batch["terminateds"], next_q, hp.gamma)
            td_weights, weight_metrics = self.td_weights(batch, next_actions)
        q = net.critic(obs, actions)
        q_loss = critic_loss(q, target, td_weights)
        metrics = {"critic_loss": q_loss.detach(), "q_mean": q.detach().mean(), **weight_metrics}
        if not delayed:
            return q_loss, metrics
        actor = self.actor_losses(obs, actions)
        # Reported on the policy updates only; `run_updates` averages over those.
        return q_loss + actor["actor_loss"], {**metrics, **{k: v.detach() for k, v in actor.items()}}

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net = self.net
        delayed = self.actor_update_due()
        loss, metrics = self.seed_losses(lambda n, b: self.losses(n, b, delayed), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if delayed:
            soft_update_(
                [*net.critic_target.parameters(), *net.actor_target.parameters()],
                [*net.critic.parameters(), *net.actor.parameters()],
                self.hp.tau,
            )
        return metrics
