"""APL's per-update buffer choice and its two actor losses; the rest is TD3's update.

Adaptive Policy Learning — Zheng, Luo, et al. "Adaptive Policy Learning for
Offline-to-Online Reinforcement Learning", AAAI 2023, arXiv:2303.07693. Checked against the
authors' zhan0903/APL0 (`agents/td3_bc_gc.py`, `train_offline`).

Online data are near-on-policy and trustworthy, so updates on them are optimistic (greedy:
TD3); offline-buffer data may be far from the policy, so updates on them stay pessimistic
(conservative: TD3+BC). Each gradient update flips a coin: with probability p, once the
near-on-policy online buffer holds enough transitions, it draws that buffer and uses TD3's
actor loss; otherwise it draws the offline buffer and uses TD3+BC's. The critic update is
TD3's in both cases.

The coin for update n is drawn from a generator seeded with (seed, n), so a restored trial
flips the same coins as an uninterrupted one without extra checkpoint state. In a trial of K
seeds, seed s + i flips its own coins, (s + i, n), on its own online buffer: the coins of its
one-seed trial.
"""

from __future__ import annotations

import numpy as np
import torch

from o2o.algorithms.td3bc.learner import TD3BCLearner, behavior_cloning_loss, q_normalizer, td3_bc_actor_loss
from o2o.platform.replay import Sampling


def draws_online_buffer(coin: float, probability: float, online_rows: int, min_online_rows: int) -> bool:
    """APL's buffer choice for one update (`train_offline`: `p_t < p_online and
    replay_buffer_online.num_steps_can_sample() > 10000`): the online buffer when it holds more
    than `min_online_rows` transitions and the coin u ~ U[0, 1) falls below p."""
    return online_rows > min_online_rows and coin < probability


def actor_bc_weight(optimistic: torch.Tensor, bc_weight: float) -> torch.Tensor:
    """w in the actor loss −λ·E[Q(s, π(s))] + w·E[(π(s) − a)²]: 0 on an online-buffer batch
    (`optimistic` 1; TD3's loss with Q scaled by λ, as `td3_bc_gc.py` keeps λ there),
    `bc_weight` on an offline-buffer batch (`optimistic` 0; pessimistic: TD3+BC, eq. 3 of
    Fujimoto & Gu)."""
    return bc_weight * (1.0 - optimistic)


class APLLearner(TD3BCLearner):
    """TD3's update whose batch and actor loss follow APL's per-update buffer choice."""

    seeds_batched = True

    def build(self) -> None:
        super().build()
        self._flags = (torch.zeros((), device=self._device), torch.ones((), device=self._device))
        """0 and 1 as device scalars for the buffer choices (no host copy per update)."""
        self.optimistic: torch.Tensor | None = None
        """1 where this update's minibatch came from the online buffer, else 0: 0-d, the
        seed's own while its losses are computed."""

    def update_sampling(self, sampling: Sampling, lane: int) -> Sampling:
        """The online buffer (newest `near_on_policy_size` rows) with probability p once it holds
        more than `min_online_rows` transitions, else the phase's rule (the offline buffer)."""
        hp = self.hp
        held = min(self.lanes[lane].n_online, hp.near_on_policy_size)
        coin = float(np.random.default_rng((int(self.config.seed or 0) + lane, self.num_updates)).random())
        if draws_online_buffer(coin, hp.online_update_probability, held, hp.min_online_rows):
            return Sampling("online", online_window=hp.near_on_policy_size)
        return sampling

    def losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor], delayed: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD3+BC's losses, the actor's with its BC weight from the seed's buffer choice."""
        self.optimistic = batch["optimistic"]
        try:
            return super().losses(net, batch, delayed)
        finally:
            self.optimistic = None

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """GCTD3BC's actor loss on this update's batch: −λ·E[Q(s, π(s))] + w·E[(π(s) − a)²], λ
        from TD3+BC's eq. 4, w from `actor_bc_weight` (0 on online-buffer batches)."""
        assert self.optimistic is not None, "the buffer choice is read inside an update"
        pi = self.net.actor(obs)
        q_pi = self.net.critic(obs, pi, detach_params=True)[0]
        scale = q_normalizer(q_pi, self.hp.alpha)
        bc = behavior_cloning_loss(pi, actions)
        weight = actor_bc_weight(self.optimistic, self.hp.bc_weight)
        return {"actor_loss": td3_bc_actor_loss(q_pi, scale, bc, weight), "bc_loss": bc, "q_scale": scale}

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """TD3's update on the batch with each seed's buffer choice beside it; `optimistic`
        reports the share of updates that drew the online buffer."""
        flags = [self._flags[int(s.rule == "online")] for s in self.samplings]
        optimistic = flags[0] if self.num_seeds == 1 else torch.stack(flags)
        metrics = super().update_step({**batch, "optimistic": optimistic})
        return {**metrics, "optimistic": optimistic}
