"""Plain single-file PyTorch versions of each o2o algorithm's update: the throughput baseline.

Each is written the way a single-file implementation writes it (CORL's `algorithms/offline/*.py`,
CleanRL's `sac_continuous_action.py`): every network its own `nn.Module` (two critic modules,
not a batched ensemble), each with its own Adam, one backward pass per loss, and an actor loss
that backpropagates through the critics, as those files do. What an update computes — its
forwards, its samples, its losses — is o2o's learner's, so the o2o / plain ratio measures how
the update is organised, not what it computes. Networks 256×2 (ReLU), batch 256, Adam 3e-4,
γ 0.99, τ 0.005 and each method's default hyperparameters (METHODS.md), Hopper-v5 dimensions.

`PLAIN_LOOPS` maps an o2o algorithm name to its plain agent; `PlainOnline` runs an agent on
Hopper-v5 at one update per environment step.

`LeanIQL` is the other extreme: IQL's update written as lean as we know how (one packed replay
tensor, raw parameter tensors, the twin critics as one batched matmul per layer, one loss, one
backward, one fused Adam), and the reference for IQL's row: what is left between o2o's learner
and it is o2o's own overhead, not a way of organising the update. Its update is o2o's bit for
bit (`iql_profile.py` checks it before it measures).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OBS, ACT, HIDDEN, BATCH = 11, 3, 256, 256
GAMMA, TAU, LR = 0.99, 0.005, 3e-4

Batch = dict[str, torch.Tensor]


def mlp(i: int, o: int, hidden: int = HIDDEN, dropout: float = 0.0) -> nn.Sequential:
    """Two hidden ReLU layers, dropout after each where asked (SPOT's actor)."""
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(
        nn.Linear(i, hidden), nn.ReLU(), *drop, nn.Linear(hidden, hidden), nn.ReLU(), *drop, nn.Linear(hidden, o)
    )


def soft_update(target: nn.Module, source: nn.Module) -> None:
    """Polyak averaging, parameter by parameter (CORL's `soft_update`)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, TAU)


def q_in(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return torch.cat([obs, actions], -1)


# --- actors: the three shapes o2o's methods use -------------------------------------------------


class GaussianActor(nn.Module):
    """N(tanh μ(s), σ), σ state-independent (IQL, AWAC, PEX)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(OBS, ACT)
        self.log_std = nn.Parameter(torch.zeros(ACT))

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        std = self.log_std.clamp(-5, 2).exp()
        return torch.distributions.Normal(torch.tanh(self.net(obs)), std).log_prob(actions).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        mean = torch.tanh(self.net(obs))
        return (mean + self.log_std.clamp(-5, 2).exp() * torch.randn_like(mean)).clamp(-1, 1)


class TanhGaussianActor(nn.Module):
    """tanh(N(μ(s), σ(s))) (SAC, CQL, Cal-QL)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(OBS, 2 * ACT)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, -1)
        dist = torch.distributions.Normal(mean, log_std.clamp(-5, 2).exp())
        u = dist.rsample()
        a = torch.tanh(u)
        return a, dist.log_prob(u).sum(-1) - torch.log(1 - a.pow(2) + 1e-6).sum(-1)


class DeterministicActor(nn.Module):
    """tanh μ(s) (TD3, TD3+BC, SPOT, APL)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp(OBS, ACT, dropout=dropout)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


# --- agents ---------------------------------------------------------------------------------------


class Agent:
    """One method's networks and optimizers: `update(batch)` is one gradient update, `act(obs)`
    the exploration action for a batch of states."""

    needs_returns_to_go = False
    """The update reads `mc_returns` (Cal-QL)."""

    def update(self, b: Batch) -> None:
        raise NotImplementedError

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PlainIQL(Agent):
    """CORL-style IQL: twin Q, V, Gaussian actor; three optimizers, three backward passes; the
    actor's learning rate constant (o2o's IQL default, the authors' fine-tuning runs)."""

    def __init__(self, expectile: float = 0.7, temperature: float = 3.0) -> None:
        self.expectile, self.temperature = expectile, temperature
        self.q1, self.q2, self.v = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1), mlp(OBS, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = GaussianActor()
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=LR)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=LR)
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=LR)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)

    def value_step(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """V by expectile regression on min target Q − V, Q by TD to V(s'); returns Q̂(s, a) and
        V(s) before its step, detached (o2o's learner reads both losses' inputs before stepping)."""
        oa = q_in(b["obs"], b["actions"])
        with torch.no_grad():
            q_t = torch.min(self.q1_t(oa), self.q2_t(oa)).squeeze(-1)
            next_v = self.v(b["new_obs"]).squeeze(-1)
        v = self.v(b["obs"]).squeeze(-1)
        u = q_t - v
        v_loss = (torch.abs(self.expectile - (u < 0).float()) * u**2).mean()
        self.v_opt.zero_grad()
        v_loss.backward()
        self.v_opt.step()
        target = b["rewards"] + GAMMA * (1 - b["terminateds"]) * next_v
        q_loss = F.mse_loss(self.q1(oa).squeeze(-1), target) + F.mse_loss(self.q2(oa).squeeze(-1), target)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        return q_t, v.detach()

    def awr_step(self, obs: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor) -> None:
        """π by advantage-weighted regression onto `actions`, weights exp(β·A) clipped at 100."""
        w = torch.exp(self.temperature * advantage).clamp(max=100.0)
        a_loss = -(w * self.actor.log_prob(obs, actions)).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()

    def update(self, b: Batch) -> None:
        q_t, v = self.value_step(b)
        self.awr_step(b["obs"], b["actions"], q_t - v)
        soft_update(self.q1_t, self.q1)
        soft_update(self.q2_t, self.q2)


class PlainPEX(PlainIQL):
    """PEX online: a frozen copy of the (offline) actor beside a fresh one; acting and the AWR
    targets pick between their actions by softmax(10·min Q) (the authors' `select_action`)."""

    def __init__(self) -> None:
        super().__init__()
        # The policy set's expansion (o2o's `expand_policy`): the actor so far stands in for the
        # trained offline policy and is frozen; a fresh actor and its Adam take its place.
        self.offline_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.actor = GaussianActor()
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=LR)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        candidates = torch.stack([torch.tanh(self.offline_actor.net(obs)), self.actor.sample(obs)], 1)  # (B, 2, A)
        x = q_in(obs.unsqueeze(1).expand(-1, 2, -1), candidates)
        q = torch.min(self.q1(x), self.q2(x)).squeeze(-1)
        choice = torch.multinomial(torch.softmax(10.0 * q, -1), 1).squeeze(-1)
        return candidates[torch.arange(len(obs)), choice]

    def update(self, b: Batch) -> None:
        obs = b["obs"]
        composite = self.act(obs)
        with torch.no_grad():
            x = q_in(obs, composite)
            q_composite = torch.min(self.q1_t(x), self.q2_t(x)).squeeze(-1)
        _, v = self.value_step(b)
        self.awr_step(obs, composite, q_composite - v)
        soft_update(self.q1_t, self.q1)
        soft_update(self.q2_t, self.q2)


