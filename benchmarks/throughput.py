"""Throughput of o2o's learners against plain single-file PyTorch loops doing the same work.

Protocol (benchmarks/README.md): one process, one torch thread, the same networks (256×2),
batch 256, Hopper-v5 dimensions; each side warmed up, then timed over the same number of
updates (or env steps), alternating sides for `--rounds` rounds; the median is reported.

    python benchmarks/throughput.py                 # offline IQL, online SAC, 1M-row memory
    python benchmarks/throughput.py --only offline
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OBS, ACT, HIDDEN, BATCH = 11, 3, 256, 256


def mlp(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, o))


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.standard_normal((n, OBS), dtype=np.float32),
        "actions": rng.uniform(-0.99, 0.99, (n, ACT)).astype(np.float32),
        "rewards": rng.standard_normal(n, dtype=np.float32),
        "new_obs": rng.standard_normal((n, OBS), dtype=np.float32),
        "terminateds": (rng.random(n) < 0.01).astype(np.float32),
    }


# --- plain PyTorch IQL, written as a single-file implementation would (CORL's layout) ---------


class PlainIQL:
    """Twin Q, V, Gaussian actor; three optimizers, three backward passes, Polyak target."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self.data = {k: torch.from_numpy(v) for k, v in data.items()}
        self.n = len(data["rewards"])
        self.q1, self.q2, self.v = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1), mlp(OBS, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = mlp(OBS, ACT)
        self.log_std = nn.Parameter(torch.zeros(ACT))
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=3e-4)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=3e-4)
        self.a_opt = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=3e-4)

    def update(self) -> None:
        idx = torch.randint(0, self.n, (BATCH,))
        o, a, r, o2, d = (self.data[k][idx] for k in ("obs", "actions", "rewards", "new_obs", "terminateds"))
        oa = torch.cat([o, a], -1)
        with torch.no_grad():
            q_t = torch.min(self.q1_t(oa), self.q2_t(oa)).squeeze(-1)
            next_v = self.v(o2).squeeze(-1)
        v = self.v(o).squeeze(-1)
        u = q_t - v
        v_loss = (torch.abs(0.7 - (u < 0).float()) * u**2).mean()
        self.v_opt.zero_grad()
        v_loss.backward()
        self.v_opt.step()
        target = r + 0.99 * (1 - d) * next_v
        q_loss = ((self.q1(oa).squeeze(-1) - target) ** 2).mean() + ((self.q2(oa).squeeze(-1) - target) ** 2).mean()
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        w = torch.exp(3.0 * u.detach()).clamp(max=100.0)
        mean = torch.tanh(self.actor(o))
        logp = torch.distributions.Normal(mean, self.log_std.exp()).log_prob(a).sum(-1)
        a_loss = -(w * logp).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()
        with torch.no_grad():
            for t, s in zip([*self.q1_t.parameters(), *self.q2_t.parameters()], [*self.q1.parameters(), *self.q2.parameters()]):
                t.lerp_(s, 0.005)


# --- plain PyTorch SAC, CleanRL's loop shape, UTD 1 ---------------------------------------------


