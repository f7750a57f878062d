"""The dataset factory: D4RL-style datasets made on this machine, with o2o's own SAC.

No dataset hub is reachable where o2o runs its tests, so the platform makes its own data, as
D4RL did: train a behaviour policy with SAC, keep snapshots along the way, and roll them out.

- `random`: uniform random actions.
- `medium`: the snapshot whose evaluation return is closest to one third of D4RL's expert
  reference return (D4RL: "trained to about a third of expert performance").
- `medium-replay`: our construction of D4RL's "replay buffer up to medium": episodes from every
  snapshot up to and including the medium one, in equal shares — the curriculum the replay
  buffer would have held, regenerated from small committed policies instead of stored.
- `expert`: the best snapshot (only where training reached ≥ 2/3 of the reference return).
- `medium-expert`: `medium` and `expert` concatenated, as in D4RL.

Policies are stored as small actor state dicts under `o2o/datasets/policies/<task>/` with a
`manifest.json` that records how they were trained and each snapshot's average return, so a
dataset regenerates from (policy, seed) in minutes, bit for bit on one machine. Another CPU can
round the policy's and MuJoCo's floating point differently in the last bits, and the rollouts
then drift apart: hopper-medium made here had 3439 episodes (normalized 28.9) against 3424 (29.05)
on an earlier machine. Runs therefore record the dataset's content hash. Datasets are written
as local Minari datasets (`o2o/<task>/<level>-v0`) with D4RL's reference scores, and converted to
the canonical Parquet by `o2o.platform.data.resolve_dataset`.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from o2o import code_version
from o2o.platform.data import REFERENCE_RETURNS, ResolvedDataset, minari_id_for, resolve_dataset
from o2o.platform.networks import TanhGaussianActor

TASKS: dict[str, str] = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "medium-expert", "expert")
DEFAULT_SIZES: dict[str, int] = {
    "random": 1_000_000,
    "medium": 1_000_000,
    "medium-replay": 200_000,
    "expert": 1_000_000,
}
POLICY_DIR = Path(__file__).resolve().parent.parent / "datasets" / "policies"
HIDDEN = [256, 256]


class FactoryError(ValueError):
    """A dataset the factory cannot make, with the reason in one line."""


@dataclass(frozen=True)
class Snapshot:
    step: int
    eval_return: float
    file: str


def split_name(name: str) -> tuple[str, str]:
    """'walker2d-medium-replay' → ('walker2d', 'medium-replay'), checked against TASKS and LEVELS."""
    task, _, level = name.partition("-")
    if task not in TASKS:
        raise FactoryError(f"dataset {name!r}: unknown task {task!r} (known: {', '.join(TASKS)})")
    if not level:
        raise FactoryError(f"dataset {name!r}: no level; a dataset name is <task>-<level>, e.g. {task}-medium")
    if level not in LEVELS:
        raise FactoryError(f"dataset {name!r}: unknown level {level!r} (known: {', '.join(LEVELS)})")
    return task, level


def load_manifest(task: str, policy_dir: Path = POLICY_DIR) -> dict:
    path = policy_dir / task / "manifest.json"
    if not path.exists():
        raise FactoryError(
            f"no behaviour policies for {task!r} at {path.parent}; train them with "
            f"`o2o datasets train-policies {task}`"
        )
    return json.loads(path.read_text())


def load_actor(task: str, file: str, policy_dir: Path = POLICY_DIR) -> TanhGaussianActor:
    env = gym.make(TASKS[task])
    actor = TanhGaussianActor(env.observation_space.shape[0], env.action_space.shape[0], HIDDEN)
    actor.load_state_dict(torch.load(policy_dir / task / file, weights_only=True))
    return actor.eval()


def rollout(
    env_id: str,
    policy: Callable[[np.ndarray], np.ndarray] | None,
    num_steps: int,
    seed: int,
    num_envs: int = 8,
    on_steps: Callable[[int], None] | None = None,
) -> list:
    """Episodes (dicts of Minari's episode fields) totalling exactly `num_steps` transitions.

    `policy` maps a batch of observations to actions in [−1, 1]; None acts uniformly at random.
    The last episode of each env is cut (truncated) where the budget ends.
    """
    envs = [gym.make(env_id) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    act_dim = envs[0].action_space.shape[0]
    obs = np.stack([env.reset(seed=seed * 1000 + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    open_eps = [_new_episode(o) for o in obs]
    done_eps: list = []
    taken = 0
    while taken < num_steps:
        actions = rng.uniform(-1, 1, (num_envs, act_dim)).astype(np.float32) if policy is None else policy(obs)
        for i, env in enumerate(envs):
            if taken >= num_steps:
                break
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            ep = open_eps[i]
            ep["actions"].append(actions[i])
            ep["rewards"].append(float(reward))
            ep["terminations"].append(bool(terminated))
            ep["truncations"].append(bool(truncated))
            ep["observations"].append(np.asarray(next_obs, np.float32))
            taken += 1
            if terminated or truncated:
                done_eps.append(ep)
                next_obs, _ = env.reset()
                open_eps[i] = _new_episode(next_obs)
            obs[i] = next_obs
        if on_steps is not None:
            on_steps(taken)
    for ep in open_eps:
        if ep["actions"]:
            ep["truncations"][-1] = True
            done_eps.append(ep)
    return [{k: np.asarray(v) for k, v in ep.items()} for ep in done_eps]


def _new_episode(obs: np.ndarray) -> dict:
    return {"observations": [np.asarray(obs, np.float32)], "actions": [], "rewards": [], "terminations": [], "truncations": []}


def stochastic_policy(actor: TanhGaussianActor, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Actions sampled from the SAC actor (D4RL's data-collection rule), reproducibly."""
    generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        mean, log_std = actor(torch.from_numpy(obs))
        noise = torch.randn(mean.shape, generator=generator)
        return torch.tanh(mean + log_std.exp() * noise).numpy()

    return act


def make_dataset(
    name: str,
    seed: int = 0,
    size: int | None = None,
    policy_dir: Path = POLICY_DIR,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> ResolvedDataset:
    """Make dataset `name` (e.g. 'hopper-medium') as a local Minari dataset and canonical Parquet.

    An existing dataset is returned as it is, unless `overwrite`; one of another `size` than
    asked for is refused rather than silently returned. Nothing is left half-written: the
    request is checked (size, policies) before an existing dataset is deleted, episodes are
    collected in memory, then Minari writes the dataset; a failure removes the partial directory.
    """
    import minari

    task, level = split_name(name)
    if size is not None and size < 1:
        raise FactoryError(f"dataset {name!r}: --size must be at least 1 (got {size})")
    env_id = TASKS[task]
    dataset_id = minari_id_for(name)
    exists = dataset_id in minari.list_local_datasets()
    if exists and not overwrite and size is None:
        return resolve_dataset(name)
    parts = _level_parts(task, level, size, policy_dir)
    total = sum(n for _, n in parts)
    if exists and not overwrite:
        return _existing(name, total)
    if exists:
        minari.delete_dataset(dataset_id)
    episodes: list = []
    done_before = 0
    for k, (policy_file, n) in enumerate(parts):
        policy = None if policy_file is None else stochastic_policy(load_actor(task, policy_file, policy_dir), seed + k)
        report = None if progress is None else (lambda t, base=done_before: progress(base + t, total))
        episodes += rollout(env_id, policy, n, seed=seed + 7919 * k, on_steps=report)
        done_before += n
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=i, infos={}, **ep) for i, ep in enumerate(episodes)]
    ref_min, ref_max = REFERENCE_RETURNS[task]
    try:
        with warnings.catch_warnings():
            # Minari asks for an author's e-mail; a dataset made on the user's machine has none.
            warnings.filterwarnings("ignore", message="`author_email` is set to None", category=UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env_id,
                eval_env=env_id,
                algorithm_name=f"o2o SAC behaviour policy ({level})",
                author="o2o dataset factory",
                code_permalink=", ".join(f"{k} {v}" for k, v in code_version().items()),
                ref_min_score=ref_min,
                ref_max_score=ref_max,
                description=f"o2o factory dataset {name}, seed {seed}: {_describe(parts)}",
            )
    except BaseException:
        shutil.rmtree(Path(minari.storage.get_dataset_path(dataset_id)), ignore_errors=True)
        raise
    return resolve_dataset(name)


