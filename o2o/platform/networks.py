"""Network building blocks every o2o method shares.

The Q-ensemble is one batched module: N critics are N slices of one weight tensor, so a forward
pass is one batched matmul per layer whatever N is (2 for TD3/SAC/IQL, 10 for RLPD and E2O).
Actors come in the three shapes the base papers use: a tanh-squashed Gaussian (SAC, CQL,
Cal-QL), a Gaussian with a tanh mean and state-independent log-std (IQL, AWAC), whose
log-likelihood of dataset actions is exact, and a deterministic tanh actor (TD3 and its kin).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def mlp(
    in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False, dropout: float = 0.0
) -> nn.Sequential:
    """A ReLU MLP; LayerNorm and dropout after each hidden layer where asked (RLPD, IQL on adroit)."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """N independent linear layers held as one (N, in, out) weight and applied in one bmm."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        # Same initialisation as nn.Linear, member by member.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """x: (N, B, in) → (N, B, out). `detach_params` lets an actor loss read Q without
        sending gradients into the critic, so all losses can share one backward pass."""
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        return torch.baddbmm(b, x, w)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with per-member affine parameters (RLPD's LayerNorm critics)."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        return F.layer_norm(x, x.shape[-1:]) * w + b


class QEnsemble(nn.Module):
    """N critics Q_i(s, a) evaluated together: input (B, obs+act) → output (N, B)."""

    def __init__(
        self, n: int, in_dim: int, hidden: Sequence[int], layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.n = n
        dims = [in_dim, *hidden]
        self.linears = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(EnsembleLayerNorm(n, w) for w in hidden) if layer_norm else None
        self.out = EnsembleLinear(n, dims[-1], 1)

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        x = torch.cat([obs, actions], dim=-1)
        x = x.unsqueeze(0).expand(self.n, *x.shape)
        for i, linear in enumerate(self.linears):
            x = linear(x, detach_params)
            if self.norms is not None:
                x = self.norms[i](x, detach_params)
            # In place: the pre-activation is a fresh tensor no backward needs, and CQL's
            # (N, 30·B, 256) stacks made the copy cost ~5% of an update.
            x = F.relu_(x)
        return self.out(x, detach_params).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """π(a|s) = tanh(N(μ(s), σ(s))): SAC's actor; actions lie in (−1, 1)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (with the tanh change of variables)."""
        mean, log_std = self(obs)
        std = log_std.exp()
        pre = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre)
        logp = (-0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2(log 2 − u − softplus(−2u)), numerically stable.
        logp = logp - (2 * (math.log(2) - pre - F.softplus(-2 * pre))).sum(-1)
        return action, logp

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class GaussianActor(nn.Module):
    """π(a|s) = N(tanh(μ(s)), σ) with a state-independent σ: IQL's and AWAC's actor, whose
    exact log-likelihood of dataset actions the advantage-weighted loss needs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean = self.mean(obs)
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.mean(obs)
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return (mean + std * torch.randn_like(mean)).clamp(-1.0, 1.0)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean(obs)


class DeterministicActor(nn.Module):
    """a = tanh(μ(s)): TD3's actor (TD3+BC, SPOT and APL build on it); exploration adds
    Gaussian noise outside the network; dropout, where asked, acts in training only (SPOT)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, dropout=dropout)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def noisy(self, obs: torch.Tensor, std: float, clip: float | None = None) -> torch.Tensor:
        """μ(s) + ε, ε ~ N(0, std²) (clipped to ±clip if given), kept in [−1, 1]."""
        action = self(obs)
        noise = torch.randn_like(action) * std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        return (action + noise).clamp(-1.0, 1.0)


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """`module` with its parameters read as constants: gradients flow through it to its inputs
    but not into its weights, so a loss that reads one network to train another (FamO2O's
    balance model through the policy) shares a backward pass with nothing it should not touch.
    Each parameter is swapped for its detached value while inside (not switched off by
    `requires_grad`), so this also holds for one seed's slices of a stacked module under `vmap`
    (`o2o.platform.seeds`), which are not leaves."""
    held = [(sub, name, p) for sub in module.modules() for name, p in sub._parameters.items() if p is not None]
    for sub, name, p in held:
        sub._parameters[name] = p.detach()
    try:
        yield module
    finally:
        for sub, name, p in held:
            sub._parameters[name] = p


@torch.no_grad()
def soft_update_(target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], tau: float) -> None:
    """Polyak averaging θ' ← (1 − τ)θ' + τθ, all tensors in one fused call."""
    torch._foreach_lerp_(list(target), list(source), tau)
