"""How physical the transition diffusion model's samples are: their dynamics error on a dataset.

Trains `o2o.generators.diffusion`'s model, unguided, on a factory dataset's transitions (as a
generator's retrain does on its replay), samples from it, and measures the samples' dynamics
error (`o2o.generators.quality`: s′ and r against the simulator stepped from the same s, a)
beside two references on the same dataset: its real transitions (the simulator's own: error 0
up to rows at the velocity clip) and real (s, a) paired with the s′ and r of another random row
(what a generator that ignored the dynamics would score). Energy guidance (EDIS) and
classifier-free guidance (CFDG) are measured against this unguided row once they exist.

Protocol: one process, `--threads` torch threads; `--rows` rows drawn at random from the
dataset; the model `--width` × `--depth` (EDIS's is 1024 × 6: ~100 min per retrain on one CPU
core, `generators.py`), `--train-steps` training steps at batch 256, `--samples` samples at
`--sample-steps` sampling steps; a tolerance of 0.1 RMS per observation dimension for the share
of plausible transitions.

    python benchmarks/generator_quality.py --dataset hopper-medium-replay
    python benchmarks/generator_quality.py --dataset walker2d-medium --width 1024 --depth 6 --train-steps 30000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np
import torch

from o2o.generators.diffusion import EDMDiffusion, ResidualMLPDenoiser, TransitionLayout, TransitionNormalizer, train_diffusion
from o2o.generators.quality import dynamics_error
from o2o.platform.data import read_parquet, resolve_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-medium-replay", help="a dataset `o2o datasets make` made")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--sample-steps", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)

    resolved = resolve_dataset(args.dataset)
    data = read_parquet(resolved.parquet_path)
    env_id = resolved.env_id
    chosen = rng.choice(len(data), size=min(args.rows, len(data)), replace=False)
    columns = {
        "obs": data.obs[chosen], "actions": data.actions[chosen], "rewards": data.rewards[chosen],
        "new_obs": data.new_obs[chosen], "terminateds": data.terminateds[chosen].astype(np.float32),
    }
    layout = TransitionLayout(data.obs_dim, data.act_dim)
    rows = layout.pack(*(torch.as_tensor(columns[k], dtype=torch.float32) for k in layout.slices)).to(device)

    model = EDMDiffusion(ResidualMLPDenoiser(layout.width, width=args.width, depth=args.depth)).to(device)
    normalizer = TransitionNormalizer(layout.width, raw_dims=[layout.terminal_index]).to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    training = train_diffusion(model, normalizer, rows, args.train_steps, generator=generator)
    start = time.perf_counter()
    generated = normalizer.unnormalize(model.sample(args.samples, num_steps=args.sample_steps, generator=generator))
    sampling_s = time.perf_counter() - start
    fake = {k: v.cpu().numpy().astype(np.float64) for k, v in layout.unpack(generated).items()}

    n = args.samples
    real = {k: v[:n] for k, v in columns.items()}
    other = rng.permutation(n)
    shuffled = {**real, "new_obs": real["new_obs"][other], "rewards": real["rewards"][other]}
    results = {
        "dataset": args.dataset, "env_id": env_id, "model": f"{args.width}x{args.depth}",
        "parameters": sum(p.numel() for p in model.parameters()), "training": training,
        "sampling_s": sampling_s, "samples_per_s": n / sampling_s,
        "errors": {
            name: asdict(dynamics_error(env_id, **{k: rows_[k] for k in ("obs", "actions", "rewards", "new_obs")}))
            for name, rows_ in (("real", real), ("generated (unguided)", fake), ("real s, a with another row's s', r", shuffled))
        },
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\n{args.dataset} ({env_id}), model {results['model']} ({results['parameters']:,} parameters), "
          f"{args.train_steps} training steps in {training['seconds']:.0f} s (final loss {training['loss']:.3f}), "
          f"{n} samples at {args.sample_steps} steps in {sampling_s:.0f} s\n")
    print("| transitions | s' MSE per dimension | r MSE | share within 0.1 RMS | rows (at the velocity clip, left out) |")
    print("|---|---:|---:|---:|---|")
    for name, e in results["errors"].items():
        print(f"| {name} | {e['next_obs_mse']:.4g} | {e['reward_mse']:.4g} | {e['within_tolerance']:.3f} | "
              f"{e['transitions']} ({e['excluded']}) |")


if __name__ == "__main__":
    main()
