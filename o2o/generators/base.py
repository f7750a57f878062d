"""What every generator does at a retrain: a fresh transition diffusion model trained on the
replay's offline and online rows, then rows generated for the replay's generated region.

A generator lives in the learner (`o2o.platform.engine.O2OLearner`), on the learner's device,
and retrains in a thread of its own (on a CUDA stream of its own on a GPU) while the trial goes
on collecting and updating: `start_retrain` snapshots what it trains on, `finish_retrain` hands
back the rows (waiting for them if they are not ready; the engine decides when they land). Only
the main thread touches torch's global random state (the model's initialization, in
`start_retrain`); the retrain draws from the generator's own stream, so its rows are the same
whatever the threads' timing. It works in the store's space (standardized states and rescaled
rewards where the trial sets them, actions in [−1, 1]): what it generates goes into the store as
it comes out. The engine decides when it retrains (every `generator_retrain_env_steps` online
env steps), when its rows land (`generator_landing_iterations`) and how generated rows enter
minibatches (`generator_schedule`, `generated_fraction`); a generator decides how it trains and
samples (EDIS: energy guidance, `o2o.generators.edis`; CFDG: classifier-free guidance and
density-ratio weights, `o2o.generators.cfdg`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from o2o.generators.diffusion import EDMDiffusion, ResidualMLPDenoiser, TransitionLayout, TransitionNormalizer, train_diffusion
from o2o.generators.quality import frechet_distance

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
    needs_policy: ClassVar[bool] = False
    """Whether a retrain reads the current policy's actions in the online states (EDIS's policy
    energy)."""

    def __init__(self, config: Any, layout: TransitionLayout, device: torch.device, seed: int) -> None:
        self.config = config
        self.layout = layout
        self.device = device
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed)
        self.retrains = 0
        self.model: EDMDiffusion | None = None
        self.normalizer = TransitionNormalizer(layout.width, raw_dims=[layout.terminal_index]).to(device)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._finished: Generation | None = None
        """A retrain's rows taken from its thread (at a checkpoint) or from a checkpoint, not landed yet."""
        self._stop = threading.Event()
        """Set to end a running retrain at its next step (`stop_retrain`)."""

    def initialized(self, build: Callable[[], nn.Module]) -> nn.Module:
        """`build()`'s module on the generator's device, its initial weights drawn from the
        generator's own seeded stream: a trial's global RNG, which its base draws from, is left as
        it was (a base with a generator trains offline exactly as without one)."""
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.rng, device=self.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build()
        return module.to(self.device)

    def build_model(self) -> EDMDiffusion:
        """A freshly initialized model (`initialized`)."""
        return self.initialized(
            lambda: EDMDiffusion(
                ResidualMLPDenoiser(
                    self.layout.width,
                    width=self.config.generator_width,
                    depth=self.config.generator_depth,
                    num_labels=self.num_labels,
                )
            )
        )

    def train_model(self, offline: torch.Tensor, online: torch.Tensor) -> dict[str, float]:
        """The fresh model trained on every offline and online row: uniformly over their union
        (EDIS's `train_from_redq_buffer`), or as `training_labels` says for a conditional model."""
        assert self.model is not None
        info = train_diffusion(
            self.model,
            self.normalizer,
            torch.cat([offline, online]),
            self.config.generator_train_steps,
            batch_size=self.config.generator_batch_size,
            generator=self.rng,
            stop=self._stop,
            **self.training_labels(len(offline), len(online)),
        )
        return {"diffusion_loss": info["loss"], "train_s": info["seconds"]}

    def training_labels(self, n_offline: int, n_online: int) -> dict[str, Any]:
        """`train_diffusion`'s `labels` and `split` for the offline rows followed by the online
        rows; none for an unconditional model."""
        return {}

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
                    stop=self._stop,
                    label=chunk_label,
                    **kwargs,
                )
            )
        return torch.cat(chunks)

    def start_retrain(self, offline: torch.Tensor, online: torch.Tensor, policy_actions: torch.Tensor | None) -> None:
        """Begin a retrain on the replay's `offline` and `online` rows (store space,
        (n, layout.width); neither may change until `finish_retrain`): a freshly initialized model
        here, its training and sampling in the generator's thread. `policy_actions` are the
        current policy's actions in the online rows' states (for a generator that sets
        `needs_policy`), taken now so the thread never reads weights the learner is updating."""
        if self.retraining:
            raise RuntimeError("a retrain is already running; finish_retrain() first")
        self.retrains += 1
        self.model = self.build_model()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"o2o-{self.name}")
        self._pending = self._executor.submit(self.retrain, offline, online, policy_actions)

    @property
    def retraining(self) -> bool:
        """Whether a retrain has started whose rows have not been handed back yet."""
        return self._pending is not None or self._finished is not None

    def retrain_done(self) -> bool:
        """Whether the started retrain's rows are ready: `finish_retrain` would not wait."""
        return self._finished is not None or (self._pending is not None and self._pending.done())

    def finish_retrain(self) -> tuple[Generation, float]:
        """The started retrain's rows, and the seconds the caller waited for them."""
        start = time.perf_counter()
        self._join()
        generation, self._finished = self._finished, None
        if generation is None:
            raise RuntimeError("no retrain is running")
        return generation, time.perf_counter() - start

    def stop_retrain(self) -> None:
        """End a running retrain at its next training or sampler step and drop its rows (the
        trial is stopping: they would never land, and neither would a failed retrain's error)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self._join()
        self._finished = None
        self._stop.clear()

    def _join(self) -> None:
        """Wait for the thread's retrain, if one runs, and keep its rows until they land."""
        if self._pending is not None:
            try:
                self._finished = self._pending.result()
            finally:
                self._pending = None

    def retrain(self, offline: torch.Tensor, online: torch.Tensor, policy_actions: torch.Tensor | None) -> Generation:
        """Train the fresh model and generate `generated_samples` rows (what the thread runs; on
        a GPU, on a stream of its own, synchronized before the rows are handed back)."""
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if stream is not None:  # after the model's and the snapshot's copies on the default stream
            stream.wait_stream(torch.cuda.default_stream(self.device))
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            generation = self._train_and_generate(offline, online, policy_actions)
        if stream is not None:
            stream.synchronize()
        return generation

    def _train_and_generate(self, offline: torch.Tensor, online: torch.Tensor, policy_actions: torch.Tensor | None) -> Generation:
        started = time.perf_counter()
        metrics = self.train_model(offline, online)
        start = time.perf_counter()
        generation = self.generate(online, policy_actions)
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
        generation.metrics["retrain_s"] = time.perf_counter() - started
        return generation

    def generate(self, online: torch.Tensor, policy_actions: torch.Tensor | None) -> Generation:
        """The generator's own sampling after its model is trained (store space out)."""
        raise NotImplementedError

    def unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """Model space → store space, the terminal flag rounded to {0, 1}."""
        rows = self.normalizer.unnormalize(x)
        rows[:, self.layout.terminal_index] = (rows[:, self.layout.terminal_index] > 0.5).to(rows.dtype)
        return rows

    def get_state(self) -> dict[str, Any]:
        """The model and normalizer of the last retrain, the sampling stream, the retrain count,
        and the rows of a retrain that has not landed yet (a running one is waited for first:
        its thread's work is the state)."""
        self._join()
        landing = self._finished
        return {
            "retrains": self.retrains,
            "rng": self.rng.get_state().cpu(),
            "model": None if self.model is None else self.model.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "landing": None if landing is None else {
                "rows": landing.rows.cpu(),
                "weights": None if landing.weights is None else landing.weights.cpu(),
                "reference": landing.reference.cpu(),
                "metrics": dict(landing.metrics),
            },
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.retrains = int(state["retrains"])
        self.normalizer.load_state_dict(state["normalizer"])
        if state["model"] is not None:
            self.model = self.build_model()  # draws from the stream, which is restored next
            self.model.load_state_dict(state["model"])
        self.rng.set_state(state["rng"])
        landing = state.get("landing")
        self._finished = None if landing is None else Generation(
            rows=landing["rows"].to(self.device),
            weights=None if landing["weights"] is None else landing["weights"].to(self.device),
            reference=landing["reference"].to(self.device),
            metrics=dict(landing["metrics"]),
        )
