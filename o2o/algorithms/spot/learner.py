"""SPOT's losses: the behaviour VAE's, and TD3's update with the density-regularized actor loss.

Supported Policy Optimization — Wu, Wu, Qiu, Wang, Long. "Supported Policy Optimization for
Offline Reinforcement Learning", NeurIPS 2022, arXiv:2202.06239. Checked against thuml/SPOT
(`SPOT.py` `SPOT_TD3.train`/`train_online`, `vae.py`, `train_vae.py`) and CORL
`algorithms/finetune/spot.py`.

The support constraint π(a|s) > 0 ⇒ π_β(a|s) > ε becomes a penalty on the behaviour density of
the policy's action, −log π_β(π(s)|s), estimated by a conditional VAE trained first on the
dataset (phase `vae_pretraining`) and frozen afterwards. The density term's estimate is the
VAE's β-weighted −ELBO, which bounds −log π_β from above up to a positive scale and a constant
(the authors' `elbo_loss`), or the importance-weighted bound (`iwae_loss`). Critics, targets,
smoothing noise and delayed updates are TD3's (`TD3Learner`).

One Adam holds three parameter groups (critic, actor, VAE), each at its own learning rate. The
VAE's loss touches only the VAE; the actor's density term reads the VAE with detached
parameters, so after pretraining the VAE gets no gradient and Adam leaves it untouched — the
authors' frozen VAE. Online, λ cools with the online env steps and the actor's and critics' Adam
state starts afresh (`on_phase_start`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from o2o.algorithms.td3.learner import TD3Learner
from o2o.algorithms.td3bc.learner import q_normalizer
from o2o.platform.engine import Phase


def gaussian_kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(q(z|s,a) ‖ N(0, I)) per pair, averaged over the latent dimensions as the authors do:
    −½·mean_j(1 + log σ_j² − μ_j² − σ_j²). mean, std (B, Z) → (B,)."""
    return -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean(-1)