class PlainSAC(Agent):
    """CleanRL's SAC update: critics, actor, temperature, each its own optimizer and backward."""

    def __init__(self, actor_lr: float = LR, alpha_lr: float = LR) -> None:
        self.q1, self.q2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = TanhGaussianActor()
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=LR)
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.al_opt = torch.optim.Adam([self.log_alpha], lr=alpha_lr)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)[0]

    def q_min(self, obs: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        x = q_in(obs, actions)
        q1, q2 = (self.q1_t, self.q2_t) if target else (self.q1, self.q2)
        return torch.min(q1(x), q2(x)).squeeze(-1)

    def actor_step(self, obs: torch.Tensor) -> None:
        """Actor, then temperature, each its own backward and step (CleanRL's order)."""
        alpha = self.log_alpha.exp().detach()
        pi, logp = self.actor.sample(obs)
        a_loss = (alpha * logp - self.q_min(obs, pi)).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()
        al_loss = -(self.log_alpha * (logp.detach() - ACT)).mean()
        self.al_opt.zero_grad()
        al_loss.backward()
        self.al_opt.step()

    def update(self, b: Batch) -> None:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.actor.sample(b["new_obs"])
            next_v = self.q_min(b["new_obs"], a2, target=True) - alpha * logp2
            y = b["rewards"] + GAMMA * (1 - b["terminateds"]) * next_v
        oa = q_in(b["obs"], b["actions"])
        q_loss = F.mse_loss(self.q1(oa).squeeze(-1), y) + F.mse_loss(self.q2(oa).squeeze(-1), y)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        self.actor_step(b["obs"])
        soft_update(self.q1_t, self.q1)
        soft_update(self.q2_t, self.q2)


class PlainAWAC(Agent):
    """CORL's AWAC update: critics to r + γ min Q̄(s', a'), a' ~ π; actor by likelihood weighted
    with exp(A/λ) clipped at 100, A = min Q(s, a) − min Q(s, ã), ã ~ π(s)."""

    def __init__(self, awac_lambda: float = 1.0) -> None:
        self.awac_lambda = awac_lambda
        self.q1, self.q2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor = GaussianActor()
        self.q1_opt = torch.optim.Adam(self.q1.parameters(), lr=LR)
        self.q2_opt = torch.optim.Adam(self.q2.parameters(), lr=LR)
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=LR)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)

    def update(self, b: Batch) -> None:
        o, a = b["obs"], b["actions"]
        with torch.no_grad():
            x2 = q_in(b["new_obs"], self.actor.sample(b["new_obs"]))
            y = b["rewards"] + GAMMA * (1 - b["terminateds"]) * torch.min(self.q1_t(x2), self.q2_t(x2)).squeeze(-1)
            xpi = q_in(o, self.actor.sample(o))
            v = torch.min(self.q1(xpi), self.q2(xpi)).squeeze(-1)
        oa = q_in(o, a)
        q1, q2 = self.q1(oa).squeeze(-1), self.q2(oa).squeeze(-1)
        q_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.q1_opt.zero_grad()
        self.q2_opt.zero_grad()
        q_loss.backward()
        self.q1_opt.step()
        self.q2_opt.step()
        w = torch.exp((torch.min(q1, q2).detach() - v) / self.awac_lambda).clamp(max=100.0)
        a_loss = -(w * self.actor.log_prob(o, a)).mean()
        self.a_opt.zero_grad()
        a_loss.backward()
        self.a_opt.step()
        soft_update(self.q1_t, self.q1)
        soft_update(self.q2_t, self.q2)


