"""What every generator does at a retrain: a fresh transition diffusion model trained on the
replay's offline and online rows, then rows generated for the replay's generated region.

A generator lives in the learner (`o2o.platform.engine.O2OLearner`), on the learner's device,
and works in the store's space (standardized states and rescaled rewards where the trial sets
them, actions in [−1, 1]): what it generates goes into the store as it comes out. The engine
decides when it retrains (every `generator_retrain_env_steps` online env steps) and how
generated rows enter minibatches (`generator_schedule`, `generated_fraction`); a generator
decides how it trains and samples (EDIS: energy guidance, `o2o.generators.edis`; CFDG:
classifier-free guidance and density-ratio weights, `o2o.generators.cfdg`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from o2o.generators.diffusion import EDMDiffusion, ResidualMLPDenoiser, TransitionLayout, TransitionNormalizer, train_diffusion
from o2o.generators.quality import frechet_distance

Policy = Callable[[torch.Tensor], torch.Tensor]
"""The learner's current deterministic policy: states (B, obs) → actions (B, act), store space."""

GENERATION_CHUNK = 10_000
"""Rows sampled per batched sampler call: bounds the sampler's activations (a 1024-wide
denoiser holds ~40 MB per 10k rows) without costing throughput."""
FRECHET_ROWS = 100_000
"""Real rows (at most) the Fréchet distances compare the generated rows with."""
QUALITY_ROWS = 1000
"""Generated and reference rows a retrain hands back for the quality metrics."""


@dataclass
class Generation:
    """What one retrain produced: `rows` (n, layout.width) for the generated region, optional
    sampling `weights` (n,), `reference` rows (unguided samples of the same model, for comparing
    guided with unguided quality), and its metrics."""

    rows: torch.Tensor
    weights: torch.Tensor | None
    reference: torch.Tensor
    metrics: dict[str, float]


class TransitionGenerator:
    """A generator: its diffusion model (rebuilt and retrained from scratch at each retrain, as
    both papers' code does) and whatever else it trains. `config` is the trial's `O2OConfig`;
    its `generator_*` fields size and schedule the model."""

    name: ClassVar[str] = ""
    rest_rule: ClassVar[str | None] = None
    """The rule the rest of a generated minibatch follows: "online" (EDIS's code draws the
    non-generated rows from its online buffer) or None, the base algorithm's own rule (CFDG)."""
    num_labels: ClassVar[int] = 0
    """Conditioning labels of the diffusion model (CFDG: offline and online)."""

    def __init__(self, config: Any, layout: TransitionLayout, device: torch.device, seed: int) -> None:
        self.config = config
        self.layout = layout
        self.device = device
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed)
        self.retrains = 0
        self.model: EDMDiffusion | None = None
        self.normalizer = TransitionNormalizer(layout.width, raw_dims=[layout.terminal_index]).to(device)

    def build_model(self) -> EDMDiffusion:
        """A freshly initialized model, its initial weights drawn from the generator's own seeded
        stream (so a trial's global RNG, and a restored trial, are not disturbed)."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.rng, device=self.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            denoiser = ResidualMLPDenoiser(
                self.layout.width,
                width=self.config.generator_width,
                depth=self.config.generator_depth,
                num_labels=self.num_labels,
            )
        return EDMDiffusion(denoiser).to(self.device)

    def train_model(self, offline: torch.Tensor, online: torch.Tensor) -> dict[str, float]:
        """A fresh model trained on every offline and online row (uniformly over their union, as
        EDIS's `train_from_redq_buffer`); a conditional generator overrides this."""
        self.model = self.build_model()
        info = train_diffusion(
            self.model,
            self.normalizer,
            torch.cat([offline, online]),
            self.config.generator_train_steps,
            batch_size=self.config.generator_batch_size,
            generator=self.rng,
        )
        return {"diffusion_loss": info["loss"], "train_s": info["seconds"]}

    def sample(self, n: int, **kwargs: Any) -> torch.Tensor:
        """n normalized rows in chunks of `GENERATION_CHUNK`; `kwargs` go to `EDMDiffusion.sample`
        (a per-row `label` tensor is split with the chunks)."""
        assert self.model is not None
        label = kwargs.pop("label", None)
        chunks = []
        for start in range(0, n, GENERATION_CHUNK):
            stop = min(start + GENERATION_CHUNK, n)
            chunk_label = label[start:stop] if isinstance(label, torch.Tensor) else label
            chunks.append(
                self.model.sample(
                    stop - start,
                    num_steps=self.config.generator_sample_steps,
                    generator=self.rng,
                    label=chunk_label,
                    **kwargs,
                )
            )
        return torch.cat(chunks)

    def retrain(self, offline: torch.Tensor, online: torch.Tensor, policy: Policy) -> Generation:
        """Train on the replay's `offline` and `online` rows (store space, (n, layout.width)) and
        generate `generated_samples` rows."""
        self.retrains += 1
        metrics = self.train_model(offline, online)
        start = time.perf_counter()
        generation = self.generate(online, policy)
        seconds = time.perf_counter() - start
        generation.metrics.update(metrics)
        generation.metrics["sample_s"] = seconds
        generation.metrics["samples_per_s"] = len(generation.rows) / max(seconds, 1e-9)
        # How close the generated rows, and the unguided reference rows, are to the real ones,
        # every column alike (model space): guidance that works moves the first toward online.
        for name, real in (("online", online), ("offline", offline)):
            if len(real) > FRECHET_ROWS:
                real = real[torch.randint(len(real), (FRECHET_ROWS,), generator=self.rng, device=self.device)]
            real = self.normalizer.normalize(real)
            generation.metrics[f"frechet_{name}"] = frechet_distance(self.normalizer.normalize(generation.rows), real)
            generation.metrics[f"reference_frechet_{name}"] = frechet_distance(self.normalizer.normalize(generation.reference), real)
        return generation

    def generate(self, online: torch.Tensor, policy: Policy) -> Generation:
        """The generator's own sampling after its model is trained (store space out)."""
        raise NotImplementedError

    def unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """Model space → store space, the terminal flag rounded to {0, 1}."""
        rows = self.normalizer.unnormalize(x)
        rows[:, self.layout.terminal_index] = (rows[:, self.layout.terminal_index] > 0.5).to(rows.dtype)
        return rows

    def get_state(self) -> dict[str, Any]:
        """The model and normalizer of the last retrain, the sampling stream, the retrain count."""
        return {
            "retrains": self.retrains,
            "rng": self.rng.get_state().cpu(),
            "model": None if self.model is None else self.model.state_dict(),
            "normalizer": self.normalizer.state_dict(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.retrains = int(state["retrains"])
        self.normalizer.load_state_dict(state["normalizer"])
        if state["model"] is not None:
            self.model = self.build_model()  # draws from the stream, which is restored next
            self.model.load_state_dict(state["model"])
        self.rng.set_state(state["rng"])
