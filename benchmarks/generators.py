"""What one retrain of the EDIS/CFDG transition diffusion model costs: training and generation rates.

The measurement before the generators are built on `o2o.generators.diffusion` (issue 15). EDIS
retrains its diffusion model from scratch every 10k online steps (30k training steps for IQL,
10k for Cal-QL) and then generates 100k transitions with 128 sampling steps; with 200k online
steps that is 20 retrains per trial, so these two numbers decide whether a generator trial fits
a CPU at all. Measured here, for EDIS's model (residual MLP width 1024, 6 blocks, 256-wide
embedding: `ResidualMLPDenoiser` defaults) on Hopper-sized rows (11 observations, 3 actions →
27 columns):

- **train**: `train_diffusion` steps per second at batch 256 (Adam, cosine schedule, gradient
  clipping and the EMA included, as a generator runs it) on 100k random rows, and one retrain
  of `--train-steps` steps extrapolated from it;
- **sample**: generated transitions per second of `EDMDiffusion.sample` at `--sample-steps`
  (128: 255 denoiser evaluations, the stochastic Heun sampler with churn) for each batch size
  of `--batches`, and the time for `--samples` (EDIS: 100k) transitions per retrain at that
  batch size, extrapolated; for each sampler of `--guidance`: `none` (unguided), `edis` (the
  three energies' gradients at every denoiser evaluation, `o2o.generators.energy`), `cfdg`
  (classifier-free guidance at w 2 on a conditional model: two denoiser evaluations per step,
  batched, then each row's implicit density ratio, `o2o.generators.cfdg`, timed on its own as
  `weights`).

Protocol (benchmarks/README.md): one process, `torch.set_num_threads(--threads)` (1 unless
given); a warm-up of 10 training steps and one 4-step sampling batch, then `--rounds` timed
runs of each measurement, median reported (wall clock; CPU seconds of the process beside it in
the JSON). On CUDA every timed region ends with a synchronize. Random weights sample as fast as
trained ones, so no training precedes the sampling measurement.

    python benchmarks/generators.py                                     # this CPU: slow (minutes)
    python benchmarks/generators.py --timed-train-steps 100 --batches 1000 --rounds 1   # short CPU run
    python benchmarks/generators.py --timed-train-steps 20 --batches 200 --sample-steps 32 --rounds 1  # minutes
    python benchmarks/generators.py --device cuda --json generators.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from o2o.generators.cfdg import NUM_LABELS, generation_labels, implicit_log_ratio
from o2o.generators.diffusion import EDMDiffusion, ResidualMLPDenoiser, TransitionLayout, TransitionNormalizer, train_diffusion
from o2o.generators.energy import EnergyGuide

OBS, ACT = 11, 3
"""Hopper-v5's dimensions."""
ROWS = 100_000
"""Training rows: the order of EDIS's offline + online replay in early fine-tuning (values do not
change the work)."""


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of `fn()`, synchronized on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def build(layout: TransitionLayout, device: torch.device) -> tuple[EDMDiffusion, TransitionNormalizer]:
    """EDIS's model and a normalizer that leaves the terminal flag raw, on `device`."""
    model = EDMDiffusion(ResidualMLPDenoiser(layout.width)).to(device)
    return model, TransitionNormalizer(layout.width, raw_dims=[layout.terminal_index]).to(device)


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    layout = TransitionLayout(OBS, ACT)
    g = torch.Generator(device=device).manual_seed(0)
    data = torch.randn(ROWS, layout.width, generator=g, device=device)
    data[:, layout.terminal_index] = (torch.rand(ROWS, generator=g, device=device) < 0.01).float()
    model, normalizer = build(layout, device)
    results: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}

    train_diffusion(model, normalizer, data, 10, batch_size=args.batch_size, generator=g)
    model.sample(args.batches[0], num_steps=4, generator=g)

    train = [timed(lambda: train_diffusion(model, normalizer, data, args.timed_train_steps, batch_size=args.batch_size,
                                           generator=g), device) for _ in range(args.rounds)]
    rate = args.timed_train_steps / statistics.median(w for w, _ in train)
    results["train"] = {"steps_per_s": rate, "cpu_steps_per_s": args.timed_train_steps / statistics.median(c for _, c in train),
                        "retrain_s": args.train_steps / rate, "batch_size": args.batch_size,
                        "timed_steps": args.timed_train_steps, "retrain_steps": args.train_steps}
    conditional = EDMDiffusion(ResidualMLPDenoiser(layout.width, num_labels=NUM_LABELS)).to(device)
    guide = EnergyGuide(layout).to(device)
    results["sample"] = []
    for guidance in args.guidance:
        for batch in args.batches:
            if guidance == "none":
                work = lambda: model.sample(batch, num_steps=args.sample_steps, generator=g)  # noqa: E731
            elif guidance == "edis":
                work = lambda: model.sample(batch, num_steps=args.sample_steps, guidance=guide.guidance(), generator=g)  # noqa: E731
            else:
                labels = generation_labels(batch).to(device)
                work = lambda: conditional.sample(batch, num_steps=args.sample_steps, label=labels, guidance_weight=2.0, generator=g)  # noqa: E731
            runs = [timed(work, device) for _ in range(args.rounds)]
            per_s = batch / statistics.median(w for w, _ in runs)
            results["sample"].append({"guidance": guidance, "batch": batch, "transitions_per_s": per_s,
                                      "cpu_transitions_per_s": batch / statistics.median(c for _, c in runs),
                                      "samples_s": args.samples / per_s})
            if guidance == "cfdg":
                rows = torch.randn(batch, layout.width, generator=g, device=device)
                runs = [timed(lambda: implicit_log_ratio(conditional, rows, generator=g), device) for _ in range(args.rounds)]
                per_s = batch / statistics.median(w for w, _ in runs)
                results["sample"].append({"guidance": "cfdg weights", "batch": batch, "transitions_per_s": per_s,
                                          "cpu_transitions_per_s": batch / statistics.median(c for _, c in runs),
                                          "samples_s": args.samples / per_s})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256, help="training batch (EDIS: 256)")
    parser.add_argument("--timed-train-steps", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=30_000, help="one retrain (EDIS on IQL: 30k; Cal-QL: 10k)")
    parser.add_argument("--sample-steps", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--samples", type=int, default=100_000, help="transitions generated per retrain")
    parser.add_argument("--guidance", nargs="+", choices=["none", "edis", "cfdg"], default=["none", "edis", "cfdg"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "threads": args.threads, "torch": torch.__version__, "cpus": os.cpu_count(), "load": os.getloadavg(),
               "samples": args.samples, **measure(args, device)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    """One Markdown row per measurement, the extrapolated per-retrain time beside each rate."""
    train = results["train"]
    print(f"\n{results['device']}, {results['threads']} thread(s), torch {results['torch']}, "
          f"load {results['load'][0]:.1f}, {results['parameters'] / 1e6:.1f}M parameters\n")
    print("| measurement | rate | per retrain |")
    print("|---|---|---|")
    print(f"| train, batch {train['batch_size']} ({train['timed_steps']} steps timed) | "
          f"{train['steps_per_s']:.1f} steps/s | {train['retrain_s']:.0f} s for {train['retrain_steps']} steps |")
    for row in results["sample"]:
        print(f"| sample ({row['guidance']}), batch {row['batch']} | {row['transitions_per_s']:.1f} transitions/s | "
              f"{row['samples_s']:.0f} s for {results['samples']} transitions |")


if __name__ == "__main__":
    main()
