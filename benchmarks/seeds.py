"""K seeds in one process against K processes of one seed each: what batching seeds can buy.

The measurement before `seeds_per_trial` is built (issue 16). O2O networks are small (256×2
MLPs, batch 256), so one seed's update is a few dozen small kernels: on a GPU it is bound by
launches, not arithmetic, and K seeds batched along a leading dimension should cost little
more than one. This benchmark measures that bound with IQL's and TD3+BC's updates written lean
(`plain_loops.LeanIQL`'s style: one packed replay tensor, raw parameter tensors, batched
matmuls), with every network carrying a leading seed dimension:

- **batched**: one process, K seeds: every parameter (K, …) (the twin critics (K·2, …)), K
  independent index streams into the one replay, per-seed mean losses summed (seeds share no
  parameter, so each seed's gradient is its own loss's), one Adam (element-wise, so K
  independent Adam states), on the GPU optionally captured as one CUDA graph per update
  (`--graph`: TD3+BC's two-update cycle, critic-only then critic + actor, is one graph);
- **separate**: K processes, each the same code at K = 1, started together (a barrier after
  warm-up), each holding its own copy of the replay — what K one-seed trials on one GPU or one
  CPU are;
- **corl**: for reference, one process running the CORL-style loop (`plain_loops`: a module per
  network, an Adam per network, a backward per loss) at K = 1.

Reported per configuration: updates per second per seed (the median of `--rounds` timed runs of
`--updates` updates; for separate processes the mean over the K processes), the K-seed wall time
relative to K = 1, and peak memory (GPU: the bytes PyTorch reserved per process, and the
device's used memory with every process of the configuration alive, CUDA contexts included;
CPU: each process's peak RSS, summed over processes).

`--check` first verifies the batched update: K = 2 batched from the weights of two K = 1
instances and fed the same minibatch indices equals them after 100 updates (float tolerance).

    python benchmarks/seeds.py --device cpu --ks 1 2 4 8 --check            # this CPU, one thread a process
    python benchmarks/seeds.py --device cpu --ks 1 2 4 8 --separate-max 0 --threads 2   # batched on both cores
    python benchmarks/seeds.py --device cuda --ks 1 2 4 8 16 --graph --check --json seeds.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from plain_loops import ACT, BATCH, GAMMA, LR, OBS, TAU, PlainIQL, PlainTD3, Replay, mlp_parameters

Draw = tuple[torch.Tensor, ...]
"""One update's random draws, each with a leading seed dimension."""
WIDTH = 2 * OBS + ACT + 2
"""A packed row: obs | actions | reward | new_obs | done."""
ROWS = 1_000_000
"""Replay rows: a D4RL-sized dataset, held once per process."""
ALGORITHMS = ("iql", "td3bc")


def replay_table(device: torch.device, rows: int = ROWS, seed: int = 0) -> torch.Tensor:
    """`rows` random packed transitions on `device` (values do not change the work)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, WIDTH, generator=g, dtype=torch.get_default_dtype())
    table[:, OBS : OBS + ACT].uniform_(-0.99, 0.99, generator=g)
    table[:, -1] = (torch.rand(rows, generator=g) < 0.01).float()
    return table.to(device)


def batched_mlp(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(M, B, in) → (M, B, out) for M stacked MLPs, one `baddbmm` per layer; weights (M, in, out)."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.baddbmm(b1, x, w1).relu_()
    h = torch.baddbmm(b2, h, w2).relu_()
    return torch.baddbmm(b3, h, w3)


def stacked(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of (K, 2, …) critic parameters as (K·2, …), the shape `baddbmm` takes."""
    return [p.view(-1, *p.shape[2:]) for p in params]