def _existing(name: str, transitions: int) -> ResolvedDataset:
    """The dataset `name` as it exists, if it holds the `transitions` asked for; FactoryError
    otherwise, since only --overwrite replaces a dataset."""
    resolved = resolve_dataset(name)
    if resolved.num_transitions != transitions:
        raise FactoryError(
            f"dataset {name!r} already exists with {resolved.num_transitions} transitions, not "
            f"{transitions}; pass --overwrite to replace it"
        )
    return resolved


def _level_parts(task: str, level: str, size: int | None, policy_dir: Path) -> list[tuple[str | None, int]]:
    """(policy file or None for random, transitions) pairs that make up a level."""
    if level == "random":
        return [(None, size or DEFAULT_SIZES["random"])]
    manifest = load_manifest(task, policy_dir)
    if level in ("expert", "medium-expert") and manifest.get("expert") is None:
        raise FactoryError(
            f"{task}: training did not reach expert level on this machine "
            f"(best return {manifest['best_return']:.0f}); no {level} dataset"
        )
    if level == "medium":
        return [(manifest["medium"], size or DEFAULT_SIZES["medium"])]
    if level == "expert":
        return [(manifest["expert"], size or DEFAULT_SIZES["expert"])]
    if level == "medium-expert":
        half = size // 2 if size else DEFAULT_SIZES["medium"]
        return [(manifest["medium"], half), (manifest["expert"], half)]
    curriculum = manifest["replay_curriculum"]
    n = size or DEFAULT_SIZES["medium-replay"]
    shares = [n // len(curriculum)] * len(curriculum)
    shares[-1] += n - sum(shares)
    return list(zip(curriculum, shares))


def _describe(parts: list[tuple[str | None, int]]) -> str:
    return ", ".join(f"{n} transitions from {f or 'uniform random actions'}" for f, n in parts)


def train_policies(
    task: str,
    env_steps: int,
    seed: int = 0,
    snapshot_every: int = 5000,
    eval_episodes: int = 5,
    policy_dir: Path = POLICY_DIR,
    log: Callable[[str], None] = print,
) -> dict:
    """Train SAC on `task` and keep actor snapshots; writes the policies and their manifest.

    The behaviour learner is o2o's own `SACLearner` with its replay store, fed by an
    `O2OEnvRunner`, driven in this process without Ray: a dataset is a single-process job,
    and Ray's own processes would take a large share of a small machine.
    """
    from o2o.algorithms.sac import SACConfig
    from o2o.platform.engine import Phase
    from o2o.platform.replay import Sampling
    from o2o.platform.rollout import O2OEnvRunner

    if task not in TASKS:
        raise FactoryError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if env_steps < 1:
        raise FactoryError(f"--env-steps must be at least 1 (got {env_steps})")
    env_id = TASKS[task]
    torch.manual_seed(seed)
    config = SACConfig().environment(env_id).o2o(online_env_steps=env_steps).debugging(seed=seed)
    learner = config.build_learner(env=gym.make(env_id))
    env = gym.make(env_id)
    learner.build_replay(None, env.observation_space.shape[0], env.action_space.shape[0])
    learner.on_phase_start(Phase("online", env_steps, "env_steps"))
    runner = O2OEnvRunner(config=config)
    sync = _weight_copier(learner.net, runner.module)
    out, tmp = policy_dir / task, policy_dir / f".{task}.training"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    snapshots: list[Snapshot] = []
    start = time.time()
    for step in range(1, env_steps + 1):
        learner.add_online(runner.collect(1, random_actions=step <= config.random_steps).rows)
        if step >= config.learning_starts:
            learner.run_updates(1, Sampling("online"))
            sync()
        if step % snapshot_every == 0 or step == env_steps:
            ret = evaluate_actor(env_id, learner.net.actor, eval_episodes, seed=seed + step)
            file = f"step_{step:07d}.pt"
            torch.save(learner.net.actor.state_dict(), tmp / file)
            snapshots.append(Snapshot(step, ret, file))
            log(f"{task}: {step} env steps, eval return {ret:.1f}, {time.time() - start:.0f}s")
    manifest = _select(task, snapshots, env_steps, seed, eval_episodes, time.time() - start)
    keep = {manifest["medium"], manifest.get("expert"), *manifest["replay_curriculum"]} - {None}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in keep:
        shutil.copy(tmp / f, out / f)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(tmp)
    return manifest


def _weight_copier(source: torch.nn.Module, target: torch.nn.Module) -> Callable[[], None]:
    """Copy the learner's actor weights into the runner's module (same parameter names)."""
    src, dst = source.state_dict(keep_vars=True), target.state_dict(keep_vars=True)
    pairs = ([dst[k].data for k in dst], [src[k].data for k in dst])
    return lambda: torch._foreach_copy_(*pairs)


@torch.no_grad()
def evaluate_actor(env_id: str, actor: TanhGaussianActor, episodes: int, seed: int) -> float:
    """Mean return of the deterministic (tanh-mean) policy over `episodes` episodes."""
    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            action = actor.deterministic(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def _select(task: str, snapshots: list[Snapshot], env_steps: int, seed: int, episodes: int, seconds: float) -> dict:
    """Pick medium (closest to ⅓ of the reference return), expert (best, if ≥ ⅔) and the curriculum."""
    ref_max = REFERENCE_RETURNS[task][1]
    medium = min(snapshots, key=lambda s: abs(s.eval_return - ref_max / 3))
    best = max(snapshots, key=lambda s: s.eval_return)
    curriculum = [s.file for s in snapshots if s.step <= medium.step]
    if len(curriculum) > 5:
        idx = np.linspace(0, len(curriculum) - 1, 5).round().astype(int)
        curriculum = [curriculum[i] for i in idx]
    return {
        "task": task,
        "env_id": TASKS[task],
        "trained_with": f"o2o SAC (256x2, batch 256, lr 3e-4, UTD 1, 5k random steps), seed {seed}, {env_steps} env steps",
        "command": f"o2o datasets train-policies {task} --env-steps {env_steps} --seed {seed}",
        "train_seconds": round(seconds),
        "eval_episodes": episodes,
        "snapshots": [vars(s) for s in snapshots],
        "medium": medium.file,
        "medium_return": medium.eval_return,
        "expert": best.file if best.eval_return >= 2 * ref_max / 3 else None,
        "best_return": best.eval_return,
        "replay_curriculum": curriculum,
    }
