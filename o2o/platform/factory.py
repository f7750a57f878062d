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
then drift apart. Runs therefore record the dataset's content hash. Datasets are written as
local Minari datasets (`o2o/<task>/<level>-v0`) with D4RL's reference scores, and converted to
the canonical Parquet by `o2o.platform.data.resolve_dataset` (from memory, not read back).

The rollout is laid out for speed and for data that does not depend on the machine's cores:
every part of a dataset is `ROLLOUT_GROUPS` groups of `ENVS_PER_GROUP` envs, each group with its
own seeds and share of the steps, run by worker processes on every core; a group steps its envs
in lockstep with one batched policy forward and Gymnasium's step computed for the group at once
(`_Locomotion`), and the dataset is the groups' episodes in group order. Datasets made before this
layout (up to commit 92101d1: 8 envs stepped one by one in one process) differ from today's of the
same name and seed: hopper-medium made here then had 3439 episodes (normalized 28.9; 3424 and 29.05
on an earlier machine), and has 3444 (28.9, hash 615071041a8e5b1d) now.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
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
ROLLOUT_GROUPS = 8
"""Independent groups each part of a dataset is rolled out in, each with its own seeds, its
own fixed share of the steps and its own envs; the data is the groups' episodes in group order.
The layout is fixed, so a dataset is the same whatever the number of cores that rolls it out
(a group gives the same bits in whichever process runs it), and up to this many cores help."""
ENVS_PER_GROUP = 8
"""Envs a group steps in lockstep, their observations sent through the policy as one batch."""
PARALLEL_MIN_STEPS = 50_000
"""Datasets smaller than this are rolled out in the calling process: a worker process takes
seconds to start (it imports torch and MuJoCo), more than it would save."""
PROGRESS_ITERATIONS = 64
"""Lockstep iterations between a group's progress reports."""
PROGRESS_SECONDS = 0.5
"""How often the parent of the rollout workers reports their progress."""


class FactoryError(ValueError):
    """A dataset the factory cannot make, with the reason in one line."""


@dataclass(frozen=True)
class Snapshot:
    step: int
    eval_return: float
    file: str


_SIZE = re.compile(r"^([1-9][0-9]*)([km]?)$")
_SIZE_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}


def split_name(name: str) -> tuple[str, str, int | None]:
    """A factory dataset's name, `<task>-<level>[-<transitions>]`, as (task, level, transitions),
    checked against TASKS and LEVELS: 'walker2d-medium-replay' → ('walker2d', 'medium-replay',
    None), 'hopper-medium-200k' → ('hopper', 'medium', 200000). A size in the name keeps a
    smaller dataset apart from the level's D4RL-sized one, in the cache and in every run's record."""
    task, _, level = name.partition("-")
    if task not in TASKS:
        raise FactoryError(f"dataset {name!r}: unknown task {task!r} (known: {', '.join(TASKS)})")
    if not level:
        raise FactoryError(f"dataset {name!r}: no level; a dataset name is <task>-<level>, e.g. {task}-medium")
    size = None
    head, _, tail = level.rpartition("-")
    sized = _SIZE.match(tail)
    if head and sized:
        level, size = head, int(sized.group(1)) * _SIZE_UNITS[sized.group(2)]
    if level not in LEVELS:
        raise FactoryError(
            f"dataset {name!r}: unknown level {level!r} (known: {', '.join(LEVELS)}; a size may follow, "
            f"e.g. {task}-medium-200k)"
        )
    return task, level, size


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
    actor: TanhGaussianActor | None,
    num_steps: int,
    seed: int,
    num_envs: int = ENVS_PER_GROUP,
    on_steps: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> list[dict]:
    """Episodes (dicts of Minari's episode fields) totalling exactly `num_steps` transitions.

    `actor` samples the actions (D4RL's collection rule: the stochastic SAC policy); None acts
    uniformly at random in [−1, 1]. The steps are split into `ROLLOUT_GROUPS` groups of
    `num_envs` envs (see `ROLLOUT_GROUPS`); episodes come in group order, then env order, and
    the last episode of each env is cut (truncated) where its share of the budget ends.
    `workers` processes run the groups (default: every core; this process below
    `PARALLEL_MIN_STEPS`), which changes no episode. `on_steps(done)` reports the transitions
    collected so far.
    """
    return _rollout_parts(env_id, [(actor, num_steps, seed)], num_envs, on_steps, workers)


