"""EDIS's three energy functions and the guidance they give the transition diffusion sampler.

Liu et al. "Energy-Guided Diffusion Sampling for Offline-to-Online Reinforcement Learning",
ICML 2024, arXiv:2407.12448 (EDIS); defaults checked against liuxhym/EDIS (`common/energy.py`,
`diffusion/trainer.py`, `diffusion/elucidated_diffusion.py`, `algorithms/iql_edis.py`).

EDIS samples the diffusion model of `o2o.generators.diffusion`, trained on offline and online
data together, toward the online distribution by three energies, each a noise-conditioned
network E_k(x, σ) over whole rows whose gradient acts on one part of the row:

- state: the obs columns, trained with online rows as positives — generate states the current
  policy visits;
- policy: the action columns, with online rows carrying the current policy's action as positives
  — generate actions the policy would take;
- transition: the next-obs columns, with real online rows as positives — generate next states the
  environment's dynamics would produce.

Each is trained contrastively (InfoNCE, `infonce_loss`) against rows from the unguided diffusion
model, so that lower energy means "more like the positives"; at sampling time EDIS adds
g = Σ_k scale_k · mask_k ⊙ ∇ₓE_k(x, σ), clipped per row to norm √D·10, to the probability-flow
ODE's slope (x − D(x; σ))/σ. The sampler integrates σ downward, so +g in the slope moves x along
−∇ₓE: toward lower energy.

Defaults (the authors'): 3 hidden layers of 256 ReLU units per energy, Adam at lr 1e-3
(`ebm_lr`), 10 negatives per positive (`num_negative_sample`), scales 2.0 / 0.1 / 0.1 for
state / policy / transition (`ope_clip`, `pe_clip`, `te_clip`).

Departures: everything lives in the diffusion model's normalized space (the authors evaluate their
energies on unnormalized rows), the energies are conditioned on EDM's c_noise = ln(σ)/4 instead of
the index of the denoising step, and negatives are finished unguided samples noised to the group's
σ instead of the sampler's intermediate states (see `EnergyGuide.train_step`). All three energies
use the grouped loss at every level in `sigmas`: the authors' state energy instead puts a whole
batch of positives and negatives into one softmax and, with its `contrastive_step=128` over 128
steps, trains at the first level (σ_max) only; their policy and transition negatives are meant to
be inpainted around the positives' state (and action), but their mask (`mask[..., 0:condition.shape[0]]`,
the batch size, not the width) covers every column, so those negatives come out as the positives'
state (and action) followed by zeros.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from o2o.generators.diffusion import Guidance, TransitionLayout

ENERGIES = ("state", "policy", "transition")
"""EDIS's energies, in the order they are trained and their random draws are made."""
ENERGY_SCALES = {"state": 2.0, "policy": 0.1, "transition": 0.1}
"""Default guidance scale of each energy: the authors' `ope_clip`, `pe_clip`, `te_clip`."""
ENERGY_COLUMNS = {"state": "obs", "policy": "actions", "transition": "new_obs"}
"""The part of a row (a `TransitionLayout.slices` name) that each energy's gradient acts on."""
CLIP_PER_DIM = 10.0
"""A row's guidance g is clipped to norm √D·10 (the authors' `target_norm = sqrt(D) * 10`)."""