class Seeds:
    """K seeds of one method: parameters with a leading seed dimension over one replay table."""

    def __init__(self, table: torch.Tensor, k: int) -> None:
        self.table, self.k = table, k
        self.generator = None if table.is_cuda else torch.Generator().manual_seed(0)

    def sample(self) -> Draw:
        """What one update draws: (K, B) row indices, K independent minibatch streams."""
        return (torch.randint(0, len(self.table), (self.k, BATCH), device=self.table.device, generator=self.generator),)

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """obs, actions, (obs, actions), reward, new_obs, done of the rows `idx`, each (K, B, ·)."""
        rows = self.table[idx]
        return (
            rows[..., :OBS], rows[..., OBS : OBS + ACT], rows[..., : OBS + ACT],
            rows[..., OBS + ACT], rows[..., OBS + ACT + 1 : -1], rows[..., -1],
        )

    def twin_q(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """(K, B, obs + act) → (K, 2, B): each seed's two critics."""
        x2 = x.unsqueeze(1).expand(-1, 2, -1, -1).reshape(2 * self.k, BATCH, -1)
        return batched_mlp(stacked(params), x2).view(self.k, 2, BATCH)

    def update(self, *draw: torch.Tensor) -> None:
        """One gradient update of every seed on `sample()`'s draw."""
        raise NotImplementedError

    def cycle(self) -> int:
        """Updates per graph replay (the method's update period)."""
        return 1

    def parameters(self) -> list[torch.Tensor]:
        """Every trained tensor, each with its leading seed dimension."""
        raise NotImplementedError


class SeedsIQL(Seeds):
    """IQL (`LeanIQL`'s update) for K seeds: expectile V, TD Q to V(s'), AWR actor, Polyak targets."""

    def __init__(self, table: torch.Tensor, k: int, expectile: float = 0.7, temperature: float = 3.0) -> None:
        super().__init__(table, k)
        self.expectile, self.temperature = expectile, temperature
        self.critic = mlp_parameters(OBS + ACT, 1, members=(k, 2))
        self.critic_target = [p.detach().clone() for p in self.critic]
        self.value = mlp_parameters(OBS, 1, members=(k,))
        self.actor = mlp_parameters(OBS, ACT, members=(k,))
        self.log_std = torch.zeros(k, 1, ACT, requires_grad=True)
        self.optimizer = adam(self.parameters())

    def parameters(self) -> list[torch.Tensor]:
        return [*self.critic, *self.value, *self.actor, self.log_std]

    def update(self, idx: torch.Tensor) -> None:
        obs, actions, obs_actions, rewards, new_obs, done = self.rows(idx)
        with torch.no_grad():
            q_target = self.twin_q(self.critic_target, obs_actions).min(1).values
            td_target = rewards + GAMMA * (1.0 - done) * batched_mlp(self.value, new_obs).squeeze(-1)
        v = batched_mlp(self.value, obs).squeeze(-1)
        u = q_target - v
        value_loss = (torch.where(u > 0, self.expectile, 1.0 - self.expectile) * u.square()).mean(-1)
        critic_loss = (self.twin_q(self.critic, obs_actions) - td_target.unsqueeze(1)).square().mean(-1).sum(1)
        mean = torch.tanh(batched_mlp(self.actor, obs))
        log_std = self.log_std.clamp(-5.0, 2.0)
        log_prob = (-0.5 * ((actions - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        weight = torch.exp(self.temperature * (q_target - v.detach())).clamp(max=100.0)
        actor_loss = -(weight * log_prob).mean(-1)
        self.optimizer.zero_grad()
        (value_loss + critic_loss + actor_loss).sum().backward()
        self.optimizer.step()
        torch._foreach_lerp_(self.critic_target, [p.detach() for p in self.critic], TAU)


class SeedsTD3BC(Seeds):
    """TD3+BC for K seeds: twin critics every update; the actor (−α Q/mean|Q| + BC) and all
    targets every 2nd; target smoothing noise 0.2 clipped at 0.5."""

    def __init__(self, table: torch.Tensor, k: int, alpha: float = 2.5) -> None:
        super().__init__(table, k)
        self.alpha, self.it = alpha, 0
        self.critic = mlp_parameters(OBS + ACT, 1, members=(k, 2))
        self.actor = mlp_parameters(OBS, ACT, members=(k,))
        self.critic_target = [p.detach().clone() for p in self.critic]
        self.actor_target = [p.detach().clone() for p in self.actor]
        self.critic_opt, self.actor_opt = adam(self.critic), adam(self.actor)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.critic, *self.actor]

    def cycle(self) -> int:
        return 2

    def sample(self) -> Draw:
        """Row indices and the target policy's smoothing noise, (K, B, A)."""
        (idx,) = super().sample()
        return idx, torch.randn(self.k, BATCH, ACT, device=self.table.device, generator=self.generator)

    def update(self, idx: torch.Tensor, noise: torch.Tensor) -> None:
        self.it += 1
        obs, actions, obs_actions, rewards, new_obs, done = self.rows(idx)
        with torch.no_grad():
            noise = (noise * 0.2).clamp(-0.5, 0.5)
            next_actions = (torch.tanh(batched_mlp(self.actor_target, new_obs)) + noise).clamp(-1.0, 1.0)
            q_next = self.twin_q(self.critic_target, torch.cat([new_obs, next_actions], -1)).min(1).values
            td_target = rewards + GAMMA * (1.0 - done) * q_next
        critic_loss = (self.twin_q(self.critic, obs_actions) - td_target.unsqueeze(1)).square().mean(-1).sum(1)
        self.critic_opt.zero_grad()
        critic_loss.sum().backward()
        self.critic_opt.step()
        if self.it % 2:
            return
        pi = torch.tanh(batched_mlp(self.actor, obs))
        q = batched_mlp([p[:, 0].detach() for p in self.critic], torch.cat([obs, pi], -1)).squeeze(-1)
        actor_loss = -self.alpha * q.mean(-1) / q.abs().mean(-1).detach() + (pi - actions).square().mean((-2, -1))
        self.actor_opt.zero_grad()
        actor_loss.sum().backward()
        self.actor_opt.step()
        torch._foreach_lerp_(self.critic_target, [p.detach() for p in self.critic], TAU)
        torch._foreach_lerp_(self.actor_target, [p.detach() for p in self.actor], TAU)


SEEDS: dict[str, type[Seeds]] = {"iql": SeedsIQL, "td3bc": SeedsTD3BC}


def adam(params: list[torch.Tensor]) -> torch.optim.Adam:
    """One fused Adam over `params`; capturable on a GPU so that a CUDA graph can hold its step."""
    cuda = params[0].is_cuda
    return torch.optim.Adam(params, lr=LR, fused=True, capturable=cuda)


def runner(agent: Seeds, graph: bool) -> Callable[[int], None]:
    """`run(n)` does n updates (rounded to the method's cycle): eagerly, or by replaying one CUDA
    graph that holds a whole cycle (sampling included)."""
    if not graph:
        return lambda n: [agent.update(*agent.sample()) for _ in range(n)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: optimizer state and autograd buffers exist before capture
        for _ in range(3 * agent.cycle()):
            agent.update(*agent.sample())
    torch.cuda.current_stream().wait_stream(side)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph):
        for _ in range(agent.cycle()):
            agent.update(*agent.sample())
    return lambda n: [cuda_graph.replay() for _ in range(-(-n // agent.cycle()))]


def corl_runner(name: str, table: torch.Tensor) -> Callable[[int], None]:
    """The CORL-style loop of `name` at one seed on `table`'s rows and device."""
    with table.device:
        agent = PlainIQL() if name == "iql" else PlainTD3(bc_alpha=2.5)
        replay = Replay(len(table))
    for key, (lo, hi) in {"obs": (0, OBS), "actions": (OBS, OBS + ACT), "rewards": (OBS + ACT, OBS + ACT + 1),
                          "new_obs": (OBS + ACT + 1, WIDTH - 1), "terminateds": (WIDTH - 1, WIDTH)}.items():
        replay.data[key][:] = table[:, lo:hi].reshape(replay.data[key].shape)
    replay.n = len(table)
    return lambda n: [agent.update(replay.sample()) for _ in range(n)]


def timed_rates(run: Callable[[int], None], device: torch.device, updates: int, rounds: int) -> list[float]:
    """Updates per second of `run` over `rounds` runs of `updates` updates, after 20 to warm up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run(20)
    sync()
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(updates)
        sync()
        rates.append(updates / (time.perf_counter() - start))
    return rates


def device_used_bytes(device: torch.device) -> int | None:
    """Memory in use on the GPU by every process (CUDA contexts included); None on a CPU."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return total - free


def process_peak(device: torch.device) -> int:
    """This process's peak: bytes PyTorch reserved on the GPU, or peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(name: str, side: str, k: int, device: str, graph: bool, updates: int, rounds: int, rows: int,
            threads: int, barrier: Any, results: Any) -> None:
    """One process of a configuration: build, warm up, wait for its siblings, time, report (or
    report its error, releasing its siblings from the barrier)."""
    try:
        torch.set_num_threads(threads)
        dev = torch.device(device)
        torch.manual_seed(0)
        table = replay_table(dev, rows)
        run = corl_runner(name, table) if side == "corl" else runner(build(name, table, k), graph)
        run(20)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        barrier.wait()
        used = device_used_bytes(dev)
        rates = timed_rates(run, dev, updates, rounds)
        results.put({"rate": statistics.median(rates), "peak_bytes": process_peak(dev), "device_used_bytes": used})
    except Exception as exc:  # noqa: BLE001 - the configuration's row records it; the others still run
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def run_together(worker: Callable[..., None], args: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """`worker(*a, barrier, results)` in a fresh process per `a` in `args`, started together: each
    waits at the shared barrier after its warm-up and puts one dict on `results` (its figures, or
    {"error": …} after aborting the barrier). The dicts, in the order they arrived."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(args)), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(*a, barrier, results)) for a in args]
    for p in procs:
        p.start()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return out


def measure(name: str, side: str, k: int, device: torch.device, graph: bool, updates: int, rounds: int,
            rows: int = ROWS, threads: int = 1) -> dict[str, Any]:
    """One configuration in fresh processes: "batched" one process of K seeds, "separate" K
    processes of one seed started together (one torch thread each), "corl" one process of the
    CORL-style loop (`threads` torch threads each). Its per-seed rate (the mean over processes),
    summed peak and the device's use."""
    copies, seeds_each = (k, 1) if side == "separate" else (1, k)
    out = run_together(_worker, [
        (name, "corl" if side == "corl" else "batched", seeds_each, str(device), graph, updates, rounds, rows,
         1 if side == "separate" else threads)
        for _ in range(copies)
    ])
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        return {"error": errors[0]}
    used = [o["device_used_bytes"] for o in out if o["device_used_bytes"] is not None]
    return {"updates_per_s_per_seed": statistics.mean(o["rate"] for o in out), "per_process": [o["rate"] for o in out],
            "peak_bytes": sum(o["peak_bytes"] for o in out), "device_used_bytes": max(used) if used else None}


def build(name: str, table: torch.Tensor, k: int) -> Seeds:
    """Method `name` for K seeds, its parameters on the replay's device."""
    with table.device:
        return SEEDS[name](table, k)


def check(name: str, device: torch.device, updates: int = 100) -> float:
    """Largest parameter difference after `updates` between K = 2 batched and two K = 1 runs
    started from the same weights and fed the same draws (indices, noise), seed i its slice. In
    float64, so that what is compared is the function, not float32 rounding (which Adam's
    normalised steps amplify to ~1e-4 over 100 updates)."""
    torch.set_default_dtype(torch.float64)
    try:
        table = replay_table(device, rows=10_000)
        torch.manual_seed(1)
        singles = [build(name, table, 1) for _ in range(2)]
        pair = build(name, table, 2)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for p, a, b in zip(state(pair), state(singles[0]), state(singles[1]), strict=True):
            p.copy_(torch.cat([a, b]))
    for _ in range(updates):
        draw = pair.sample()
        pair.update(*draw)
        for i, single in enumerate(singles):
            single.update(*(d[i : i + 1] for d in draw))
    return max(
        (p[i : i + 1] - s).abs().max().item()
        for i, single in enumerate(singles)
        for p, s in zip(state(pair), state(single), strict=True)
    )


def state(agent: Seeds) -> list[torch.Tensor]:
    """Every parameter and target tensor of `agent`, each with its leading seed dimension."""
    return [*agent.parameters(), *agent.critic_target, *getattr(agent, "actor_target", [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--graph", action="store_true", help="also the batched update as CUDA graphs (GPU)")
    parser.add_argument("--separate-max", type=int, default=8, help="largest K run as separate processes")
    parser.add_argument("--rows", type=int, default=ROWS, help="replay rows per process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a batched or CORL-style process")
    parser.add_argument("--check", action="store_true", help="also check the batched update (at the end)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.graph and device.type != "cuda":
        parser.error("--graph captures CUDA graphs: it needs --device cuda")
    torch.set_num_threads(1)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                               "threads": args.threads,
                               "torch": torch.__version__, "cpus": os.cpu_count(), "load": os.getloadavg()}
    results["rows"] = []
    for name in args.algorithms:
        configs = [("corl", 1, False)]
        for k in args.ks:
            for graph in (False, True) if args.graph else (False,):
                configs += [("batched", k, graph)] + ([("separate", k, graph)] if 1 < k <= args.separate_max else [])
        for side, k, graph in configs:
            row = {"algorithm": name, "side": side + ("+graph" if graph else ""), "k": k,
                   **measure(name, side, k, device, graph, args.updates, args.rounds, args.rows, args.threads)}
            results["rows"].append(row)
            print(name, row["side"], k, row.get("error") or round(row["updates_per_s_per_seed"]), flush=True)
            if args.json:  # after every row: a run stopped part-way keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    if args.check:  # last: this process then holds no GPU memory while the configurations run
        results["check"] = {name: check(name, device) for name in args.algorithms}
        print("check (float64, max |Δparameter| after 100 updates, K=2 batched vs two K=1):", results["check"])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    """One Markdown row per (algorithm, side, K); wall time relative to the same side at K = 1."""
    print(f"\n{results['device']}, torch {results['torch']}, load {results['load'][0]:.1f}\n")
    print("| algorithm | side | K | updates/s per seed | seed-updates/s | K-seed wall time / K=1 | peak MiB | device used MiB |")
    print("|---|---|---|---|---|---|---|---|")
    base = {(r["algorithm"], r["side"].replace("separate", "batched")): r["updates_per_s_per_seed"]
            for r in results["rows"] if r["k"] == 1 and r["side"] != "separate" and "error" not in r}
    for r in results["rows"]:
        if "error" in r:
            print(f"| {r['algorithm']} | {r['side']} | {r['k']} | {r['error'][:80]} | | | | |")
            continue
        rate = r["updates_per_s_per_seed"]
        used = "" if r["device_used_bytes"] is None else f"{r['device_used_bytes'] / 2**20:.0f}"
        print(f"| {r['algorithm']} | {r['side']} | {r['k']} | {rate:.0f} | {rate * r['k']:.0f} | "
              f"{base.get((r['algorithm'], r['side'].replace('separate', 'batched')), math.nan) / rate:.2f} | {r['peak_bytes'] / 2**20:.0f} | {used} |")


if __name__ == "__main__":
    main()
