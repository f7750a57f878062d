"""CFDG's labels, and its generated rows' online/offline density ratios.

CFDG, "classifier-free diffusion generation" (arXiv:2508.06806), trains one conditional
transition diffusion model (`o2o.generators.diffusion.EDMDiffusion`) on offline and online
replay rows labelled c ∈ {OFFLINE, ONLINE}, each label dropped to the null label ∅ (index
`NUM_LABELS`) with probability 0.15; samples it with classifier-free guidance at weight w (the
model's `guidance_weight`; the reviews' w′ = w − 1), online-like and offline-like rows 8:2
(`generation_labels`); and reweights each generated row by its implicit online/offline density
ratio (`implicit_log_ratio`), normalized and clipped (`ratio_weights`); `CFDGGenerator` runs
it as a generator on any base (`o2o.generators`), the weights becoming the probabilities by
which the replay draws the generated rows. No code of the paper is
public: the estimator and the weighting below are our formulation, from the diffusion model's own
likelihood bound, so no separate classifier is trained.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from o2o.generators.base import QUALITY_ROWS, Generation, TransitionGenerator
from o2o.generators.diffusion import EDMDiffusion

OFFLINE = 0
"""The label of rows from the offline dataset."""
ONLINE = 1
"""The label of rows collected online."""
NUM_LABELS = 2
"""Labels besides ∅: the model's `num_labels`; ∅ is index 2."""

DEFAULT_SIGMAS = (0.02, 20.0, 16)
"""The default grid of `implicit_log_ratio`: 16 noise levels geometric from 0.02 to 20."""


