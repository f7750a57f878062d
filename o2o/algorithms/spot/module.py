"""SPOT's networks: TD3's (a deterministic actor, twin critics, their targets) and the conditional
VAE that models the behaviour policy's density."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from o2o.algorithms.td3.module import TD3Module
from o2o.platform.networks import mlp

LOG_STD_MIN = -4.0
LOG_STD_MAX = 15.0
"""Clamp of the encoder's log-std, as the authors' `VAE.encode` ("for numerical stability")."""


class BehaviorVAE(nn.Module):
    """q_φ(z | s, a) = N(μ(s, a), σ(s, a)²) and the decoder a = tanh(D_ψ(s, z)): a conditional VAE
    of the dataset's actions (thuml/SPOT `vae.py`, after BCQ's). Actions live in [−1, 1] here, so
    the decoder's tanh is the authors' `max_action · tanh` with max_action 1."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        # One output layer for μ and log σ: the authors' two heads on a shared trunk, side by side.
        self.encoder = mlp(obs_dim + act_dim, hidden, 2 * latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden, act_dim)

    def encode(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and σ of q(z | s, a), each (..., latent_dim)."""
        mean, log_std = self.encoder(torch.cat([obs, actions], -1)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def decode(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean action for latents z, in [−1, 1]."""
        return torch.tanh(self.decoder(torch.cat([obs, z], -1)))

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, num_samples: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode (s, a), draw `num_samples` reparameterised latents per pair and decode them:
        (decoded (B, S, A), z (B, S, Z), μ (B, Z), σ (B, Z))."""
        mean, std = self.encode(obs, actions)
        z = mean.unsqueeze(1) + std.unsqueeze(1) * torch.randn(
            mean.shape[0], num_samples, self.latent_dim, device=mean.device, dtype=mean.dtype
        )
        states = obs.unsqueeze(1).expand(-1, num_samples, -1)
        return self.decode(states, z), z, mean, std


class SPOTModule(TD3Module):
    """TD3's module with the authors' actor options (dropout, output-layer init), the critics'
    output-layer init, and the behaviour VAE. EnvRunners build only the actor; acting runs it in
    eval mode (RLlib's `forward_inference`/`forward_exploration`), so dropout only acts in training,
    as the authors' `select_action` does with `actor.eval()`."""

    def setup(self) -> None:
        super().setup()
        cfg = self.model_config
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        if cfg["actor_init_w"] is not None:
            _uniform_(self.actor.net[-1].parameters(), cfg["actor_init_w"])
        if not self.inference_only:
            if cfg["critic_init_w"] is not None:
                _uniform_(self.critic.out.parameters(), cfg["critic_init_w"])
            # The targets start as copies of the networks as they now are.
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
            latent_dim = cfg["vae_latent_dim"] or 2 * act_dim
            self.vae = BehaviorVAE(obs_dim, act_dim, cfg["vae_hidden_sizes"], latent_dim)

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "vae"]


def _uniform_(params: Iterable[torch.Tensor], bound: float) -> None:
    """U(−bound, bound) on every given tensor (the authors' `weights_init_` of an output layer)."""
    with torch.no_grad():
        for p in params:
            p.uniform_(-bound, bound)
