"""The transition diffusion model that EDIS and CFDG generate with.

An EDM diffusion model over whole flattened transitions [s, a, r, s', terminal]: Karras, Aittala,
Aila, Laine. "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022,
arXiv:2206.00364 (EDM below; equations and tables are that paper's). Its use on RL transitions is
SynthER's (Lu, Ball, Teh, Parker-Holder. "Synthetic Experience Replay", NeurIPS 2023,
arXiv:2303.06614), which EDIS (Liu et al. "Energy-Guided Diffusion Sampling for Offline-to-Online
Reinforcement Learning", ICML 2024, arXiv:2407.12448) builds on; CFDG conditions the same model on
an offline/online label and samples it with classifier-free guidance (Ho & Salimans,
arXiv:2207.12598).

Defaults checked against conglu1997/SynthER (`synther/diffusion/elucidated_diffusion.py`,
`denoiser_network.py`, `norm.py`, `utils.py`, `config/resmlp_denoiser.gin`) and liuxhym/EDIS
(`diffusion/`, `configs/synther.gin`, `configs/iql_edis/*.gin`, `algorithms/iql_edis.py`):

- denoiser: SynthER's residual MLP as EDIS configures it: width 1024, 6 blocks, ReLU, no layer
  norm, a 256-wide input/noise embedding, 16 random Fourier features of c_noise;
- EDM: σ_data 1 (the data is standardized), σ ∈ [0.002, 80], ρ 7, ln σ ~ N(−1.2, 1.2²) in
  training; sampling with EDM's stochastic Heun sampler (Algorithm 2) at S_churn 80,
  S_tmin 0.05, S_tmax 50, S_noise 1.003, 128 steps — `s_churn=0` is Algorithm 1;
- training: Adam (AdamW with weight decay 0) lr 3e-4, β (0.9, 0.99), batch 256, a cosine
  learning-rate decay over the run, gradients clipped at norm 1, and samples drawn from an
  exponential moving average of the weights (decay 0.995, updated every 10 steps, with
  `ema_pytorch`'s warm-up); EDIS trains 30k steps per retrain for IQL;
- standardization per dimension, the terminal flag left raw; generated terminals thresholded
  at 0.5.

Departures: the denoiser's random Fourier frequencies are a buffer rather than a frozen
parameter (the same function, and it is saved the same way); the normalizer floors a standard
deviation at `min_std` instead of adding 1e-5 to every one, so real dimensions standardize
exactly; EDIS does not model the terminal flag at all (it writes 0 for every generated row) —
here it is a column of every row, as in SynthER's D4RL configuration, and a generator that
wants EDIS's choice overwrites it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

Guidance = Callable[[torch.Tensor, float], torch.Tensor]
"""(x, σ) → a tensor of x's shape added to the score ∇ₓ log p_σ(x) (normalized space)."""
Label = int | torch.Tensor
"""A conditioning label: one int for the whole batch, or a (n,) long tensor."""


class RetrainStopped(RuntimeError):
    """A training or sampling run ended early because its `stop` event was set (a trial that
    stops while its generator retrains)."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise `RetrainStopped` where `stop` is set."""
    if stop is not None and stop.is_set():
        raise RetrainStopped("the retrain was stopped")


