"""Critic-ensemble throughput: o2o's batched `QEnsemble` against N separate critic modules.

One "update" is what a TD step costs the critics: a forward of all N critics on a batch of 256
(Hopper-v5 dimensions, 256×2 hidden), an MSE loss to a fixed target, one backward, one Adam step.
The batched module does one batched matmul per layer for all N; the baseline loops over N
`nn.Sequential` critics, each with its own parameters, under one Adam. Same process, one torch
thread, sides alternated over `--rounds` rounds, the median reported.

    python benchmarks/ensemble.py                  # N = 2, 10, 50
    python benchmarks/ensemble.py --sizes 10 --updates 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from o2o.platform.networks import QEnsemble, mlp

OBS, ACT, HIDDEN, BATCH = 11, 3, [256, 256], 256


def batched_step(n: int) -> Callable[[], None]:
    critic = QEnsemble(n, OBS + ACT, HIDDEN)
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-4)
    obs, act, target = torch.randn(BATCH, OBS), torch.rand(BATCH, ACT) * 2 - 1, torch.randn(BATCH)

    def step() -> None:
        loss = (critic(obs, act) - target).pow(2).mean(-1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def separate_step(n: int) -> Callable[[], None]:
    critics = nn.ModuleList(mlp(OBS + ACT, HIDDEN, 1) for _ in range(n))
    optimizer = torch.optim.Adam(critics.parameters(), lr=3e-4)
    obs, act, target = torch.randn(BATCH, OBS), torch.rand(BATCH, ACT) * 2 - 1, torch.randn(BATCH)

    def step() -> None:
        x = torch.cat([obs, act], -1)
        loss = sum((q(x).squeeze(-1) - target).pow(2).mean() for q in critics)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def rate(step: Callable[[], None], updates: int) -> float:
    start = time.perf_counter()
    for _ in range(updates):
        step()
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {}
    for n in args.sizes:
        sides = {"batched": batched_step(n), "separate": separate_step(n)}
        for step in sides.values():
            rate(step, 5)  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for name, step in sides.items():
                rates[name].append(rate(step, args.updates))
        median = {k: statistics.median(v) for k, v in rates.items()}
        results[f"N={n}"] = {"updates_per_s": median, "speedup": median["batched"] / median["separate"]}
    print(json.dumps({"torch_threads": torch.get_num_threads(), **results}, indent=2))


if __name__ == "__main__":
    main()