def _rollout_parts(
    env_id: str,
    parts: list[tuple[TanhGaussianActor | None, int, int]],
    num_envs: int,
    on_steps: Callable[[int], None] | None,
    workers: int | None,
) -> list[dict]:
    """The episodes of every (actor, steps, seed) part in order, all parts' groups run by one
    set of workers (starting a worker process costs seconds)."""
    if num_envs < 1 or (workers is not None and workers < 1):
        raise FactoryError(f"a rollout needs at least 1 env per group and 1 worker (got {num_envs} and {workers})")
    groups = [group for actor, n, seed in parts for group in _plan(env_id, actor, n, seed, num_envs)]
    total = sum(group.num_steps for group in groups)
    if workers is None:
        workers = 1 if total < PARALLEL_MIN_STEPS else len(os.sched_getaffinity(0))
    workers = min(workers, len(groups))
    report = on_steps or (lambda done: None)
    results = _roll_here(groups, report) if workers == 1 else _roll_in_workers(groups, workers, report)
    report(total)
    return [episode for episodes in results for episode in episodes]


@dataclass(frozen=True)
class _Group:
    """One group of the fixed layout: its envs, its share of the steps and its own seeds."""

    env_id: str
    actor: TanhGaussianActor | None
    num_steps: int
    num_envs: int
    seed: np.random.SeedSequence


def _plan(env_id: str, actor: TanhGaussianActor | None, num_steps: int, seed: int, num_envs: int) -> list[_Group]:
    """The `ROLLOUT_GROUPS` groups of one part: equal shares of the steps (the first groups one
    more where they do not divide), seeds spawned from the part's seed."""
    share, extra = divmod(num_steps, ROLLOUT_GROUPS)
    seeds = np.random.SeedSequence(seed).spawn(ROLLOUT_GROUPS)
    return [_Group(env_id, actor, share + (g < extra), num_envs, seeds[g]) for g in range(ROLLOUT_GROUPS)]


def _roll_here(groups: list[_Group], on_steps: Callable[[int], None]) -> list[list[dict]]:
    """Every group in this process, one after another, on one torch thread like a worker's."""
    done = 0

    def add(steps: int) -> None:
        nonlocal done
        done += steps
        on_steps(done)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_roll_group(group, add) for group in groups]
    finally:
        torch.set_num_threads(threads)


def _roll_in_workers(groups: list[_Group], workers: int, on_steps: Callable[[int], None]) -> list[list[dict]]:
    """Every group in a pool of `workers` processes, results in group order; the workers add
    their steps to a shared counter that is reported here every `PROGRESS_SECONDS`. A failed
    group (or a worker that died) fails the rollout; the groups not yet started are dropped."""
    context = multiprocessing.get_context("spawn")  # never fork a process that runs Ray or torch threads
    counter = context.Value("q", 0)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(counter,))
    try:
        pending = [pool.submit(_roll_group_in_worker, group) for group in groups]
        while True:
            done, not_done = wait(pending, timeout=PROGRESS_SECONDS, return_when=FIRST_EXCEPTION)
            failed = [future.exception() for future in done if future.exception() is not None]
            if failed:
                raise failed[0]
            if not not_done:
                return [future.result() for future in pending]
            on_steps(counter.value)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


_worker_counter: Any = None
"""A rollout worker's handle on the steps counter its parent reports."""


def _init_worker(counter: Any) -> None:
    """A rollout worker: one torch thread, as in `_roll_here` (a batched forward's bits can
    depend on the thread count)."""
    global _worker_counter
    _worker_counter = counter
    torch.set_num_threads(1)


def _roll_group_in_worker(group: _Group) -> list[dict]:
    def add(steps: int) -> None:
        with _worker_counter.get_lock():
            _worker_counter.value += steps

    return _roll_group(group, add)


