"""Where an IQL update's time goes, against this core's matmul limit.

Four measurements, one process, one torch thread, CPU, IQL at the throughput benchmark's
shapes (256×2 networks, batch 256, Hopper-v5 dimensions):

- the matmul limit: every matrix product of one IQL update (forwards with and without
  gradients, the backward's input and weight gradients) replayed alone at the update's shapes,
  timed; its FLOP count over that time is this core's GFLOP/s on them, and the replay's rate
  the updates/s of an update that did nothing but its matmuls;
- the rates of o2o's learner (`run_updates`) and of the lean loop (`plain_loops.LeanIQL`),
  which computes the same update bit for bit (checked here: same weights, same minibatches,
  10 updates, every parameter equal);
- a torch.profiler breakdown of each update into sampling (index draw and gather), forward and
  losses, backward, Adam (`zero_grad` and `step`), the target's soft update, o2o's metric
  reduction, and Python between operators (the window's wall time minus its operators'), with
  the matmul kernels' share of the forward and backward;
- Adam's step on IQL's three parameter groups in torch's three implementations (for-loop, the
  CPU default; `foreach`; `fused`, o2o's `grouped_adam`), and what `fused` changes in every
  registered algorithm's learner (all step through `grouped_adam`): the parameters after 20
  updates from seed 0 with the for-loop step and with the fused one, and those 20 updates' rate
  per CPU-second (a rough figure: one short round each).

    python benchmarks/iql_profile.py                       # --updates 200 --rounds 3
    python benchmarks/iql_profile.py --updates 100 --rounds 3 --json iql_profile.json

Rates are per wall-clock second and per CPU-second of this process; the profiler slows every
operator by a few microseconds, so its milliseconds add up to more than the unprofiled update.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from o2o.algorithms import REGISTRY
from plain_loops import ACT, BATCH, HIDDEN, OBS, LeanIQL
from throughput import o2o_learner, offline_sides, synthetic, timed

Matmul = tuple[str, tuple[int, ...], tuple[int, ...]]
"""(torch op, shape of a, shape of b): `mm`/`bmm` of a and b."""
MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")
SAMPLING_OPS = ("sampling", "aten::randint", "aten::index_select")
"""The label of o2o's draw and gather, and the lean loop's two sampling operators."""
CATEGORIES = ("sampling", "forward and losses", "backward", "Adam", "soft update", "metrics", "Python between operators")


def mlp_matmuls(i: int, o: int, members: int, grad: bool) -> list[Matmul]:
    """The products of a 256×2 MLP (batched over `members` critics when > 1) on `BATCH` rows:
    its forward and, with `grad`, the backward's weight gradients (every layer) and input
    gradients (all but the first: the data needs none)."""
    lead = (members,) if members > 1 else ()
    op = "bmm" if members > 1 else "mm"
    dims = [i, HIDDEN, HIDDEN, o]
    out = [(op, (*lead, BATCH, a), (*lead, a, b)) for a, b in itertools.pairwise(dims)]
    if grad:
        for layer, (a, b) in enumerate(itertools.pairwise(dims)):
            out.append((op, (*lead, a, BATCH), (*lead, BATCH, b)))  # dW = xᵀ · dy
            if layer > 0:
                out.append((op, (*lead, BATCH, b), (*lead, b, a)))  # dx = dy · Wᵀ
    return out


def update_matmuls() -> list[Matmul]:
    """Every matrix product of one IQL update: target twin critics and V(s') without gradients;
    V(s), the twin critics and the actor forward and backward."""
    return [
        *mlp_matmuls(OBS + ACT, 1, 2, grad=False),  # target critics
        *mlp_matmuls(OBS, 1, 1, grad=False),  # V(s')
        *mlp_matmuls(OBS, 1, 1, grad=True),  # V(s)
        *mlp_matmuls(OBS + ACT, 1, 2, grad=True),  # critics
        *mlp_matmuls(OBS, ACT, 1, grad=True),  # actor
    ]


def flops(matmuls: list[Matmul]) -> int:
    """2·m·k·n per product (per member of a batched one)."""
    total = 0
    for _, a, b in matmuls:
        members = a[0] if len(a) == 3 else 1
        total += 2 * members * a[-2] * a[-1] * b[-1]
    return total


def calls(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Calls of `fn` per wall-clock second and per CPU-second of this process, over n calls."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def matmul_limit(updates: int, rounds: int) -> dict[str, Any]:
    """This core's GFLOP/s on one IQL update's matmuls, replayed alone, and the updates/s of an
    update made of nothing else."""
    pairs = [(getattr(torch, op), torch.randn(a), torch.randn(b)) for op, a, b in update_matmuls()]

    def replay() -> None:
        for op, a, b in pairs:
            op(a, b)

    replay()
    rates = [calls(replay, updates) for _ in range(rounds)]
    gflop = flops(update_matmuls()) / 1e9
    wall, cpu = statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)
    square = torch.randn(HIDDEN, HIDDEN)
    square_rate = statistics.median(calls(lambda: square @ square, 20 * updates)[1] for _ in range(rounds))
    return {
        "gflop_per_update": gflop,
        "matmuls_per_update": len(pairs),
        "updates_per_s": {"wall": wall, "cpu": cpu},
        "gflops": {"wall": wall * gflop, "cpu": cpu * gflop},
        "gflops_256_square_cpu": square_rate * 2 * HIDDEN**3 / 1e9,
    }


def lean_on_o2o_weights(learner: Any, data: dict[str, Any]) -> LeanIQL:
    """A lean loop holding `learner`'s dataset rows (as its store holds them: rewards rescaled),
    weights and sampler state."""
    net = learner.net
    lean = LeanIQL(data)
    lean.table = learner.replay.table[: learner.replay.n_offline].clone()
    lean.generator.set_state(learner.replay.generator.get_state())

    def linears(seq: torch.nn.Module) -> list[torch.Tensor]:
        return [t for m in seq if isinstance(m, torch.nn.Linear) for t in (m.weight.t(), m.bias)]

    def ensemble(q: torch.nn.Module) -> list[torch.Tensor]:
        return [t for layer in [*q.linears, q.out] for t in (layer.weight, layer.bias)]

    with torch.no_grad():
        for ours, theirs in (
            (lean.critic, ensemble(net.critic)),
            (lean.critic_target, ensemble(net.critic_target)),
            (lean.value, linears(net.value)),
            (lean.actor, linears(net.actor.net)),
            ([lean.log_std], [net.actor.log_std]),
        ):
            for a, b in zip(ours, theirs):
                a.copy_(b)
    return lean


def check_same_update(data: dict[str, Any], updates: int = 10) -> None:
    """Refuse to compare unless the lean loop computes o2o's IQL update exactly: from the same
    weights and sampler state, every parameter equal after `updates` updates."""
    from o2o.platform.replay import Sampling

    learner = o2o_learner("iql", data)
    lean = lean_on_o2o_weights(learner, data)
    learner.run_updates(updates, Sampling("offline"))
    for _ in range(updates):
        lean.update()
    net = learner.net
    theirs = [
        *[t for layer in [*net.critic.linears, net.critic.out] for t in (layer.weight, layer.bias)],
        *[t for m in net.value if isinstance(m, torch.nn.Linear) for t in (m.weight.t(), m.bias)],
        *[t for m in net.actor.net if isinstance(m, torch.nn.Linear) for t in (m.weight.t(), m.bias)],
        net.actor.log_std,
    ]
    ours = [*lean.critic, *lean.value, *lean.actor, lean.log_std]
    worst = max(float((a - b).detach().abs().max()) for a, b in zip(ours, theirs))
    if worst != 0.0:
        raise SystemExit(f"the lean loop's update differs from o2o's IQL update (max |Δθ| {worst:.1e} after {updates})")


def categorize(events: list[Any], wall_us: float, n: int) -> dict[str, float]:
    """Milliseconds per update of each category, from the profiler's top-level events in time
    order: sampling (`SAMPLING_OPS`); autograd's functions (backward); `Optimizer.*` (Adam);
    `_foreach_lerp_` (soft update); between the soft update and the next sampling, o2o's metric
    reduction; everything else, forward and losses."""
    ms = dict.fromkeys(CATEGORIES, 0.0)
    after_soft_update = False
    for e in sorted(events, key=lambda e: e.time_range.start):
        name, us = e.name, e.time_range.elapsed_us()
        if name in SAMPLING_OPS:
            key, after_soft_update = "sampling", False
        elif name.startswith("autograd::"):
            key = "backward"
        elif name.startswith("Optimizer."):
            key = "Adam"
        elif name == "aten::_foreach_lerp_":
            key, after_soft_update = "soft update", True
        else:
            key = "metrics" if after_soft_update else "forward and losses"
        ms[key] += us / 1e3
    ms["Python between operators"] = wall_us / 1e3 - sum(ms.values())
    return {k: v / n for k, v in ms.items()}


def breakdown(run: Callable[[int], object], n: int) -> dict[str, Any]:
    """Profile `run(n)`, n updates: milliseconds per update by category, and the matmul
    kernels' share."""
    run(10)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run(n)
        wall_us = (time.perf_counter() - start) * 1e6
    events = list(prof.events())
    top = [e for e in events if e.cpu_parent is None]
    matmul_ms = sum(e.self_cpu_time_total for e in events if e.name in MATMUL_OPS) / 1e3 / n
    return {"ms_per_update": categorize(top, wall_us, n), "matmul_ms_per_update": matmul_ms, "profiled_updates": n}


def labelled_o2o(data: dict[str, Any]) -> Callable[[int], object]:
    """n updates of o2o's IQL learner in one call (as a trial's iteration runs them), each
    update's index draw and gather marked "sampling" for the profiler."""
    from o2o.platform.replay import Sampling

    learner = o2o_learner("iql", data)
    replay = learner.replay
    draw, gather = replay.sample_indices, replay.gather

    def sample_indices(*args: Any) -> torch.Tensor:
        with record_function("sampling"):
            return draw(*args)

    def gather_rows(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        with record_function("sampling"):
            return gather(indices)

    replay.sample_indices, replay.gather = sample_indices, gather_rows
    return lambda n: learner.run_updates(n, Sampling("offline"))


def lean_updates(data: dict[str, Any]) -> Callable[[int], object]:
    """n updates of a lean loop on `data` per call."""
    lean = LeanIQL(data)
    return lambda n: [lean.update() for _ in range(n)]


ADAM_IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
"""torch's Adam implementations by their flags."""


def adam_steps(steps: int, rounds: int) -> dict[str, float]:
    """Milliseconds (CPU) of one Adam step on o2o IQL's parameter groups, per implementation."""
    groups = [[p.detach().clone() for p in g["params"]] for g in o2o_learner("iql", synthetic(5_000)).optimizer.param_groups]
    out = {}
    for name, flags in ADAM_IMPLEMENTATIONS.items():
        params = [[p.clone().requires_grad_() for p in g] for g in groups]
        for p in (p for g in params for p in g):
            p.grad = torch.randn_like(p)
        adam = torch.optim.Adam([{"params": g} for g in params], lr=3e-4, **flags)
        adam.step()
        out[name] = statistics.median(1e3 / calls(adam.step, steps)[1] for _ in range(rounds))
    return out


def fused_adam_change(algorithm: str, data: dict[str, Any], updates: int = 20) -> dict[str, Any]:
    """`algorithm`'s learner from seed 0 after `updates` updates, its Adam for-loop (torch's CPU
    default) and fused (`grouped_adam`): the parameters' sums, the largest difference, and
    the updates' rate per CPU-second."""
    from o2o.platform.replay import Sampling

    finals, rates = {}, {}
    for name, fused in (("for-loop", False), ("fused", True)):
        torch.manual_seed(0)
        learner = o2o_learner(algorithm, data)
        for optimizer in learner._named_optimizers.values():
            for group in optimizer.param_groups:
                group["fused"] = fused
        rates[name] = timed(lambda n: learner.run_updates(n, Sampling("offline")), updates)[1]
        finals[name] = [p.detach().clone() for p in learner.net.parameters()]
    return {
        "updates": updates,
        "parameter_sum": {k: float(sum(p.double().sum() for p in v)) for k, v in finals.items()},
        "max_abs_difference": max(float((a - b).abs().max()) for a, b in zip(*finals.values())),
        "updates_per_cpu_s": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = synthetic(100_000)
    check_same_update(data)
    sides = {k: f for k, f in offline_sides("iql", data).items() if k in ("o2o", "lean")}
    for f in sides.values():
        f(20)
    rounds: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for _ in range(args.rounds):
        for k, f in sides.items():
            rounds[k].append(timed(f, args.updates))
    results: dict[str, Any] = {
        "loadavg_before": os.getloadavg(),
        "limit": matmul_limit(args.updates, args.rounds),
        "rates": {k: {"wall": statistics.median(r[0] for r in v), "cpu": statistics.median(r[1] for r in v)} for k, v in rounds.items()},
        "profile": {"o2o": breakdown(labelled_o2o(data), args.updates), "lean": breakdown(lean_updates(data), args.updates)},
        "adam_step_ms": adam_steps(args.updates, args.rounds),
        "fused_adam_change": {name: fused_adam_change(name, data) for name in REGISTRY},
        "loadavg_after": os.getloadavg(),
    }
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> str:
    limit, rates, prof = results["limit"], results["rates"], results["profile"]
    lines = [
        f"load average {results['loadavg_before'][0]:.1f} → {results['loadavg_after'][0]:.1f}",
        (
            f"one IQL update: {limit['gflop_per_update']:.3f} GFLOP in {limit['matmuls_per_update']} matmuls; "
            f"replayed alone {limit['gflops']['cpu']:.0f} GFLOP/s per CPU-s ({limit['gflops']['wall']:.0f} wall) "
            f"→ {limit['updates_per_s']['cpu']:.0f} updates/s; a 256×256×256 product alone "
            f"{limit['gflops_256_square_cpu']:.0f} GFLOP/s"
        ),
        "",
        "| | updates/s (wall) | per CPU-s | ms per update | of which matmul kernels |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in ("o2o", "lean"):
        ms = sum(prof[side]["ms_per_update"].values())
        lines.append(
            f"| {side} | {rates[side]['wall']:.0f} | {rates[side]['cpu']:.0f} | {1e3 / rates[side]['cpu']:.2f} "
            f"(profiled {ms:.2f}) | {prof[side]['matmul_ms_per_update']:.2f} |"
        )
    lines += ["", "| ms per update (profiled) | o2o | lean |", "|---|---:|---:|"]
    for category in CATEGORIES:
        lines.append(f"| {category} | " + " | ".join(f"{prof[s]['ms_per_update'][category]:.2f}" for s in ("o2o", "lean")) + " |")
    adam = results["adam_step_ms"]
    lines += [
        "",
        "Adam step on IQL's groups, CPU ms: " + ", ".join(f"{k} {v:.2f}" for k, v in adam.items()),
        "",
        "| 20 updates from seed 0 | Σθ for-loop Adam | Σθ fused | max abs Δθ | updates per CPU-s for-loop | fused |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, change in results["fused_adam_change"].items():
        sums, rates = change["parameter_sum"], change["updates_per_cpu_s"]
        lines.append(
            f"| {name} | {sums['for-loop']:.9f} | {sums['fused']:.9f} | {change['max_abs_difference']:.1e} "
            f"| {rates['for-loop']:.0f} | {rates['fused']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