class PlainTD3(Agent):
    """CORL's TD3+BC update (`bc_alpha` set) or TD3's (None): critics every update, the actor and
    every target each 2nd; smoothing noise 0.2 clipped at 0.5; exploration noise 0.1."""

    def __init__(self, bc_alpha: float | None = None, actor_dropout: float = 0.0) -> None:
        self.bc_alpha = bc_alpha
        self.actor = DeterministicActor(actor_dropout)
        self.actor_t = copy.deepcopy(self.actor)
        self.q1, self.q2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.q1_opt = torch.optim.Adam(self.q1.parameters(), lr=LR)
        self.q2_opt = torch.optim.Adam(self.q2.parameters(), lr=LR)
        self.a_opt = torch.optim.Adam(self.actor.parameters(), lr=LR)
        self.it = 0

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        self.actor.eval()
        a = (self.actor(obs) + 0.1 * torch.randn(len(obs), ACT)).clamp(-1, 1)
        self.actor.train()
        return a

    def actor_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pi = self.actor(obs)
        q = self.q1(q_in(obs, pi))
        if self.bc_alpha is None:
            return -q.mean()
        return -self.bc_alpha / q.abs().mean().detach() * q.mean() + F.mse_loss(pi, actions)

    def update(self, b: Batch) -> None:
        self.it += 1
        o, a = b["obs"], b["actions"]
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            x2 = q_in(b["new_obs"], (self.actor_t(b["new_obs"]) + noise).clamp(-1, 1))
            y = b["rewards"] + GAMMA * (1 - b["terminateds"]) * torch.min(self.q1_t(x2), self.q2_t(x2)).squeeze(-1)
        oa = q_in(o, a)
        q_loss = F.mse_loss(self.q1(oa).squeeze(-1), y) + F.mse_loss(self.q2(oa).squeeze(-1), y)
        self.q1_opt.zero_grad()
        self.q2_opt.zero_grad()
        q_loss.backward()
        self.q1_opt.step()
        self.q2_opt.step()
        if self.it % 2 == 0:
            a_loss = self.actor_loss(o, a)
            self.a_opt.zero_grad()
            a_loss.backward()
            self.a_opt.step()
            for target, source in ((self.actor_t, self.actor), (self.q1_t, self.q1), (self.q2_t, self.q2)):
                soft_update(target, source)


