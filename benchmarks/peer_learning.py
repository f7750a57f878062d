"""o2o's IQL against d3rlpy 2.8.1's IQL: the same dataset, budgets, hyperparameters and evaluation.

A standing check against an outside implementation (issue 12). For each seed, each side trains
offline for `--offline-updates` updates on the dataset, then online for `--online-steps`
environment steps (one update per step, minibatches uniform over dataset + online rows, actions
sampled from the Gaussian policy, no random steps), and is evaluated at the offline end and at
the end by `peer_eval.evaluate` (N whole episodes, deterministic actions, the same reset seeds on
both sides). It prints a Markdown table: normalized score at each point (mean and 95% Student-t
interval over seeds), training wall and CPU time (evaluation excluded) and each run's total wall time.

- o2o: `IQLConfig(...).build_algo()` and `algo.train()` until the trial is done, in a subprocess
  of o2o's venv — the calls a sweep's Tune trial makes, without Tune and MLflow, so the
  benchmark can evaluate between the phases with its own evaluator (a sweep runs the trial
  in a Tune actor, where nothing can be interposed at the offline end).
- d3rlpy: `peer_d3rlpy.py` in its own venv (d3rlpy pins Gymnasium 1.0.0), made on first use at
  `benchmarks/.peer-venv`: torch 2.13.0 first (the CPU build on this machine's disk), then
  d3rlpy 2.8.1, then MuJoCo 4.0.0 as in o2o's venv. Before training, both venvs step the same
  action sequence and must produce the same bytes (`peer_eval.simulator_digest`).

Runs are sequential, one torch thread each, sides alternating which goes first per seed, so both
get the same CPU. The protocol and every known difference: benchmarks/README.md.

    .venv/bin/python benchmarks/peer_learning.py                       # 3 seeds, 20k + 10k
    .venv/bin/python benchmarks/peer_learning.py --seeds 0 --offline-updates 500 \\
        --online-steps 500 --episodes 2 --json smoke.json              # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PEER_VENV = HERE / ".peer-venv"
PEER_INSTALL_STEPS: list[list[str]] = [["torch==2.13.0"], ["d3rlpy==2.8.1"], ["mujoco==4.0.0", "imageio==2.38.2"]]
"""pip installs, in this order: torch before d3rlpy, or pip resolves another (CUDA, GBs) torch;
MuJoCo as in o2o's venv (d3rlpy's Gymnasium 1.0.0 allows it); imageio, which Gymnasium 1.0.0's
MuJoCo module imports."""
PEER_PINS = {"torch": "2.13.0", "d3rlpy": "2.8.1", "mujoco": "4.0.0"}
"""Versions the peer venv must hold (torch's local tag, e.g. +cpu, aside)."""
SIDES = ("o2o", "d3rlpy")
CONFIDENCE = 0.95
Result = dict[str, Any]


# --- the peer venv and the simulator check -----------------------------------------------------


def peer_python(venv: Path) -> Path:
    """The peer venv's interpreter, the venv made first if it does not exist; a venv holding
    other versions than `PEER_PINS` is refused (delete it to rebuild)."""
    python = venv / "bin" / "python"
    if not venv.exists():
        print(f"making d3rlpy's venv at {venv} (once; ~1.3 GB)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for packages in PEER_INSTALL_STEPS:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    found = installed_versions(python, list(PEER_PINS))
    wrong = {p: v for p, v in found.items() if v.split("+")[0] != PEER_PINS[p]}
    if wrong:
        raise SystemExit(f"{venv} holds {wrong}, not {PEER_PINS}; delete it and run again to rebuild it")
    return python


def installed_versions(python: Path | str, packages: list[str]) -> dict[str, str]:
    """Package versions as `python`'s environment reports them."""
    code = f"import json; from importlib.metadata import version; print(json.dumps({{p: version(p) for p in {packages!r}}}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def simulator_digests(env_id: str, python: Path) -> dict[str, str]:
    """`peer_eval.simulator_digest` of `env_id` in o2o's venv and in the peer venv; they differ
    only if the two Gymnasium/MuJoCo stacks simulate differently."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from peer_eval import simulator_digest; print(simulator_digest({env_id!r}))"
    digests = {}
    for side, exe in (("o2o", sys.executable), ("d3rlpy", str(python))):
        run = subprocess.run([exe, "-c", code], capture_output=True, text=True, check=True, env=child_env())
        digests[side] = run.stdout.strip().splitlines()[-1]
    return digests


def child_env() -> dict[str, str]:
    """Environment of every run: one BLAS/OpenMP thread; no RAY_ADDRESS (each o2o run starts its
    own local Ray rather than joining a cluster someone else started)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- the dataset ---------------------------------------------------------------------------------


def find_dataset(name: str) -> Any:
    """The dataset as o2o resolves it; an o2o factory name (e.g. hopper-medium) is made if missing."""
    from o2o.platform.data import resolve_dataset
    from o2o.platform.factory import FactoryError, make_dataset, split_name

    try:
        split_name(name)
    except FactoryError:
        return resolve_dataset(name)
    return make_dataset(name)


def check_env(env_id: str) -> None:
    """Refuse an environment the comparison cannot run as matched: no D4RL reference returns
    (no normalized score), or action bounds other than [−1, 1] (d3rlpy's `fit_online` steps the
    env with the policy's [−1, 1] actions unscaled, o2o rescales them to the bounds)."""
    import gymnasium as gym

    from o2o.platform.data import normalized_score

    normalized_score(env_id, 0.0)
    space = gym.make(env_id).action_space
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        raise SystemExit(f"{env_id}: action bounds [{space.low}, {space.high}]; this benchmark needs [-1, 1]")


def export_npz(parquet: Path, out: Path) -> dict[str, float]:
    """The canonical table as .npz for the d3rlpy worker, with the episode return range o2o's
    reward scale uses. d3rlpy rebuilds each next state from the episode's next row, so the rows
    must chain (s' of row t is s of row t + 1); a table where they do not is refused."""
    from o2o.platform.data import read_parquet

    data = read_parquet(parquet)
    order = np.lexsort((data.t, data.eps_id))
    same_episode = data.eps_id[order][1:] == data.eps_id[order][:-1]
    broken = same_episode & np.any(data.new_obs[order][:-1] != data.obs[order][1:], axis=1)
    if broken.any():
        raise SystemExit(f"{parquet}: {int(broken.sum())} rows whose next state is not the next row's state")
    returns = data.episode_returns()
    span = {"return_min": float(returns.min()), "return_max": float(returns.max())}
    columns = ("obs", "actions", "rewards", "new_obs", "terminateds", "truncateds", "eps_id", "t")
    np.savez(out, **{c: getattr(data, c) for c in columns}, **span)
    return {**span, "episodes": len(returns), "transitions": len(data)}


# --- o2o's side ------------------------------------------------------------------------------------


def o2o_config(parquet: str, dataset_id: str, content_hash: str, env_id: str, seed: int, offline: int, online: int) -> Any:
    """o2o's IQL with every setting the comparison matches written out, defaults included."""
    from o2o.algorithms.iql import IQLConfig

    return (
        IQLConfig()
        .environment(env_id)
        .offline_data(input_=[parquet])
        .o2o(
            dataset_id=dataset_id,
            dataset_hash=content_hash,
            offline_updates=offline,
            online_env_steps=online,
            utd_ratio=1.0,
            sampling_rule="union",
            random_steps=0,
            learning_starts=0,
            weight_sync_interval=1,
            tau=0.005,
            hidden_sizes=[256, 256],
            num_critics=2,
            critic_layer_norm=False,
            phase_overrides={},
            normalize_observations=False,
            reward_normalization="return_range",
        )
        .training(
            expectile=0.7,
            temperature=3.0,
            max_weight=100.0,
            actor_lr_schedule="constant",
            actor_dropout=0.0,
            lr=3e-4,
            gamma=0.99,
            train_batch_size_per_learner=256,
        )
        .evaluation(evaluation_interval=0)
        .debugging(seed=seed)
    )


def o2o_worker(spec: str) -> None:
    """One seed of o2o's IQL (run in a subprocess by `run_side`): train each phase with
    `algo.train()` as a trial does, evaluate after each outside the timing, write the JSON."""
    import ray
    import torch
    from peer_eval import TrainingClock, episode_seeds, evaluate, run_record
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns

    args = json.loads(spec)
    torch.set_num_threads(1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = o2o_config(
            args["parquet"], args["dataset_id"], args["content_hash"], args["env"], args["seed"],
            args["offline_updates"], args["online_steps"],
        )
        algo = config.build_algo()
        assert algo.learner_group.is_local
        module = algo.learner_group._learner.module[DEFAULT_MODULE_ID]

        def policy(obs: np.ndarray) -> np.ndarray:
            batch = {Columns.OBS: torch.from_numpy(obs[None])}
            return module.forward_inference(batch)[Columns.ACTIONS][0].numpy()

        def train_phase(name: str, clock: TrainingClock) -> None:
            while algo.current_phase is not None and algo.current_phase.name == name:
                with clock:
                    algo.train()

        seeds = episode_seeds(args["seed"], args["episodes"])
        offline, online = TrainingClock(), TrainingClock()
        train_phase("offline", offline)
        offline_returns = evaluate(args["env"], policy, seeds)
        final_returns = None
        if args["online_steps"] > 0:
            train_phase("online", online)
            final_returns = evaluate(args["env"], policy, seeds)
        online_rows = algo.learner_group._learner.online_transitions()
        algo.stop()
    finally:
        ray.shutdown()
    packages = ("ray", "torch", "gymnasium", "mujoco", "numpy")
    result = run_record("o2o", args["seed"], seeds, offline_returns, final_returns, offline, online, online_rows, packages)
    Path(args["out"]).write_text(json.dumps(result, indent=2))


# --- running the sides --------------------------------------------------------------------------


def run_side(side: str, seed: int, args: argparse.Namespace, dataset: Any, npz: Path, python: Path, work: Path) -> Result:
    """One seed of one side in a fresh process; its JSON plus the process's total wall time."""
    out = work / f"{side}-{seed}.json"
    if side == "o2o":
        spec = {
            "parquet": str(dataset.parquet_path), "dataset_id": dataset.dataset_id,
            "content_hash": dataset.content_hash, "env": dataset.env_id, "seed": seed,
            "offline_updates": args.offline_updates, "online_steps": args.online_steps,
            "episodes": args.episodes, "out": str(out),
        }
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from peer_learning import o2o_worker; o2o_worker({json.dumps(spec)!r})"
        command = [sys.executable, "-c", code]
    else:
        command = [
            str(python), str(HERE / "peer_d3rlpy.py"), "--data", str(npz), "--env", dataset.env_id,
            "--seed", str(seed), "--offline-updates", str(args.offline_updates),
            "--online-steps", str(args.online_steps), "--episodes", str(args.episodes), "--out", str(out),
        ]
    log = work / f"{side}-{seed}.log"
    start = time.perf_counter()
    with log.open("w") as stream:
        code = subprocess.run(command, check=False, stdout=stream, stderr=subprocess.STDOUT, env=child_env()).returncode
    total = time.perf_counter() - start
    if code != 0 or not out.exists():
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"{side} seed {seed} failed (exit {code}); last lines of its log:\n{tail}")
    return {**json.loads(out.read_text()), "total_s": total}


# --- summary -------------------------------------------------------------------------------------


def t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and its 95% Student-t interval over seeds (None with fewer than two values). With
    3–5 seeds a percentile bootstrap has too few distinct resamples to cover 95%; the t-interval
    states its normality assumption instead."""
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarize(runs: list[Result], env_id: str, args: argparse.Namespace) -> dict[str, Result]:
    """Per side: score at the offline end and at the end (mean over each run's episodes, then
    mean and interval over seeds), wall times and rates (mean over seeds)."""
    from o2o.platform.data import normalized_score

    summary = {}
    for side in SIDES:
        mine = [r for r in runs if r["side"] == side]
        row: Result = {"seeds": [r["seed"] for r in mine]}
        for point in ("offline", "final"):
            per_seed = [float(np.mean(normalized_score(env_id, np.array(r[f"{point}_returns"])))) for r in mine if r[f"{point}_returns"]]
            row[f"{point}_score"] = t_interval(per_seed) if per_seed else None
            row[f"{point}_score_per_seed"] = per_seed
        for key in ("offline_train_s", "online_train_s", "offline_train_cpu_s", "online_train_cpu_s", "total_s"):
            row[key] = float(np.mean([r[key] for r in mine]))
        row["train_s"] = row["offline_train_s"] + row["online_train_s"]
        row["train_cpu_s"] = row["offline_train_cpu_s"] + row["online_train_cpu_s"]
        row["updates_per_s"] = float(np.mean([args.offline_updates / r["offline_train_s"] for r in mine]))
        row["env_steps_per_s"] = float(np.mean([args.online_steps / r["online_train_s"] for r in mine])) if args.online_steps else None
        summary[side] = row
    return summary


def table(summary: dict[str, Result]) -> str:
    """One Markdown row per side."""

    def score(s: tuple[float, float | None, float | None] | None) -> str:
        if s is None:
            return "—"
        mean, low, high = s
        return f"{mean:.1f}" if low is None else f"{mean:.1f} [{low:.1f}, {high:.1f}]"

    lines = [
        "| side | seeds | score, offline end | score, end | train s offline | online | both | train CPU s | total s | updates/s offline | env steps/s online |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side, row in summary.items():
        steps = "—" if row["env_steps_per_s"] is None else f"{row['env_steps_per_s']:.0f}"
        cells = [
            side, str(len(row["seeds"])), score(row["offline_score"]), score(row["final_score"]),
            f"{row['offline_train_s']:.0f}", f"{row['online_train_s']:.0f}", f"{row['train_s']:.0f}",
            f"{row['train_cpu_s']:.0f}", f"{row['total_s']:.0f}", f"{row['updates_per_s']:.0f}", steps,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--offline-updates", type=int, default=20_000, help="offline gradient updates per run (default: 20000)")
    parser.add_argument("--online-steps", type=int, default=10_000, help="online env steps per run, one update each; 0 skips the online phase (default: 10000)")
    parser.add_argument("--dataset", default="hopper-medium", help="o2o dataset name (made if missing), Minari id, D4RL .hdf5 or Parquet (default: hopper-medium)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes at each point (default: 10)")
    parser.add_argument("--json", default=None, help="also write the protocol, every run and the summary here")
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV, help=f"d3rlpy's venv, made if missing (default: {PEER_VENV})")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct and >= 0, got {args.seeds}")
    if args.offline_updates < 1 or args.online_steps < 0 or args.episodes < 1:
        parser.error("--offline-updates and --episodes must be >= 1, --online-steps >= 0")
    return args


def main() -> None:
    from o2o.platform.data import DatasetError
    from o2o.platform.factory import FactoryError

    args = parse_args()
    try:
        dataset = find_dataset(args.dataset)
        if dataset.env_id is None:
            raise DatasetError(f"dataset {args.dataset}: no environment recorded in it")
        check_env(dataset.env_id)
    except (DatasetError, FactoryError) as exc:
        raise SystemExit(str(exc)) from None
    python = peer_python(args.peer_venv)
    digests = simulator_digests(dataset.env_id, python)
    if len(set(digests.values())) != 1:
        raise SystemExit(f"{dataset.env_id} simulates differently in the two venvs (digests {digests}); the comparison would not be like for like")
    protocol = {
        "dataset": args.dataset, "content_hash": dataset.content_hash, "env": dataset.env_id,
        "offline_updates": args.offline_updates, "online_steps": args.online_steps,
        "episodes": args.episodes, "seeds": args.seeds, "interval": f"{CONFIDENCE:.0%} Student t over seeds",
        "simulator_digest": digests["o2o"],
    }
    runs: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="peer-learning-") as tmp:
        work = Path(tmp)
        npz = work / "dataset.npz"
        protocol["data"] = export_npz(dataset.parquet_path, npz)
        for i, seed in enumerate(args.seeds):
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                print(f"seed {seed}: {side} ...", flush=True)
                runs.append(run_side(side, seed, args, dataset, npz, python, work))
    summary = summarize(runs, dataset.env_id, args)
    print(
        f"\n{args.dataset} ({dataset.env_id}, {protocol['data']['transitions']} transitions), "
        f"{args.offline_updates} offline updates + {args.online_steps} online steps, "
        f"{args.episodes} evaluation episodes, seeds {args.seeds}; scores: mean [95% t-interval] over seeds\n"
    )
    print(table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"protocol": protocol, "runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