def _roll_group(group: _Group, on_steps: Callable[[int], None]) -> list[dict]:
    """One group's episodes: its envs stepped in lockstep, one batched policy forward per
    step of all envs, results written into arrays allocated once. `on_steps` gets the steps
    taken since its last call."""
    n, e = group.num_steps, group.num_envs
    env_seeds, action_seed = group.seed.spawn(2)
    made = [gym.make(group.env_id, disable_env_checker=True) for _ in range(e)]
    limit = made[0].spec.max_episode_steps or np.iinfo(np.int64).max
    sim = _Locomotion([env.unwrapped for env in made])  # the time limit is kept here
    act = _Sampler(group.actor, np.random.default_rng(action_seed), e, sim.act_dim)
    # The policy's input lives in a torch-allocated (aligned) buffer, the same wherever it runs.
    obs_t = torch.empty((e, sim.obs_dim), dtype=torch.float32)
    obs = obs_t.numpy()
    starts: list[list[np.ndarray]] = [[] for _ in range(e)]
    for i, env_seed in enumerate(env_seeds.generate_state(e)):
        obs[i] = sim.reset(i, seed=int(env_seed))
        starts[i].append(obs[i].copy())
    iterations = -(-n // e)
    next_obs = np.empty((iterations, e, sim.obs_dim), np.float32)
    actions = np.empty((iterations, e, sim.act_dim), np.float32)
    rewards = np.empty((iterations, e), np.float64)
    terminated = np.zeros((iterations, e), bool)
    truncated = np.zeros((iterations, e), bool)
    elapsed = np.zeros(e, np.int64)
    reported = 0
    for t in range(iterations):
        k = e if t < iterations - 1 or n % e == 0 else n % e  # the last iteration steps the first n % e
        actions[t] = act(obs_t)
        next_obs[t, :k], rewards[t, :k], terminated[t, :k] = sim.step(actions[t], k)
        elapsed[:k] += 1
        truncated[t, :k] = elapsed[:k] >= limit
        obs[:k] = next_obs[t, :k]
        for i in np.flatnonzero(terminated[t, :k] | truncated[t, :k]):
            obs[i] = sim.reset(i)
            elapsed[i] = 0
            starts[i].append(obs[i].copy())
        if t % PROGRESS_ITERATIONS == PROGRESS_ITERATIONS - 1 or t == iterations - 1:
            taken = min((t + 1) * e, n)
            on_steps(taken - reported)
            reported = taken
    for env in made:
        env.close()
    episodes = []
    for i in range(e):
        rows = slice(0, n // e + (i < n % e))  # env i's share of the steps
        columns = (next_obs[rows, i], actions[rows, i], rewards[rows, i], terminated[rows, i], truncated[rows, i])
        episodes += _episodes(starts[i], *columns)
    return episodes


class _Locomotion:
    """Gymnasium's v5 Hopper, Walker2d and HalfCheetah `step` for a group of envs at once.

    Gymnasium's own step spent about as long in numpy on a state of a dozen numbers as MuJoCo
    spent simulating it (`is_healthy` twice, reward and info dicts, and `mj_rnePostConstraint`'s
    contact forces, which nothing in these tasks reads). Here MuJoCo steps each env and the
    rest — observation, reward, termination, with Gymnasium's formulas and float types — is one
    vectorized pass over the group; resets stay Gymnasium's. tests/test_factory.py checks it
    against Gymnasium's step bit for bit.
    """

    def __init__(self, envs: list[Any]) -> None:
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
        from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
        from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

        env = envs[0]
        if not isinstance(env, (HopperEnv, Walker2dEnv, HalfCheetahEnv)):
            raise FactoryError(f"the dataset factory rolls out {', '.join(TASKS.values())}, not {env.spec.id}")
        self.envs = envs
        self.frame_skip, self.dt = env.frame_skip, env.dt
        self.forward_weight, self.ctrl_weight = env._forward_reward_weight, env._ctrl_cost_weight
        self.first = int(env._exclude_current_positions_from_observation)
        self.legged = not isinstance(env, HalfCheetahEnv)  # clipped velocities, a health check
        self.state_range = getattr(env, "_healthy_state_range", None)  # Hopper only
        if self.legged:
            self.healthy_reward, self.terminate = env._healthy_reward, env._terminate_when_unhealthy
            self.z_range, self.angle_range = env._healthy_z_range, env._healthy_angle_range
        self.obs_dim, self.act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.qpos = np.empty((len(envs), env.model.nq))
        self.qvel = np.empty((len(envs), env.model.nv))
        self.x_before = np.empty(len(envs))

    def reset(self, i: int, seed: int | None = None) -> np.ndarray:
        """Env `i`'s first observation of a new episode (Gymnasium's reset)."""
        return self.envs[i].reset(seed=seed)[0]

    def step(self, actions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step envs 0..k-1 by `actions[:k]`: their (observations, rewards, terminated)."""
        for i in range(k):
            env = self.envs[i]
            self.x_before[i] = env.data.qpos[0]
            env.data.ctrl[:] = actions[i]
            mujoco.mj_step(env.model, env.data, nstep=self.frame_skip)
            self.qpos[i] = env.data.qpos
            self.qvel[i] = env.data.qvel
        qpos, qvel = self.qpos[:k], self.qvel[:k]
        x_velocity = (qpos[:, 0] - self.x_before[:k]) / self.dt
        ctrl_cost = self.ctrl_weight * np.sum(np.square(actions[:k]), axis=1)  # float32, as Gymnasium's
        if not self.legged:
            obs = np.concatenate([qpos[:, self.first :], qvel], axis=1)
            return obs, self.forward_weight * x_velocity - ctrl_cost, np.zeros(k, bool)
        obs = np.concatenate([qpos[:, self.first :], np.clip(qvel, -10, 10)], axis=1)
        z, angle = qpos[:, 1], qpos[:, 2]
        healthy = (self.z_range[0] < z) & (z < self.z_range[1])
        healthy &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.state_range is not None:
            state = np.concatenate([qpos[:, 2:], qvel], axis=1)
            healthy &= np.all((self.state_range[0] < state) & (state < self.state_range[1]), axis=1)
        reward = (self.forward_weight * x_velocity + healthy * self.healthy_reward) - ctrl_cost
        return obs, reward, ~healthy & self.terminate


def _episodes(
    starts: list[np.ndarray],
    next_obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> list[dict]:
    """One env's steps cut into Minari episodes (T + 1 observations each); an episode still
    running at the end is marked truncated."""
    bounds = [0, *(np.flatnonzero(terminated | truncated) + 1).tolist()]
    if bounds[-1] < len(rewards):
        bounds.append(len(rewards))
    episodes = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        truncations = truncated[a:b].copy()
        truncations[-1] |= not terminated[b - 1]
        episodes.append(
            {
                "observations": np.concatenate([starts[k][None], next_obs[a:b]]),
                "actions": actions[a:b].copy(),
                "rewards": rewards[a:b].copy(),
                "terminations": terminated[a:b].copy(),
                "truncations": truncations,
            }
        )
    return episodes


@dataclass(frozen=True)
class _Sampler:
    """A batch of observations → a batch of actions in [−1, 1]: sampled from the SAC actor
    (D4RL's data-collection rule), or uniformly at random without one."""

    actor: TanhGaussianActor | None
    rng: np.random.Generator
    num_envs: int
    dim: int

    @torch.inference_mode()
    def __call__(self, obs: torch.Tensor) -> np.ndarray:
        if self.actor is None:
            return self.rng.uniform(-1, 1, (self.num_envs, self.dim)).astype(np.float32)
        mean, log_std = self.actor(obs)
        noise = self.rng.standard_normal((self.num_envs, self.dim), dtype=np.float32)
        return np.tanh(mean.numpy() + np.exp(log_std.numpy()) * noise)


def make_dataset(
    name: str,
    seed: int = 0,
    size: int | None = None,
    policy_dir: Path = POLICY_DIR,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    workers: int | None = None,
) -> ResolvedDataset:
    """Make dataset `name` (e.g. 'hopper-medium', or 'hopper-medium-200k' for 200k transitions)
    as a local Minari dataset and canonical Parquet.

    `size` is the number of transitions when the name carries none (default: D4RL's size for
    the level); a name's own size and another `size` are refused. An existing dataset is returned as it is, unless `overwrite`; one of another `size` than
    asked for is refused rather than silently returned. Nothing is left half-written: the
    request is checked (size, policies) before an existing dataset is deleted, episodes are
    collected in memory, then Minari writes the dataset; a failure removes the partial directory.
    `workers` processes roll it out (default: every core, in this process below
    `PARALLEL_MIN_STEPS`); the data does not depend on how many.
    """
    import minari

    task, level, named_size = split_name(name)
    if named_size is not None and size is not None and size != named_size:
        raise FactoryError(f"dataset {name!r}: its name says {named_size} transitions, --size says {size}")
    size = named_size if size is None else size
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
    actors = [None if policy_file is None else load_actor(task, policy_file, policy_dir) for policy_file, _ in parts]
    episodes = _rollout_parts(
        env_id,
        [(actor, n, seed + 7919 * k) for k, (actor, (_, n)) in enumerate(zip(actors, parts))],
        ENVS_PER_GROUP,
        None if progress is None else (lambda done: progress(done, total)),
        workers,
    )
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
    return resolve_dataset(name, episodes=buffers)  # converted from memory, not read back


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