class EnergyNet(nn.Module):
    """E(x, σ): an MLP over [x, c_noise] with c_noise = ln(σ)/4 (EDM's noise conditioning) →
    one scalar energy per row. ReLU hidden layers of `hidden_sizes`, a linear output."""

    def __init__(self, dim: int, hidden_sizes: Sequence[int] = (256, 256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim + 1
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """(n, D) rows and σ (a number or (n,)) → (n,) energies."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        c_noise = sigma.log() / 4
        return self.net(torch.cat([x, c_noise[:, None]], dim=1)).squeeze(1)


def infonce_loss(positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """InfoNCE with logits −E: the mean over B groups of
    −log softmax([−E_pos, −E_neg,1, …, −E_neg,K])[pos] = E_pos + log(e^{−E_pos} + Σ_j e^{−E_neg,j}).

    Each group is one positive, (B,) `positive`, and its K negatives, (B, K) `negatives`, all at
    the same noise level; minimizing it makes the positive's energy the lowest of its group, so
    lower energy means more like the positives. The authors' KL-divergence form of the same loss
    sums over groups; the mean keeps the learning rate independent of the batch size.
    """
    logits = -torch.cat([positive[:, None], negatives], dim=1)
    return -logits.log_softmax(dim=1)[:, 0].mean()


class EnergyGuide(nn.Module):
    """EDIS's three energies (`nets`, an `nn.ModuleDict` keyed by `ENERGIES`), their Adam
    optimizers, and the guidance they give `EDMDiffusion.sample`, all in normalized space.

    `scales` maps an energy to its guidance scale; a missing name or a scale of 0 means that energy
    is neither trained nor used (its network and optimizer still exist, so every guide has the same
    state). The layout decides each energy's columns (`ENERGY_COLUMNS`).
    """

    def __init__(
        self,
        layout: TransitionLayout,
        scales: Mapping[str, float] = ENERGY_SCALES,
        hidden_sizes: Sequence[int] = (256, 256, 256),
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        unknown = set(scales) - set(ENERGIES)
        if unknown:
            raise ValueError(f"unknown energies {sorted(unknown)}; EDIS's are {ENERGIES}")
        negative = {name: s for name, s in scales.items() if s < 0}
        if negative:
            raise ValueError(f"guidance scales must be >= 0 (0 switches an energy off), got {negative}")
        self.layout = layout
        self.scales = {name: float(scales.get(name, 0.0)) for name in ENERGIES}
        self.columns = {name: layout.slices[ENERGY_COLUMNS[name]] for name in ENERGIES}
        self.nets = nn.ModuleDict({name: EnergyNet(layout.width, hidden_sizes) for name in ENERGIES})
        self.optimizers = {name: torch.optim.Adam(self.nets[name].parameters(), lr=lr) for name in ENERGIES}

    @property
    def active(self) -> tuple[str, ...]:
        """The energies with a non-zero scale, in `ENERGIES` order."""
        return tuple(name for name in ENERGIES if self.scales[name] > 0)

    def train_step(
        self,
        positives: Mapping[str, torch.Tensor],
        negatives: torch.Tensor,
        sigmas: torch.Tensor,
        negatives_per_positive: int = 10,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """One Adam step on `infonce_loss` for each active energy; returns `{name}_loss` and
        `{name}_accuracy` (the share of groups whose positive has the lowest energy) for each.

        `positives[name]` are (B, D) normalized rows: real online rows for the state and transition
        energies, online rows whose action columns hold the current policy's action for the policy
        energy (the caller builds them). `negatives` is a pool of M ≥ B·K normalized rows drawn
        from the unguided diffusion model, K = `negatives_per_positive`; `sigmas` the noise levels
        to train at, all > 0 (the sampler's, e.g. `model.sigmas(N)[:-1]`). Per energy, from
        `generator` (on the rows' device) and in this order: B·K negatives drawn uniformly with
        replacement, one σ per group drawn uniformly from `sigmas`, then the noise n of the
        positives and of the negatives; every row of a group is x + σ·n at its group's σ.

        Departure: the authors take negatives from the sampler's intermediate states at a few
        denoising steps, and noise the positives to that step's σ. Here the negatives are finished
        unguided samples noised to the group's σ, which for an exact sampler has the same marginal
        p_σ as the intermediate state, needs one pool of samples for every σ and energy, and puts
        positives and negatives through the same forward noising.
        """
        missing = [name for name in self.active if name not in positives]
        if missing:
            raise ValueError(f"no positives for the active energies {missing}")
        if not bool((sigmas > 0).all()):
            raise ValueError("every training σ must be > 0 (drop the sampler's final σ = 0)")
        metrics: dict[str, float] = {}
        for name in self.active:
            rows = positives[name]
            b, d, k = rows.shape[0], rows.shape[1], negatives_per_positive
            if negatives.shape[0] < b * k:
                raise ValueError(f"{b} positives × {k} negatives need a pool of >= {b * k} rows, got {negatives.shape[0]}")
            device, dtype = rows.device, rows.dtype
            picked = negatives[torch.randint(negatives.shape[0], (b * k,), generator=generator, device=negatives.device)]
            picked = picked.to(device=device, dtype=dtype).reshape(b, k, d)
            levels = sigmas.to(device=device, dtype=dtype)
            sigma = levels[torch.randint(levels.shape[0], (b,), generator=generator, device=device)]
            pos_noise = torch.randn(rows.shape, generator=generator, device=device, dtype=dtype)
            neg_noise = torch.randn(picked.shape, generator=generator, device=device, dtype=dtype)
            noisy_pos = rows + sigma[:, None] * pos_noise
            noisy_neg = picked + sigma[:, None, None] * neg_noise
            net = self.nets[name]
            e_pos = net(noisy_pos, sigma)
            e_neg = net(noisy_neg.reshape(b * k, d), sigma.repeat_interleave(k)).reshape(b, k)
            loss = infonce_loss(e_pos, e_neg)
            optimizer = self.optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            metrics[f"{name}_loss"] = loss.item()
            metrics[f"{name}_accuracy"] = (e_pos[:, None] < e_neg).all(dim=1).float().mean().item()
        return metrics

    def guidance(self) -> Guidance:
        """The `guidance` argument of `EDMDiffusion.sample` that reproduces EDIS's guided sampler.

        EDIS computes g(x, σ) = Σ_k scale_k · mask_k ⊙ ∇ₓE_k(x, σ) (mask_k zeroes every column
        outside energy k's part), scales each row's g down to norm √D·10 where it is longer, and
        adds it to the ODE slope: dx/dσ = (x − D(x; σ))/σ + g. `EDMDiffusion._slope` computes
        (x − D)/σ − σ·guidance(x, σ), so the returned callable is guidance = −g/σ. Added to the
        score, −g/σ = −(scale/σ)·∇ₓE: lower energy becomes more likely, more strongly at low noise.

        The callable takes x detached (it differentiates a copy with gradients enabled, so it works
        inside `torch.no_grad()`), leaves no gradient on the networks, and returns a tensor that
        does not require grad. The active energies and scales are read when it is called.
        """
        limit = math.sqrt(self.layout.width) * CLIP_PER_DIM

        def guide(x: torch.Tensor, sigma: float) -> torch.Tensor:
            g = torch.zeros_like(x)
            with torch.enable_grad():
                for name in self.active:
                    inputs = x.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(self.nets[name](inputs, sigma).sum(), inputs)
                    cols = self.columns[name]
                    g[:, cols] += self.scales[name] * grad[:, cols]
            norm = g.norm(dim=1, keepdim=True)
            g = g * (limit / norm).clamp(max=1.0)
            return -g / torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1)

        return guide

    def get_state(self) -> dict:
        """A detached copy of every network's and optimizer's state, for a checkpoint (plain dicts
        of tensors and numbers; it pickles). The layout, scales, widths and learning rate are
        construction arguments, not state."""
        return copy.deepcopy(
            {
                "nets": {name: self.nets[name].state_dict() for name in ENERGIES},
                "optimizers": {name: self.optimizers[name].state_dict() for name in ENERGIES},
            }
        )

    def set_state(self, state: dict) -> None:
        """Restores what `get_state` returned, into a guide built with the same layout and widths.
        `state` is left as it was: an optimizer's `load_state_dict` keeps the given moment tensors
        and would update them in place on the next step, so it is given a copy."""
        for name in ENERGIES:
            self.nets[name].load_state_dict(state["nets"][name])
            self.optimizers[name].load_state_dict(copy.deepcopy(state["optimizers"][name]))
