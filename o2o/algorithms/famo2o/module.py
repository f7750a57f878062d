"""FamO2O's networks: the balance model π_b(β|s), and the encoding of β that turns the base's
policy into the universal policy π_u(a | s, enc β)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from o2o.platform.module import O2OModule
from o2o.platform.networks import TanhGaussianActor


def encode_beta(beta: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """The sinusoidal encoding the universal policy reads β through (the authors'
    `sin_cos_skill_func`, the transformer's positional encoding): for i < d/2,
    enc_2i = sin(β / n^(2i/d)), enc_2i+1 = cos(β / n^(2i/d)). β (B,) → (B, d)."""
    i = torch.arange(dim // 2, dtype=beta.dtype, device=beta.device)
    angles = beta.unsqueeze(-1) / base ** (2.0 * i / dim)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class BalanceModel(nn.Module):
    """π_b(β|s): a 1-D tanh-Gaussian u ∈ (−1, 1) mapped onto [β_lo, β_hi] by
    β = β_lo + (u + 1)/2 · (β_hi − β_lo). Its log-density is u's, as in the authors' code (the
    map's Jacobian is a constant, so only the entropy target's units depend on it).

    Departures from the released code: the standard deviation depends on the state (the CQL
    variant's; the IQL variant's is a free parameter), and the CQL variant's map is the one above
    (its code maps u by β_lo + u·(β_hi − β_lo), which reaches below β_lo)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], beta_range: Sequence[float]) -> None:
        super().__init__()
        self.policy = TanhGaussianActor(obs_dim, 1, hidden)
        self.low, self.high = float(beta_range[0]), float(beta_range[1])

    def to_range(self, u: torch.Tensor) -> torch.Tensor:
        """(…, 1) in (−1, 1) → (…,) in [β_lo, β_hi]."""
        return (self.low + (u + 1.0) * 0.5 * (self.high - self.low)).squeeze(-1)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised β ~ π_b(·|s) (B,) and its log-density (B,)."""
        u, logp = self.policy.sample(obs)
        return self.to_range(u), logp

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The β the policy acts with in state s (B,): π_b's mode, as the authors act."""
        return self.to_range(self.policy.deterministic(obs))


class FamO2OModule(O2OModule):
    """Mixin over a base's module: the base's actor reads [s, enc β] (it is the universal
    policy), the balance model rides along to the EnvRunner, and acting picks β = mode π_b(s)
    and then the base's action for [s, enc β]. The learner also holds log α_b."""

    def policy_input_dim(self) -> int:
        return super().policy_input_dim() + self.model_config["beta_encoding_dim"]

    def setup(self) -> None:
        super().setup()
        cfg = self.model_config
        obs_dim = self.observation_space.shape[0]
        self.balance = BalanceModel(obs_dim, cfg["hidden_sizes"], cfg["beta_range"])
        if not self.inference_only:
            initial = math.log(cfg["initial_balance_temperature"])
            self.log_balance_temperature = nn.Parameter(torch.tensor(initial))

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "log_balance_temperature"]

    def universal_obs(self, obs: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """[s, enc β]: states (B, …, obs) with one β per batch row (B,) → (B, …, obs + d)."""
        cfg = self.model_config
        enc = encode_beta(beta, cfg["beta_encoding_dim"], cfg["beta_encoding_base"])
        enc = enc.view(enc.shape[0], *([1] * (obs.dim() - 2)), enc.shape[-1]).expand(*obs.shape[:-1], -1)
        return torch.cat([obs, enc], dim=-1)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return super().act(self.universal_obs(obs, self.balance.mode(obs)))

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return super().explore(self.universal_obs(obs, self.balance.mode(obs)))