def reconstruction_error(decoded: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """E_z‖a − D(s, z)‖² per pair, averaged over the latent samples and the action dimensions
    (the authors' `recon_loss`; `F.mse_loss` when training). decoded (B, S, A), actions (B, A) → (B,)."""
    return (decoded - actions.unsqueeze(1)).pow(2).mean(dim=(1, 2))


def negative_elbo(reconstruction: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """The β-VAE loss per pair, recon + β·KL (both averaged over their dimensions): the VAE's
    training loss (batch-averaged) and SPOT's density estimate −log π̂_β(a|s) (`elbo_loss` in
    `vae.py`). With the latent dimension 2|A| it is β/(2|A|)·(−ELBO − c) for a Gaussian decoder
    of std √(β/4): an upper bound of −log π_β(a|s), scaled, and ranking actions as −ELBO does."""
    return reconstruction + beta * kl


def importance_weighted_nll(
    actions: torch.Tensor,
    decoded: torch.Tensor,
    z: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """−log π̂_β(a|s) by importance sampling over L latents z_l ~ q(z|s,a) (`iwae_loss`):
    −(log Σ_l exp[log p(a|z_l,s) + log p(z_l) − log q(z_l|s,a)] − log L), with the decoder
    p(a|z,s) = N(D(s,z), β/4·I) and the prior p(z) = N(0, I). decoded (B, L, A), z (B, L, Z),
    mean and std (B, Z) → (B,)."""

    def log_normal(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        return (-0.5 * ((x - mu) / sigma).pow(2) - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    log_p_a = log_normal(actions.unsqueeze(1), decoded, math.sqrt(beta / 4))
    log_p_z = log_normal(z, torch.zeros_like(z), 1.0)
    log_q_z = log_normal(z, mean.unsqueeze(1), std.unsqueeze(1))
    log_weights = log_p_a + log_p_z - log_q_z
    return -(torch.logsumexp(log_weights, dim=-1) - math.log(z.shape[1]))


def cooled_support_weight(weight: float, floor: float, progress: float) -> float:
    """λ_t = λ·max(floor, 1 − t/T), t/T = `progress` (`train_online` with `lambd_cool`): linear
    from λ at the online start to floor·λ at t = (1 − floor)·T, constant after."""
    return weight * max(floor, 1.0 - progress)


def spot_actor_loss(
    q_pi: torch.Tensor, q_scale: torch.Tensor | float, neg_log_behavior: torch.Tensor, support_weight: float
) -> torch.Tensor:
    """SPOT's actor loss: −E[Q(s, π(s))]/mean|Q| + λ·E[−log π̂_β(π(s)|s)]; `q_scale` is 1/mean|Q|,
    detached (or 1 without Q normalization)."""
    return -q_scale * q_pi.mean() + support_weight * neg_log_behavior.mean()


class SPOTLearner(TD3Learner):
    """The VAE's update in `vae_pretraining`; TD3's update with SPOT's actor loss after it."""

    seeds_batched = True

    def parameter_groups(self, net: torch.nn.Module) -> list[dict[str, Any]]:
        """TD3's groups and the VAE's."""
        return [*super().parameter_groups(net), {"params": list(net.vae.parameters()), "name": "vae"}]

    def learning_rates(self) -> dict[str, float]:
        """Critics at `lr`, actor at `actor_lr` (or `lr`), VAE at `vae_lr`."""
        hp = self.hp
        return {"critic": hp.lr, "actor": hp.actor_lr or hp.lr, "vae": hp.vae_lr}

    def on_phase_start(self, phase: Phase) -> None:
        """Online: with `reset_optimizers_online`, fresh Adam state for the actor and critics
        (CORL); λ's cooling is the online `phase_overrides`."""
        super().on_phase_start(phase)
        if phase.name == "online" and self.hp.reset_optimizers_online:
            self.reset_optimizer_state({"critic", "actor"})

    def reset_optimizer_state(self, groups: set[str]) -> None:
        """Forget Adam's moments and step counts for the named parameter groups: their next step
        is a fresh Adam's first."""
        for group in self.optimizer.param_groups:
            if group["name"] in groups:
                for param in group["params"]:
                    self.optimizer.state.pop(param, None)

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert self.phase is not None, "on_phase_start() names the phase before any update"
        if self.phase.name == "vae_pretraining":
            return self.vae_update(batch)
        return super().update_step(batch)

    def vae_losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The behaviour VAE's loss on one seed's dataset pairs (`train_vae.py`): recon + β·KL."""
        obs, actions = batch["obs"], batch["actions"]
        decoded, _, mean, std = net.vae(obs, actions)
        reconstruction = reconstruction_error(decoded, actions)
        kl = gaussian_kl(mean, std)
        loss = negative_elbo(reconstruction, kl, self.hp.vae_beta).mean()
        return loss, {
            "vae_loss": loss.detach(),
            "reconstruction_loss": reconstruction.mean().detach(),
            "kl_loss": kl.mean().detach(),
        }

    def vae_update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step of the behaviour VAE."""
        loss, metrics = self.seed_losses(self.vae_losses, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return metrics

    def neg_log_behavior(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """−log π̂_β(a|s) per pair by the frozen VAE: its parameters are read detached, so the
        gradient reaches the actions (the policy) only."""
        hp = self.hp
        frozen = {name: p.detach() for name, p in self.net.vae.named_parameters()}
        decoded, z, mean, std = torch.func.functional_call(self.net.vae, frozen, (obs, actions, hp.density_samples))
        if hp.importance_weighted:
            return importance_weighted_nll(actions, decoded, z, mean, std, hp.vae_beta)
        return negative_elbo(reconstruction_error(decoded, actions), gaussian_kl(mean, std), hp.vae_beta)

    def current_support_weight(self) -> float:
        """λ now: `support_weight`, cooled by the env steps of the current phase where
        `cool_support_weight` is on (online, by default). The clock is the learner's, which
        checkpoints restore, so a resumed trial continues the schedule where it stopped."""
        hp = self.hp
        if not hp.cool_support_weight:
            return hp.support_weight
        horizon = hp.cooling_env_steps or max(self.config.online_env_steps, 1)
        return cooled_support_weight(hp.support_weight, hp.support_weight_floor, self.phase_env_steps / horizon)

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """SPOT's actor loss at π(s), through the first critic; the density term and λ as metrics."""
        pi = self.net.actor(obs)
        q_pi = self.actor_q(obs, pi)
        q_scale = q_normalizer(q_pi, 1.0) if self.hp.normalize_q else 1.0
        neg_log_behavior = self.neg_log_behavior(obs, pi)
        weight = self.current_support_weight()
        return {
            "actor_loss": spot_actor_loss(q_pi, q_scale, neg_log_behavior, weight),
            "neg_log_behavior": neg_log_behavior.mean(),
            "support_weight": torch.tensor(weight, device=q_pi.device),
        }