def generation_labels(n: int, online_share: float = 0.8) -> torch.Tensor:
    """(n,) long labels to sample n rows with: round(n·online_share) ONLINE first, then OFFLINE
    (Python's `round`, halves to even). CFDG generates online-like and offline-like rows 8:2, so
    the generated set leans toward the current policy's distribution without losing the
    dataset's coverage. Deterministic: it draws nothing."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= online_share <= 1.0:
        raise ValueError(f"online_share must be in [0, 1], got {online_share}")
    online = round(n * online_share)
    return torch.cat([torch.full((online,), ONLINE), torch.full((n - online,), OFFLINE)]).long()


@torch.no_grad()
def implicit_log_ratio(
    model: EDMDiffusion,
    x: torch.Tensor,
    sigmas: torch.Tensor | None = None,
    noise_draws: int = 4,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
) -> torch.Tensor:
    """log r(x) ≈ log p(x | ONLINE) − log p(x | OFFLINE) for (n, D) normalized rows, from the
    difference of the two conditional denoising errors; (n,) float on x's device.

    The diffusion ELBO (Song, Durkan, Murray, Ermon 2021, arXiv:2101.09258, Thm. 1) for EDM's
    variance-exploding process x_σ = x + σn, σ(t) = t, g² = dσ²/dσ = 2σ, with the model's score
    (D(x_σ; σ, c) − x_σ)/σ² against the perturbation kernel's ∇log N(x_σ; x, σ²) = −(x_σ − x)/σ²:

        −log p_c(x) ≈ ½ ∫ 2σ·E_n‖(D(x + σn; σ, c) − x)/σ²‖² dσ + C = ∫ σ⁻³·E_n‖D(x + σn; σ, c) − x‖² dσ + C,

    up to the gap between the ELBO and the likelihood, C the same for both labels (the prior
    term and the kernel's own score term do not depend on the model). Hence

        log r(x) ≈ ∫ σ⁻³·E_n[‖D_off − x‖² − ‖D_on − x‖²] dσ = ∫ σ⁻²·E_n[‖D_off − x‖² − ‖D_on − x‖²] d ln σ,

    D_c = D(x + σn; σ, c) evaluated at the plain conditional model (guidance weight 1). With the
    exact denoisers of two Gaussians N(μ_c, s²I), E[D_c] − x = σ²(μ_c − x)/(s² + σ²) and the
    integral is exactly (‖x − μ_off‖² − ‖x − μ_on‖²)/(2s²), the true log ratio (VDM's form of the
    same bound, Kingma et al. 2021, gives the same weight: −½·dSNR/dσ = σ⁻³).

    The integral is evaluated by the trapezoid rule in ln σ on `sigmas` (increasing, > 0;
    default 16 values geometric from 0.02 to 20). The ends are cut: below 0.02 both denoisers
    return x up to rounding (c_skip → 1) and σ⁻² amplifies that rounding and the network's error
    into noise, while the true integrand vanishes there (like σ²/s⁴ in a dimension of normalized
    width s, so the cut loses a share ≈ 0.02²/s² of that dimension's term); above 20 both
    denoisers predict their label's mean and σ⁻² shrinks the remaining constant difference Δ
    (the tail beyond adds ≈ Δ/(2·20²)), at noise levels EDM's training (ln σ ~ N(−1.2, 1.2²))
    barely visits. Each σ takes `noise_draws` draws of n ~ N(0, I), shared between the two labels
    (common random numbers) and taken in antithetic pairs (n, −n). Writing D_c − x = a_c + b with
    b the label-independent noise part (≈ σn at small σ), the difference of the errors is
    ‖a_off‖² − ‖a_on‖² + 2(a_off − a_on)·b: the shared draws cancel ‖b‖², by far the largest term
    at small σ, and b is to first order odd in n, so each pair cancels the cross term (exactly for
    the Gaussian denoisers above; on a trained 2-D toy it cuts the per-row standard deviation of
    a ratio of ~57 nats from ~3.8 to ~0.3 at the same cost). Norms are summed over the D columns
    (a log density of the whole row).

    Rows are processed in chunks of `batch_size`; each denoiser call evaluates one σ, all draws
    and both labels of a chunk (2·noise_draws·batch_size rows). The noise comes from `generator`
    (on x's device): the same seed and `batch_size` give the same values.
    """
    if model.num_labels != NUM_LABELS:
        raise ValueError(f"the density ratio needs a model conditioned on OFFLINE and ONLINE (num_labels {NUM_LABELS}), got {model.num_labels}")
    if noise_draws < 2 or noise_draws % 2:
        raise ValueError(f"noise_draws must be even and >= 2 (antithetic pairs), got {noise_draws}")
    if sigmas is None:
        low, high, count = DEFAULT_SIGMAS
        sigmas = torch.linspace(math.log(low), math.log(high), count, dtype=torch.float64).exp()
    sigmas = sigmas.to(device=x.device, dtype=x.dtype)
    if sigmas.dim() != 1 or len(sigmas) < 2 or not bool((sigmas > 0).all()) or not bool((sigmas.diff() > 0).all()):
        raise ValueError("sigmas must be at least 2 positive, increasing noise levels")
    steps = sigmas.log().diff()
    trapezoid = torch.zeros_like(sigmas)
    trapezoid[:-1] += steps / 2
    trapezoid[1:] += steps / 2
    factors = trapezoid / sigmas**2
    labels = torch.tensor([OFFLINE, ONLINE], device=x.device)
    out = []
    for chunk in x.split(batch_size):
        m, d = chunk.shape
        total = torch.zeros(m, dtype=x.dtype, device=x.device)
        for sigma, factor in zip(sigmas, factors):
            noise = torch.randn((noise_draws // 2, m, d), generator=generator, device=x.device, dtype=x.dtype)
            noise = torch.cat([noise, -noise])
            noisy = (chunk + sigma * noise).reshape(1, noise_draws * m, d).expand(2, -1, -1)
            both = model._preconditioned(
                noisy.reshape(-1, d),
                sigma.expand(2 * noise_draws * m),
                labels.repeat_interleave(noise_draws * m),
            )
            error = (both.reshape(2, noise_draws, m, d) - chunk).pow(2).sum(-1).mean(1)
            total += factor * (error[0] - error[1])
        out.append(total)
    return torch.cat(out)


def ratio_weights(log_ratio: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
    """Per-row weights from log density ratios, mean 1 and within [1/clip, clip]:

        w_i = clamp(exp(log r_i − s), 1/clip, clip),  s such that mean_i w_i = 1,

    which is s = logmeanexp(log r) = logsumexp(log r) − ln n (w_i = r_i / mean r) when no weight
    reaches a bound. Normalized so the generated set keeps its size in expectation (Σ w_i = n);
    clipped so a few rows cannot dominate: the estimated ratio of a row in a region one label
    never visits is unbounded, and a handful of such rows would otherwise take nearly all draws.

    Clipping once and renormalizing would break the bound whenever many rows reach the floor
    (their mean drops below 1 and dividing by it lifts the top rows past `clip`: on a 2-D toy
    whose log ratios span ±60 nats, clip 10 gave weights of 59). So s is the root of the
    nonincreasing mean(clamp(exp(log r − s), ·)), found by bisection in float64 between
    min(log r) − ln clip (every weight at clip, mean ≥ 1) and max(log r) + ln clip (every weight
    at 1/clip, mean ≤ 1); 64 halvings reach float64 resolution. Shifting in log space keeps
    ratios of hundreds of nats from overflowing.

    The platform applies the weights as the generated rows' sampling probabilities
    (`ReplayStore.set_generated(rows, weights)`): drawing a row ∝ w_i has the same expected loss
    as weighting a uniform draw's loss by w_i, and needs no change to the base algorithm.
    """
    if clip < 1:
        raise ValueError(f"clip must be >= 1 (weights are clipped to [1/clip, clip]), got {clip}")
    log_r = log_ratio.double()
    bound = math.log(clip)
    low, high = log_r.min() - bound, log_r.max() + bound

    def weights(shift: torch.Tensor) -> torch.Tensor:
        return (log_r - shift).exp().clamp(1 / clip, clip)

    for _ in range(64):
        mid = (low + high) / 2
        if weights(mid).mean() > 1:
            low = mid
        else:
            high = mid
    return weights((low + high) / 2).to(log_ratio.dtype)


class CFDGGenerator(TransitionGenerator):
    """The CFDG generator: a conditional model on offline rows (label OFFLINE) and online rows
    (ONLINE), each filling half of every training minibatch; `generated_samples` rows sampled with
    classifier-free guidance at `guidance_weight`, `online_share` of them online-like; each
    weighted by its clipped implicit density ratio, which the replay draws them by."""

    name = "cfdg"
    num_labels = NUM_LABELS

    def training_labels(self, n_offline: int, n_online: int) -> dict[str, Any]:
        """OFFLINE for the offline rows, ONLINE for the online ones, each filling half of every
        training minibatch."""
        labels = torch.cat(
            [
                torch.full((n_offline,), OFFLINE, dtype=torch.long, device=self.device),
                torch.full((n_online,), ONLINE, dtype=torch.long, device=self.device),
            ]
        )
        return {"labels": labels, "split": n_offline}

    def generate(self, online: torch.Tensor, policy_actions: torch.Tensor | None) -> Generation:
        cfg = self.config
        labels = generation_labels(cfg.generated_samples, cfg.online_share).to(self.device)
        rows = self.sample(cfg.generated_samples, label=labels, guidance_weight=cfg.guidance_weight)
        log_ratio = implicit_log_ratio(self.model, rows, generator=self.rng)
        weights = ratio_weights(log_ratio, cfg.ratio_clip)
        reference = self.sample(min(QUALITY_ROWS, cfg.generated_samples))  # at ∅: the unguided model
        online_like = labels == ONLINE
        metrics = {
            "log_ratio_online_like": float(log_ratio[online_like].mean()) if online_like.any() else float("nan"),
            "log_ratio_offline_like": float(log_ratio[~online_like].mean()) if (~online_like).any() else float("nan"),
            "weight_ess": float(weights.sum() ** 2 / (weights.pow(2).sum() * len(weights))),
        }
        return Generation(self.unnormalized(rows), weights, self.unnormalized(reference), metrics)