@dataclass(frozen=True)
class TransitionLayout:
    """Where each part of a transition sits in a flattened row [s, a, r, s', terminal]."""

    obs_dim: int
    act_dim: int

    @property
    def width(self) -> int:
        """Columns of a row: 2·obs_dim + act_dim + 2 (reward and terminal are one each)."""
        return 2 * self.obs_dim + self.act_dim + 2

    @property
    def slices(self) -> dict[str, slice]:
        """RLlib column name → its columns in a row; also the masks EDIS's energies act on."""
        o, a = self.obs_dim, self.act_dim
        return {
            "obs": slice(0, o),
            "actions": slice(o, o + a),
            "rewards": slice(o + a, o + a + 1),
            "new_obs": slice(o + a + 1, 2 * o + a + 1),
            "terminateds": slice(2 * o + a + 1, 2 * o + a + 2),
        }

    @property
    def terminal_index(self) -> int:
        """The terminal flag's column, the one SynthER leaves unnormalized."""
        return self.width - 1

    def pack(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        new_obs: torch.Tensor,
        terminateds: torch.Tensor,
    ) -> torch.Tensor:
        """(N, width) rows from the columns; rewards and terminateds (N,) or (N, 1), the
        terminal flag as a float. Everything is cast to `obs`'s dtype."""
        n = obs.shape[0]
        parts = (obs, actions, rewards.reshape(n, 1), new_obs, terminateds.reshape(n, 1))
        return torch.cat([p.to(obs.dtype) for p in parts], dim=1)

    def unpack(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Columns of (N, width) rows: rewards and terminateds (N,), the terminal flag rounded to
        {0, 1} by `> 0.5`, as SynthER's `split_diffusion_samples` does with generated rows
        (`terminal_threshold = 0.5`); real rows' flags are already 0 or 1 and pass unchanged."""
        out = {name: x[:, cols] for name, cols in self.slices.items()}
        out["rewards"] = out["rewards"].squeeze(1)
        out["terminateds"] = (out["terminateds"].squeeze(1) > 0.5).to(x.dtype)
        return out


class TransitionNormalizer(nn.Module):
    """Per-dimension standardization x ↦ (x − mean)/std of flattened transitions.

    The diffusion model works in this normalized space, where EDM's σ_data = 1 holds. Columns
    named in `raw_dims` keep mean 0 and std 1 (SynthER's `disable_terminal_norm`: the terminal
    flag, mostly 0, would otherwise map its rare 1s tens of units away). A standard deviation is
    floored at `min_std` so a constant column maps to 0 rather than dividing by zero, and
    generated values come back near that constant. Mean and std are buffers: they move with
    `.to(device)` and are saved in `state_dict()`. Before `fit` it is the identity.
    """

    def __init__(self, dim: int, raw_dims: Sequence[int] = (), min_std: float = 1e-6) -> None:
        super().__init__()
        self.min_std = min_std
        raw = torch.zeros(dim, dtype=torch.bool)
        raw[list(raw_dims)] = True
        self.register_buffer("raw", raw)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> TransitionNormalizer:
        """Sets mean and (population) std from (N, D) rows; returns self."""
        mean = x.mean(0)
        std = x.std(0, correction=0).clamp_min(self.min_std)
        self.mean.copy_(torch.where(self.raw, 0.0, mean))
        self.std.copy_(torch.where(self.raw, 1.0, std))
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Data space → the model's space."""
        return (x - self.mean) / self.std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's space → data space; what a generator applies to `EDMDiffusion.sample`."""
        return x * self.std + self.mean


class ResidualBlock(nn.Module):
    """h ↦ h + Linear(ReLU(LayerNorm(h))), SynthER's pre-activation residual block (the norm an
    identity unless `layer_norm`)."""

    def __init__(self, width: int, layer_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.linear(torch.relu(self.norm(h)))


class ResidualMLPDenoiser(nn.Module):
    """F_θ of EDM eq. 7: the raw network that EDM's preconditioning wraps.

    h = Linear(x) + MLP(Fourier(c_noise)) [+ Embedding(label)], each `embed_dim` wide and ADDED
    (SynthER adds the noise embedding to the input projection; the label is added the same way,
    the usual classifier-free-guidance design); then Linear(embed_dim → width), `depth` residual
    blocks, [LayerNorm,] ReLU, Linear(width → D). Fourier(c) = [c, sin 2πfc, cos 2πfc] with
    `fourier_features`/2 fixed random frequencies f ~ N(0, 1) (SynthER's
    `random_fourier_features`); the noise MLP is Linear → SiLU → Linear.

    With `num_labels` > 0 the embedding has num_labels + 1 rows: the last, index `num_labels`,
    is the null label ∅ that classifier-free guidance trains by label dropout; `label=None`
    means ∅.
    """

    def __init__(
        self,
        dim: int,
        width: int = 1024,
        depth: int = 6,
        embed_dim: int = 256,
        fourier_features: int = 16,
        num_labels: int = 0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if fourier_features % 2:
            raise ValueError(f"fourier_features must be even (sine and cosine pairs), got {fourier_features}")
        self.dim = dim
        self.num_labels = num_labels
        self.register_buffer("frequencies", torch.randn(fourier_features // 2))
        self.noise_mlp = nn.Sequential(
            nn.Linear(fourier_features + 1, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.input = nn.Linear(dim, embed_dim)
        self.label_embedding = nn.Embedding(num_labels + 1, embed_dim) if num_labels > 0 else None
        self.trunk = nn.Sequential(
            nn.Linear(embed_dim, width),
            *[ResidualBlock(width, layer_norm) for _ in range(depth)],
            nn.LayerNorm(width) if layer_norm else nn.Identity(),
            nn.ReLU(),
        )
        self.out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """(n, D) inputs, (n,) noise conditions, optional (n,) long labels → (n, D)."""
        angles = 2 * math.pi * c_noise[:, None] * self.frequencies
        fourier = torch.cat([c_noise[:, None], angles.sin(), angles.cos()], dim=1)
        h = self.input(x) + self.noise_mlp(fourier)
        if self.label_embedding is not None:
            if label is None:
                label = torch.full((x.shape[0],), self.num_labels, dtype=torch.long, device=x.device)
            h = h + self.label_embedding(label)
        elif label is not None:
            raise ValueError("a label was given to a denoiser built with num_labels=0")
        return self.out(self.trunk(h))


class EDMDiffusion(nn.Module):
    """EDM's preconditioned denoiser D(x; σ), its training loss and its sampler, in normalized
    space: `sample` returns normalized rows, which the caller maps back with
    `TransitionNormalizer.unnormalize`.

    The sampler's churn (EDM Algorithm 2) is on by default with SynthER's and EDIS's settings;
    `s_churn=0` gives the deterministic Heun sampler of Algorithm 1.
    """

    def __init__(
        self,
        denoiser: ResidualMLPDenoiser,
        sigma_data: float = 1.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        label_dropout: float = 0.15,
        s_churn: float = 80.0,
        s_tmin: float = 0.05,
        s_tmax: float = 50.0,
        s_noise: float = 1.003,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.sigma_data = sigma_data
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho
        self.p_mean = p_mean
        self.p_std = p_std
        self.label_dropout = label_dropout
        self.s_churn = s_churn
        self.s_tmin = s_tmin
        self.s_tmax = s_tmax
        self.s_noise = s_noise

    @property
    def dim(self) -> int:
        """D, the width of a row."""
        return self.denoiser.dim

    @property
    def num_labels(self) -> int:
        """Conditioning labels besides ∅; 0 for an unconditional model."""
        return self.denoiser.num_labels

    def preconditioning(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """EDM Table 1: c_skip = σ_d²/(σ² + σ_d²), c_out = σ·σ_d/√(σ² + σ_d²),
        c_in = 1/√(σ² + σ_d²), c_noise = ¼·ln σ."""
        total = sigma**2 + self.sigma_data**2
        c_skip = self.sigma_data**2 / total
        c_out = sigma * self.sigma_data / total.sqrt()
        c_in = total.rsqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM Table 1: λ(σ) = (σ² + σ_d²)/(σ·σ_d)², which makes the effective target of F_θ
        unit-variance at every σ."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def denoise(
        self, x: torch.Tensor, sigma: float | torch.Tensor, label: Label | None = None, guidance_weight: float = 1.0
    ) -> torch.Tensor:
        """EDM eq. 7: D(x; σ) = c_skip·x + c_out·F_θ(c_in·x; c_noise), σ a number or (n,).

        With a `label` and `guidance_weight` w ≠ 1, classifier-free guidance:
        D̃ = D(x; ∅) + w·(D(x; c) − D(x; ∅)), both evaluated in one batched call. w = 1 is the
        plain conditional model and w = 0 the unconditional one. Since ε = (x − D)/σ and the score
        (D − x)/σ² are affine in D, the same w mixes ε's and scores; the CFDG reviews' form
        ε̃ = (1 + w′)·ε(c) − w′·ε(∅) is this one with w′ = w − 1. Without a label, a conditional
        model is evaluated at ∅, and a w other than 1 is refused (it could not take effect).
        """
        if label is None and guidance_weight != 1.0:
            raise ValueError(f"guidance_weight {guidance_weight} needs a label to guide toward; without one it has no effect")
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(n)
        labels = None if label is None else torch.as_tensor(label, dtype=torch.long, device=x.device).expand(n)
        if labels is not None and guidance_weight != 1.0:
            null = torch.full_like(labels, self.num_labels)
            both = self._preconditioned(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([labels, null]))
            conditional, unconditional = both.chunk(2)
            return unconditional + guidance_weight * (conditional - unconditional)
        return self._preconditioned(x, sigma, labels)

    def _preconditioned(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """EDM eq. 7 for (n,) σ and (n,) labels (None: ∅ or unconditional)."""
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        return c_skip[:, None] * x + c_out[:, None] * self.denoiser(c_in[:, None] * x, c_noise, labels)

    def loss(
        self, x0: torch.Tensor, label: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """EDM eq. 2 with Table 1's choices: E_{σ,n}[λ(σ)·‖D(x0 + σn; σ) − x0‖²/D], ln σ ~
        N(P_mean, P_std²), n ~ N(0, I), on a batch of normalized rows (the squared error is a
        mean over the D columns, as in SynthER).

        A conditional model takes (n,) long labels; each is replaced by ∅ with probability
        `label_dropout`, so one network learns D(x; c) and D(x; ∅) together (classifier-free
        guidance). `label=None` trains every row at ∅.
        """
        n = x0.shape[0]
        sigma = (self.p_mean + self.p_std * torch.randn(n, generator=generator, device=x0.device, dtype=x0.dtype)).exp()
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        if label is not None and self.num_labels > 0:
            dropped = torch.rand(n, generator=generator, device=x0.device) < self.label_dropout
            label = torch.where(dropped, self.num_labels, label)
        denoised = self._preconditioned(x0 + sigma[:, None] * noise, sigma, label)
        return (self.loss_weight(sigma) * (denoised - x0).pow(2).mean(1)).mean()

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """EDM eq. 5: σ_i = (σ_max^{1/ρ} + i/(N − 1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N, then
        σ_N = 0: N + 1 float64 values on the CPU, from σ_max down to σ_min and 0."""
        if num_steps < 2:
            raise ValueError(f"EDM's discretisation needs at least 2 steps, got {num_steps}")
        inv_rho = 1.0 / self.rho
        i = torch.arange(num_steps, dtype=torch.float64)
        lo, hi = self.sigma_min**inv_rho, self.sigma_max**inv_rho
        steps = (hi + i / (num_steps - 1) * (lo - hi)) ** self.rho
        return torch.cat([steps, steps.new_zeros(1)])

    @torch.no_grad()
    def sample(
        self,
        n: int,
        num_steps: int = 128,
        guidance: Guidance | None = None,
        label: Label | None = None,
        guidance_weight: float = 1.0,
        generator: torch.Generator | None = None,
        stop: threading.Event | None = None,
    ) -> torch.Tensor:
        """n rows in normalized space by EDM's 2nd-order Heun sampler (Algorithm 2; Algorithm 1
        when `s_churn` is 0), all n in one batch; unnormalize them with the normalizer the model
        was trained with.

        The probability-flow ODE (EDM eq. 4 with s(t) = 1, σ(t) = t) is dx/dσ = −σ·∇ₓ log p_σ(x),
        with score ∇ₓ log p_σ(x) = (D(x; σ) − x)/σ². `guidance(x, σ)`, when given, is added to
        that score at every evaluation, so the derivative becomes (x − D)/σ − σ·guidance(x, σ);
        it is called with gradients enabled (an energy's ∇ₓ needs them), everything else runs
        without. EDIS instead adds its clipped, scaled energy gradient g directly to (x − D)/σ;
        a generator reproduces that with guidance = −g/σ.

        `label` and `guidance_weight` select classifier-free guidance (see `denoise`). The initial
        noise and the churn noise come from `generator`, which must live on the model's device:
        the same seed gives the same rows. Setting `stop` ends the run at its next step
        (`RetrainStopped`).
        """
        device = self.denoiser.out.weight.device
        dtype = self.denoiser.out.weight.dtype
        sigmas = self.sigmas(num_steps).tolist()
        gamma_churn = min(self.s_churn / num_steps, math.sqrt(2) - 1)
        x = sigmas[0] * torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            check_stop(stop)
            # Churn (Algorithm 2, lines 4-6): raise the noise level to σ̂ = σ(1 + γ) by adding fresh noise.
            gamma = gamma_churn if self.s_tmin <= sigma <= self.s_tmax else 0.0
            sigma_hat = sigma * (1 + gamma)
            if gamma > 0:
                eps = self.s_noise * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
                x = x + math.sqrt(sigma_hat**2 - sigma**2) * eps
            slope = self._slope(x, sigma_hat, guidance, label, guidance_weight)
            x_next = x + (sigma_next - sigma_hat) * slope
            if sigma_next > 0:  # Heun's correction (lines 9-11); the last step to σ = 0 is Euler's
                slope_next = self._slope(x_next, sigma_next, guidance, label, guidance_weight)
                x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
            x = x_next
        return x

    def _slope(
        self, x: torch.Tensor, sigma: float, guidance: Guidance | None, label: Label | None, guidance_weight: float
    ) -> torch.Tensor:
        """dx/dσ = −σ·(score + guidance) = (x − D(x; σ))/σ − σ·guidance(x, σ)."""
        slope = (x - self.denoise(x, sigma, label, guidance_weight)) / sigma
        if guidance is not None:
            with torch.enable_grad():
                extra = guidance(x, sigma)
            slope = slope - sigma * extra.detach()
        return slope


def train_diffusion(
    model: EDMDiffusion,
    normalizer: TransitionNormalizer,
    data: torch.Tensor,
    steps: int,
    batch_size: int = 256,
    lr: float = 3e-4,
    generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
    grad_clip: float = 1.0,
    ema_decay: float = 0.995,
    ema_every: int = 10,
    ema_warmup: int = 100,
    split: int | None = None,
    stop: threading.Event | None = None,
) -> dict[str, float]:
    """Fits `normalizer` on `data` (N, D) and trains `model` for `steps` Adam steps on minibatches
    drawn uniformly with replacement; `labels` (N,) long for a conditional model. Returns
    `loss` (the mean training loss over the last min(steps, 100) steps), `seconds` (wall time,
    normalizer included) and `steps_per_s`.

    As SynthER's and EDIS's trainer: Adam with β = (0.9, 0.99) and no weight decay, the learning
    rate decayed to 0 by a cosine over the run, gradients clipped to norm `grad_clip`, and an
    exponential moving average of the weights that the model holds when this returns (both
    repositories sample from the EMA model). The EMA follows `ema_pytorch` as they use it: every
    `ema_every` steps, a plain copy up to step `ema_warmup`, then decay
    min(ema_decay, 1 − (1 + t)^(−2/3)) at t steps past the warm-up.

    With `split`, rows [0, split) and [split, N) each fill half of every minibatch (CFDG's
    offline and online rows: the online label is learned however few online rows there are).

    `generator` (on the model's device) draws the minibatch indices, noise levels, noise and
    label dropout, so a seeded run repeats exactly. This is what a generator calls at each
    retrain, on a freshly built model; setting `stop` ends it at its next step (`RetrainStopped`).
    """
    start = time.perf_counter()
    normalizer.fit(data)
    x = normalizer.normalize(data)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    ema = [p.detach().clone() for p in params]
    losses = []
    for step in range(steps):
        check_stop(stop)
        if split is None:
            idx = torch.randint(x.shape[0], (batch_size,), generator=generator, device=x.device)
        else:
            half = batch_size // 2
            idx = torch.cat(
                [
                    torch.randint(split, (half,), generator=generator, device=x.device),
                    torch.randint(split, x.shape[0], (batch_size - half,), generator=generator, device=x.device),
                ]
            )
        loss = model.loss(x[idx], None if labels is None else labels[idx], generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
        if step % ema_every == 0:
            with torch.no_grad():
                past = step - ema_warmup - 1
                decay = 0.0 if past <= 0 else min(ema_decay, 1.0 - (1.0 + past) ** (-2.0 / 3.0))
                for average, p in zip(ema, params):
                    average.lerp_(p, 1.0 - decay)
    with torch.no_grad():
        for average, p in zip(ema, params):
            p.copy_(average)
    final = torch.stack(losses[-100:]).mean().item()
    seconds = time.perf_counter() - start
    return {"loss": final, "seconds": seconds, "steps_per_s": steps / seconds}