class PlainSPOT(PlainTD3):
    """CORL's SPOT update after VAE pretraining: TD3 whose actor loss is −Q/mean|Q| + λ·(−ELBO of
    the frozen behaviour VAE at π(s)); actor dropout 0.1; VAE 750×2, latent 2|A|, β 0.5, λ 1."""

    def __init__(self, support_weight: float = 1.0, beta: float = 0.5) -> None:
        super().__init__(actor_dropout=0.1)
        self.support_weight, self.beta = support_weight, beta
        self.encoder = mlp(OBS + ACT, 2 * 2 * ACT, hidden=750).requires_grad_(False)
        self.decoder = mlp(OBS + 2 * ACT, ACT, hidden=750).requires_grad_(False)

    def neg_elbo(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.encoder(q_in(obs, actions)).chunk(2, -1)
        std = log_std.clamp(-4, 15).exp()
        z = mean + std * torch.randn_like(std)
        recon = (torch.tanh(self.decoder(torch.cat([obs, z], -1))) - actions).pow(2).mean(-1)
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean(-1)
        return recon + self.beta * kl

    def actor_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pi = self.actor(obs)
        q = self.q1(q_in(obs, pi))
        return -q.mean() / q.abs().mean().detach() + self.support_weight * self.neg_elbo(obs, pi).mean()


class PlainCQL(PlainSAC):
    """CORL's CQL update (α 10, 10 actions per proposal, policy and temperature lr 3e-5, no
    entropy in the backup): temperature and actor first (SAC's), then the critics' TD +
    conservative loss. With `calibrate`, Cal-QL: the policy actions' Q-values in the log-sum-exp
    are bounded below by the Monte-Carlo return-to-go."""

    def __init__(self, calibrate: bool = False, cql_alpha: float = 10.0, k: int = 10) -> None:
        super().__init__(actor_lr=3e-5, alpha_lr=3e-5)
        self.calibrate, self.cql_alpha, self.k = calibrate, cql_alpha, k
        self.needs_returns_to_go = calibrate

    def update(self, b: Batch) -> None:
        k, o, a = self.k, b["obs"], b["actions"]
        n = len(o)
        self.actor_step(o)
        with torch.no_grad():
            current, current_logp = self.actor.sample(o.repeat_interleave(k, 0))
            following, following_logp = self.actor.sample(b["new_obs"].repeat_interleave(k, 0))
            first = following.view(n, k, ACT)[:, 0]  # the TD target's a' ~ π(s'), as o2o's
            y = b["rewards"] + GAMMA * (1 - b["terminateds"]) * self.q_min(b["new_obs"], first, target=True)
            uniform = torch.rand_like(current) * 2 - 1
            density = torch.cat(
                [torch.full((n, k), -ACT * math.log(2.0)), current_logp.view(n, k), following_logp.view(n, k)], 1
            )
            sampled = torch.cat([uniform.view(n, k, ACT), current.view(n, k, ACT), following.view(n, k, ACT)], 1)
            x_sampled = q_in(o.repeat_interleave(3 * k, 0), sampled.view(-1, ACT))
        oa = q_in(o, a)
        loss = 0.0
        for q in (self.q1, self.q2):
            q_data = q(oa).squeeze(-1)
            q_sampled = q(x_sampled).view(n, 3 * k)
            if self.calibrate:
                bound = b["mc_returns"].unsqueeze(-1)
                q_sampled = torch.cat([q_sampled[:, :k], torch.maximum(q_sampled[:, k:], bound)], 1)
            gap = (torch.logsumexp(q_sampled - density, 1) - q_data).mean()
            loss = loss + F.mse_loss(q_data, y) + self.cql_alpha * gap
        self.q_opt.zero_grad()
        loss.backward()
        self.q_opt.step()
        soft_update(self.q1_t, self.q1)
        soft_update(self.q2_t, self.q2)


PLAIN_LOOPS: dict[str, Callable[[bool], Agent]] = {
    "awac": lambda online: PlainAWAC(),
    "calql": lambda online: PlainCQL(calibrate=not online),  # o2o's Cal-QL calibrates offline only
    "cql": lambda online: PlainCQL(),
    "iql": lambda online: PlainIQL(),
    "pex": lambda online: PlainPEX() if online else PlainIQL(),  # PEX's offline phase is IQL
    "sac": lambda online: PlainSAC(),
    "spot": lambda online: PlainSPOT(),
    "td3": lambda online: PlainTD3(),
    "td3bc": lambda online: PlainTD3(bc_alpha=2.5),
    # APL's update is TD3+BC's until its near-on-policy buffer holds 10k online rows.
    "apl": lambda online: PlainTD3(bc_alpha=2.5),
}
"""o2o algorithm name → its plain agent, built for the offline (False) or online (True) phase."""


# --- replay and the online loop ------------------------------------------------------------------


class Replay:
    """One preallocated tensor per column and a uniform sampler (CORL's `ReplayBuffer`), filled
    from a dataset (`load`) and then step by step (`add`), as a ring once full."""

    def __init__(self, capacity: int, returns_to_go: bool = False) -> None:
        widths = {"obs": OBS, "actions": ACT, "rewards": 0, "new_obs": OBS, "terminateds": 0}
        if returns_to_go:
            widths["mc_returns"] = 0
        self.data = {k: torch.zeros(capacity, w) if w else torch.zeros(capacity) for k, w in widths.items()}
        self.capacity, self.n = capacity, 0

    def load(self, arrays: Mapping[str, np.ndarray]) -> Replay:
        """Copy a dataset's columns into the first rows (CORL's `load_d4rl_dataset`)."""
        n = len(arrays["rewards"])
        for k, column in self.data.items():
            column[:n] = torch.as_tensor(np.asarray(arrays[k], np.float32))
        self.n = n
        return self

    def add(self, row: Mapping[str, object]) -> None:
        i = self.n % self.capacity
        for k, column in self.data.items():
            column[i] = torch.as_tensor(np.asarray(row[k], dtype=np.float32))
        self.n += 1

    def sample(self) -> Batch:
        idx = torch.randint(0, min(self.n, self.capacity), (BATCH,))
        return {k: v[idx] for k, v in self.data.items()}


class PlainOnline:
    """CleanRL's loop at UTD 1 on Hopper-v5: act with the agent's exploration actor, store the
    transition, one update per step once a batch is held. Online rows' return-to-go is unknown,
    so they hold −∞ (as o2o's), which leaves Cal-QL's bound inactive."""

    def __init__(self, agent: Agent, seed: int = 0, capacity: int = 100_000) -> None:
        import gymnasium as gym  # here: the offline loops also run where no simulator is installed

        torch.manual_seed(seed)
        self.agent = agent
        self.env = gym.make("Hopper-v5")
        self.obs, _ = self.env.reset(seed=seed)
        self.replay = Replay(capacity, agent.needs_returns_to_go)

    def step(self) -> None:
        with torch.no_grad():
            a = self.agent.act(torch.as_tensor(self.obs, dtype=torch.float32)[None])[0].numpy()
        new_obs, r, term, trunc, _ = self.env.step(a)
        row = {"obs": self.obs, "actions": a, "rewards": r, "new_obs": new_obs, "terminateds": float(term)}
        self.replay.add({**row, "mc_returns": -math.inf})
        self.obs = self.env.reset()[0] if term or trunc else new_obs
        if self.replay.n >= BATCH:
            self.agent.update(self.replay.sample())


# --- the lean reference ---------------------------------------------------------------------------


def uniform_parameter(*shape: int, fan_in: int) -> torch.Tensor:
    """A leaf tensor drawn as `nn.Linear` draws its weights and biases: U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(*shape).uniform_(-bound, bound).requires_grad_()


def mlp_parameters(i: int, o: int, members: tuple[int, ...] = ()) -> list[torch.Tensor]:
    """Weights (in, out) and biases of a 256×2 MLP, each with leading `members` dimensions
    (one member per critic of a batched ensemble)."""
    dims = [i, HIDDEN, HIDDEN, o]
    bias_rows = (1,) if members else ()
    return [
        t
        for a, b in itertools.pairwise(dims)
        for t in (uniform_parameter(*members, a, b, fan_in=a), uniform_parameter(*members, *bias_rows, b, fan_in=a))
    ]


class LeanIQL:
    """IQL's offline update written as lean as we know how: the reference for IQL's row.

    It computes what o2o's `IQLLearner.update_step` computes — a minibatch of `BATCH` rows drawn
    uniformly by index; without gradients min of the target twin critics at (s, a) and V(s');
    with gradients V(s), both critics at (s, a) and the actor's log-likelihood of a; the
    expectile, TD and AWR losses; one Adam step; Polyak targets — and nothing else (no metrics).
    What makes it lean:

    - the replay is one packed (N, 27) tensor, rows `obs | actions | reward | new_obs | done`;
      a minibatch is one `randint` and one `index_select`, its columns are views (and the
      critics' input (s, a) is the view of the first 14 columns: no concatenation);
    - networks are raw parameter tensors applied with `addmm` / `baddbmm` (no module calls);
      the twin critics are one batched matmul per layer;
    - ReLU in place (valid: the backward of `addmm` and `baddbmm` does not read their output);
    - one summed loss and one backward (the three losses touch disjoint parameters through
      detached targets), one Adam over every parameter with CPU's fused kernel (`fused=True`:
      one kernel per step instead of a dozen ops per tensor), the target update one
      `_foreach_lerp_`.
    """

    def __init__(
        self,
        data: Mapping[str, np.ndarray],
        expectile: float = 0.7,
        temperature: float = 3.0,
        max_weight: float = 100.0,
        seed: int = 0,
    ) -> None:
        self.expectile, self.temperature, self.max_weight = expectile, temperature, max_weight
        n = len(data["rewards"])
        columns = ("obs", "actions", "rewards", "new_obs", "terminateds")
        self.table = torch.from_numpy(np.concatenate([np.asarray(data[k], np.float32).reshape(n, -1) for k in columns], 1))
        self.generator = torch.Generator().manual_seed(seed)
        self.critic = mlp_parameters(OBS + ACT, 1, members=(2,))
        self.critic_target = [p.detach().clone() for p in self.critic]
        self.critic_values = [p.detach() for p in self.critic]  # views: they follow Adam's in-place steps
        self.value = mlp_parameters(OBS, 1)
        self.actor = mlp_parameters(OBS, ACT)
        self.log_std = torch.zeros(ACT, requires_grad=True)
        self.optimizer = torch.optim.Adam([*self.critic, *self.value, *self.actor, self.log_std], lr=LR, fused=True)

    @staticmethod
    def twin_q(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """(B, obs + act) → (2, B): both critics, one batched matmul per layer."""
        w1, b1, w2, b2, w3, b3 = params
        h = torch.baddbmm(b1, x.expand(2, -1, -1), w1).relu_()
        h = torch.baddbmm(b2, h, w2).relu_()
        return torch.baddbmm(b3, h, w3).squeeze(-1)

    @staticmethod
    def mlp(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = params
        h = torch.addmm(b1, x, w1).relu_()
        h = torch.addmm(b2, h, w2).relu_()
        return torch.addmm(b3, h, w3)

    def update(self) -> None:
        """One gradient update on a fresh minibatch."""
        rows = self.table.index_select(0, torch.randint(0, len(self.table), (BATCH,), generator=self.generator))
        obs, actions, obs_actions = rows[:, :OBS], rows[:, OBS : OBS + ACT], rows[:, : OBS + ACT]
        rewards, new_obs, done = rows[:, OBS + ACT], rows[:, OBS + ACT + 1 : -1], rows[:, -1]
        with torch.no_grad():
            q_target = self.twin_q(self.critic_target, obs_actions).min(0).values
            td_target = rewards + GAMMA * (1.0 - done) * self.mlp(self.value, new_obs).squeeze(-1)
        v = self.mlp(self.value, obs).squeeze(-1)
        u = q_target - v
        value_loss = (torch.where(u > 0, self.expectile, 1.0 - self.expectile) * u.square()).mean()
        critic_loss = (self.twin_q(self.critic, obs_actions) - td_target).square().mean(-1).sum()
        mean = torch.tanh(self.mlp(self.actor, obs))
        log_std = self.log_std.clamp(-5.0, 2.0)
        log_prob = (-0.5 * ((actions - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        weight = torch.exp(self.temperature * (q_target - v.detach())).clamp(max=self.max_weight)
        actor_loss = -(weight * log_prob).mean()
        self.optimizer.zero_grad()
        (value_loss + critic_loss + actor_loss).backward()
        self.optimizer.step()
        torch._foreach_lerp_(self.critic_target, self.critic_values, TAU)