class PlainSAC:
    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.env = gym.make("Hopper-v5")
        self.obs, _ = self.env.reset(seed=seed)
        self.q1, self.q2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = mlp(OBS, 2 * ACT)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=3e-4)
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.al_opt = torch.optim.Adam([self.log_alpha], lr=3e-4)
        cap = 100_000
        self.buf = {k: torch.zeros(cap, w) for k, w in (("o", OBS), ("a", ACT), ("r", 1), ("o2", OBS), ("d", 1))}
        self.n = 0

    def sample(self, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.actor(o).chunk(2, -1)
        log_std = log_std.clamp(-5, 2)
        dist = torch.distributions.Normal(mean, log_std.exp())
        u = dist.rsample()
        a = torch.tanh(u)
        logp = dist.log_prob(u).sum(-1) - torch.log(1 - a.pow(2) + 1e-6).sum(-1)
        return a, logp

    def step(self) -> None:
        with torch.no_grad():
            a, _ = self.sample(torch.as_tensor(self.obs, dtype=torch.float32)[None])
        a = a[0].numpy()
        o2, r, term, trunc, _ = self.env.step(a)
        i = self.n % 100_000
        for k, v in (("o", self.obs), ("a", a), ("r", [r]), ("o2", o2), ("d", [float(term)])):
            self.buf[k][i] = torch.as_tensor(np.asarray(v, dtype=np.float32))
        self.n += 1
        self.obs = self.env.reset()[0] if term or trunc else o2
        if self.n >= BATCH:
            self.update()

    def update(self) -> None:
        idx = torch.randint(0, min(self.n, 100_000), (BATCH,))
        o, a, r, o2, d = (self.buf[k][idx] for k in ("o", "a", "r", "o2", "d"))
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.sample(o2)
            oa2 = torch.cat([o2, a2], -1)
            q_t = torch.min(self.q1_t(oa2), self.q2_t(oa2)).squeeze(-1) - alpha * logp2
            y = r.squeeze(-1) + 0.99 * (1 - d.squeeze(-1)) * q_t
        oa = torch.cat([o, a], -1)
        q_loss = F.mse_loss(self.q1(oa).squeeze(-1), y) + F.mse_loss(self.q2(oa).squeeze(-1), y)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        pi, logp = self.sample(o)
        opi = torch.cat([o, pi], -1)
        a_loss = (alpha * logp - torch.min(self.q1(opi), self.q2(opi)).squeeze(-1)).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()
        al_loss = -(self.log_alpha * (logp.detach() - ACT)).mean()
        self.al_opt.zero_grad()
        al_loss.backward()
        self.al_opt.step()
        with torch.no_grad():
            for t, s in zip([*self.q1_t.parameters(), *self.q2_t.parameters()], [*self.q1.parameters(), *self.q2.parameters()]):
                t.lerp_(s, 0.005)


# --- o2o side ------------------------------------------------------------------------------------


def o2o_iql_learner(data: dict[str, np.ndarray]):  # noqa: ANN201
    from o2o.algorithms.iql import IQLConfig
    from o2o.platform.data import Transitions
    from o2o.platform.engine import Phase

    env = gym.make("Hopper-v5")
    config = IQLConfig().environment("Hopper-v5").o2o(offline_updates=10**6)
    learner = config.build_learner(env=env)
    n = len(data["rewards"])
    transitions = Transitions(
        obs=data["obs"], actions=data["actions"], rewards=data["rewards"], new_obs=data["new_obs"],
        terminateds=data["terminateds"].astype(bool), truncateds=np.zeros(n, bool),
        eps_id=np.zeros(n, np.int64), t=np.arange(n, dtype=np.int64),
    )
    learner.build_replay(transitions, OBS, ACT)
    learner.on_phase_start(Phase("offline", 10**6, "updates"))
    return learner


def timed(fn, n: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def bench_offline(updates: int, rounds: int) -> dict:
    from o2o.platform.replay import Sampling

    data = synthetic(100_000)
    plain = PlainIQL(data)
    learner = o2o_iql_learner(data)
    sides = {
        "plain": lambda n: [plain.update() for _ in range(n)],
        "o2o": lambda n: learner.run_updates(n, Sampling("offline")),
    }
    for f in sides.values():
        f(50)
    rates = {k: [] for k in sides}
    for _ in range(rounds):
        for k, f in sides.items():
            rates[k].append(timed(f, updates))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"offline_iql_updates_per_s": med, "ratio": med["o2o"] / med["plain"], "rounds": rates}


def bench_online(steps: int, rounds: int) -> dict:
    import ray

    from o2o.algorithms.sac import SACConfig

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    plain = PlainSAC()
    for _ in range(BATCH + 50):
        plain.step()
    config = (
        SACConfig()
        .environment("Hopper-v5")
        .o2o(online_env_steps=10**7, env_steps_per_iteration=steps, random_steps=0, learning_starts=BATCH)
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    algo.train()  # warm-up iteration (fills the first BATCH rows)
    rates = {"plain": [], "o2o": []}
    for _ in range(rounds):
        rates["plain"].append(timed(lambda n: [plain.step() for _ in range(n)], steps))
        rates["o2o"].append(algo.train()["o2o"]["perf/env_steps_per_s"])
    algo.stop()
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"online_sac_env_steps_per_s": med, "ratio": med["o2o"] / med["plain"], "rounds": rates}


def peak_memory_1m() -> dict:
    """Peak RSS of a fresh process that loads a 1M-transition table into the learner's store."""
    code = (
        "import resource, numpy as np, torch, sys; sys.path.insert(0, 'benchmarks');"
        "from throughput import synthetic, o2o_iql_learner;"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "d = synthetic(1_000_000); l = o2o_iql_learner(d); del d;"
        "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, l.replay.table.numel() * 4)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    base, peak, store = (int(x) for x in out[-3:])
    return {"rss_before_mb": base / 1024, "rss_peak_mb": peak / 1024, "store_mb": store / 2**20}


def peak_memory_trial(parquet: str) -> dict:
    """Peak RSS of a fresh process that builds an IQL trial on `parquet` the way a sweep does:
    RLlib's offline reader (Ray Data, materialized), validation, the learner's replay store."""
    code = (
        "import resource, ray, sys, gymnasium as gym;"
        "from o2o.algorithms.iql import IQLConfig;"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False);"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        f"c = IQLConfig().environment('Hopper-v5').offline_data(input_=[{parquet!r}]).o2o(offline_updates=1);"
        "a = c.build_algo(); n = a.learner_group._learner.replay.n_offline;"
        "print(n, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    n, base, peak = (int(x) for x in out[-3:])
    return {"transitions": n, "rss_before_mb": base / 1024, "rss_peak_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["offline", "online", "memory"], default=None)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trial-parquet", default=None, help="also measure a whole trial's peak memory on this canonical Parquet (e.g. hopper-medium's, 1M rows)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {"torch_threads": torch.get_num_threads(), "max_rss_mb_driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.only in (None, "offline"):
        results["offline"] = bench_offline(args.updates, args.rounds)
    if args.only in (None, "online"):
        results["online"] = bench_online(args.steps, args.rounds)
    if args.only in (None, "memory"):
        results["memory_1m"] = peak_memory_1m()
        if args.trial_parquet:
            results["memory_trial"] = peak_memory_trial(args.trial_parquet)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
