"""TD3+BC's actor loss; everything else is TD3's update.

TD3+BC — Fujimoto, Gu. "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021,
arXiv:2106.06860. Checked against sfujim/TD3_BC (`TD3_BC.py`) and CORL
`algorithms/offline/td3_bc.py`.

The critics, targets, smoothing noise and delayed updates are TD3's (`TD3Learner`); the actor
loss adds a behaviour-cloning term to a Q term normalized by the batch's mean |Q|, so α sets
their balance whatever the scale of the rewards.
"""

from __future__ import annotations

import torch

from o2o.algorithms.td3.learner import TD3Learner


def q_normalizer(q_pi: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 4: λ = α / ((1/N) Σ_i |Q(s_i, ·)|). As in the authors' code, Q is the first critic
    at π(s_i), and λ is detached: it rescales the Q term's gradient, it is not optimized."""
    return alpha / q_pi.detach().abs().mean()


def behavior_cloning_loss(pi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Eq. 3's BC term: E[(π(s) − a)²], averaged over the batch and the action dimensions
    (`F.mse_loss` in the authors' code)."""
    return (pi - actions).pow(2).mean()


def td3_bc_actor_loss(
    q_pi: torch.Tensor, scale: torch.Tensor, bc: torch.Tensor, bc_weight: float | torch.Tensor
) -> torch.Tensor:
    """Eq. 3, as a loss: −λ·E[Q(s, π(s))] + w·E[(π(s) − a)²], λ from eq. 4, w = `bc_weight`."""
    return -scale * q_pi.mean() + bc_weight * bc


class TD3BCLearner(TD3Learner):
    """TD3's update with TD3+BC's actor loss on the delayed updates."""

    seeds_batched = True

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 3 on the dataset's (or replay's) actions; also the BC term and λ as metrics."""
        pi = self.net.actor(obs)
        q_pi = self.actor_q(obs, pi)
        scale = q_normalizer(q_pi, self.hp.alpha)
        bc = behavior_cloning_loss(pi, actions)
        return {
            "actor_loss": td3_bc_actor_loss(q_pi, scale, bc, self.hp.bc_weight),
            "bc_loss": bc,
            "q_scale": scale,
        }
