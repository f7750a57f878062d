"""BAQ's losses: π_β's likelihood, the uncertainty u, the adaptive behaviour-consistency weight
λ(s, t), the uncertainty-weighted TD error, and replay priorities from behaviour divergence.

Behaviour-Adaptive Q-Learning — Zu, Zhou, Zhang. "Behavior-Adaptive Q-Learning: A Unifying
Framework for Offline-to-Online RL", arXiv:2511.03695. No code is public and the abstract gives
no formulas: each function below is the formulation METHODS.md records, named for the piece of
the abstract it makes precise.

Offline, the base's update runs unchanged and π_β takes one maximum-likelihood step on the same
dataset minibatch (its own backward: its parameters are disjoint from the base's). In
fine-tuning π_β is frozen; the base's update runs with its TD error weighted through TD3's
`td_weights` hook and the behaviour-consistency term added to its actor loss, and the replay is
drawn ∝ behaviour divergence by `DivergencePriorities`, the store's priority source under the
`prioritized` rule. Where the formulation chooses what the abstract leaves open: the TD weights
are divided by their minibatch mean, so they move weight between backups without changing the
critics' step size; priorities are exp of the standardized divergence clipped to ±`Z_CLIP`, so a
row replays at most e^3 ≈ 20 times more often than a typical dataset row.

In a trial of K seeds each seed keeps its own ū, count of confident transitions and priorities
(over the dataset and its own online rows, under its own π_β); a seed's losses read its ū and
c(t) from its minibatch (`BATCH_STATE`), so they run batched like the base's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from o2o.algorithms.baq.config import FINE_TUNING
from o2o.platform.engine import O2OLearner
from o2o.platform.replay import PrioritySource, ReplayStore
from o2o.platform.seeds import seed_module

UNCERTAINTY_EMA = 0.005
"""Step of ū's running mean per update (the targets' Polyak rate: ū follows over ~200 updates)."""
Z_CLIP = 3.0
"""Standardized divergences are clipped to ±this before they become priorities."""
PRIORITY_CHUNK = 65_536
"""Rows per π_β forward when the whole store's priorities are computed."""
BATCH_STATE = "baq"
"""The minibatch entry that carries a seed's ū and c(t) (`uncertainty_ref`, `decay`) into its losses."""

Behaviour = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""π_β of one seed: states → (mean, log std) of its Gaussian."""


def behaviour_nll(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """−log π_β(a|s) per row (B,): Σ_j [½((a_j − μ_j)/σ_j)² + log σ_j + ½ log 2π]. Its batch mean
    is π_β's maximum-likelihood loss; per row it is the behaviour divergence replay is
    prioritized by."""
    z = (actions - mean) / log_std.exp()
    return (0.5 * z.pow(2) + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)


def behaviour_divergence(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """u under `bc_divergence` (B,): (1/|A|) Σ_j ((a_j − μ_j(s))/σ_j(s))², the part of −log π_β(a|s)
    that depends on a, scaled so the behaviour's own actions average 1 and u ≥ 0."""
    return ((actions - mean) / log_std.exp()).pow(2).mean(-1)


def uncertainty_gate(u_normalized: torch.Tensor, sharpness: float) -> torch.Tensor:
    """sigmoid(k·(u/ū − 1)): near 1 where the action is more uncertain than is typical, near 0
    where it is more certain, 1/2 at ū."""
    return torch.sigmoid(sharpness * (u_normalized - 1.0))


def confidence_decay(confident: int, scale: float) -> float:
    """c(t) = exp(−n_confident/τ_c): 1 before any confident online transition, falling as they
    accumulate."""
    return math.exp(-confident / scale)


def constraint_weight(weight: float, gate: torch.Tensor, decay: float) -> torch.Tensor:
    """λ(s, t) = λ₀ · gate(s) · c(t) per state (B,)."""
    return weight * gate * decay


def behaviour_consistency_loss(pi: torch.Tensor, behaviour_mean: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The dual objective's constraint: E_s[λ(s, t) · (1/|A|)‖π(s) − μ_β(s)‖²], λ detached (it
    weighs the term, it is not optimized)."""
    return (weights.detach() * (pi - behaviour_mean).pow(2).mean(-1)).mean()


def uncertainty_td_weights(u_normalized: torch.Tensor) -> torch.Tensor:
    """Per-backup weights 1/(1 + u(s', ã')/ū), divided by their minibatch mean (B,)."""
    weights = 1.0 / (1.0 + u_normalized)
    return weights / weights.mean()


def divergence_priority(divergence: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """A row's priority: exp(clip((d − m)/s, −Z_CLIP, Z_CLIP)), d = −log π_β(a|s), m and s the
    mean and standard deviation of d over the dataset's rows, so a typical dataset row has
    priority ≈ 1 and a transition the behaviour would not have taken is replayed more."""
    return ((divergence - mean) / std).clamp(-Z_CLIP, Z_CLIP).exp()


@torch.no_grad()
def _divergence(behaviour: Behaviour, rows: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """−log π_β(a|s) of rows as the store holds them."""
    return behaviour_nll(*behaviour(rows["obs"]), rows["actions"])


class DivergencePriorities(PrioritySource):
    """The store's priorities under BAQ's `prioritized` rule: each row's `divergence_priority`
    under the frozen π_β, standardized by the dataset's divergence `mean` and `std`. π_β does not
    move online, so a row's priority is set once: the held rows' by `fitted`, at the first
    prioritized update, each new row's as it arrives."""

    def __init__(self, behaviour: Behaviour, mean: float, std: float, device: torch.device) -> None:
        self.behaviour = behaviour
        self.mean, self.std = mean, std
        self.device = device

    @classmethod
    def fitted(cls, behaviour: Behaviour, replay: ReplayStore) -> DivergencePriorities:
        """The source with the dataset's statistics, every held row given its priority."""
        held = replay.n_offline + replay.n_online
        divergence = torch.cat(
            [
                _divergence(behaviour, replay.gather(torch.arange(start, min(start + PRIORITY_CHUNK, held), device=replay.device)))
                for start in range(0, held, PRIORITY_CHUNK)
            ]
        )
        dataset = divergence[: replay.n_offline]
        source = cls(behaviour, float(dataset.mean()), float(dataset.std()) + 1e-6, replay.device)
        replay.track_priorities()
        assert replay.priorities is not None
        replay.priorities.fill(0, divergence_priority(divergence, source.mean, source.std).double())
        return source

    def priorities_for(self, rows: Mapping[str, np.ndarray]) -> torch.Tensor:
        tensors = {k: torch.as_tensor(np.asarray(rows[k], dtype=np.float32), device=self.device) for k in ("obs", "actions")}
        return divergence_priority(_divergence(self.behaviour, tensors), self.mean, self.std)

    def update(self, replay: ReplayStore, indices: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Nothing moves: the share of online rows in the minibatch, as a metric."""
        return {"online_share": (indices >= replay.n_offline).float().mean()}


class BAQLearner(O2OLearner):
    """Mixin over a TD3-family learner (TD3+BC): π_β's likelihood step beside the base's offline
    update; in fine-tuning, the base's update with uncertainty-weighted backups and the adaptive
    behaviour-consistency term, and replay ∝ behaviour divergence."""

    def build(self) -> None:
        super().build()
        self.uncertainty_ref: torch.Tensor | None = None
        """ū per seed (K,): the running mean of u over the minibatches' own (s, a) (None before
        the first update)."""
        self.confident = np.zeros(self.num_seeds, dtype=np.int64)
        """n_confident per seed: online transitions of fine-tuning whose u was below ū when they
        arrived."""
        self.divergence_priorities: list[DivergencePriorities] = []
        """Each seed's priority source under `prioritized`, from its first use on."""
        self.seed_state: Mapping[str, torch.Tensor] | None = None
        """The ū and c(t) of the seed whose losses are being computed (0-d each)."""
        self.visited_lambdas: list[np.ndarray] = []

    def parameter_groups(self, net: torch.nn.Module) -> list[dict[str, Any]]:
        """The base's groups and π_β's."""
        return [*super().parameter_groups(net), {"params": list(net.behaviour.parameters()), "name": "behaviour"}]

    def learning_rates(self) -> dict[str, float]:
        """The base's rates; π_β at `lr`."""
        return {**super().learning_rates(), "behaviour": self.hp.lr}

    @property
    def fine_tuning(self) -> bool:
        """Whether this is the online phase, where BAQ's pieces act."""
        return self.phase is not None and self.phase.name == FINE_TUNING

    @torch.no_grad()
    def uncertainty(
        self, obs: torch.Tensor, actions: torch.Tensor, behaviour: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """u(s, a) (B,) from the configured source: π_β's divergence (from its `behaviour` output
        at `obs` where the caller has it) or the critics' spread."""
        if self.hp.uncertainty == "bc_divergence":
            return behaviour_divergence(*(behaviour or self.net.behaviour(obs)), actions)
        return self.net.critic(obs, actions).std(0)

    def normalized(self, u: torch.Tensor) -> torch.Tensor:
        """u/ū, with the ū of the seed at hand."""
        assert self.seed_state is not None, "ū is read inside an update"
        return u / (self.seed_state["uncertainty_ref"] + 1e-8)

    def current_decay(self) -> torch.Tensor:
        """c(t) of each seed now (K,) (1 with `confidence_decay` off)."""
        decays = [confidence_decay(int(n), self.hp.confidence_scale) if self.hp.confidence_decay else 1.0 for n in self.confident]
        return torch.tensor(decays, device=self._device)

    def seed_states(self) -> dict[str, torch.Tensor]:
        """ū and c(t) of every seed, as `per_seed` hands each seed its own: 0-d in a one-seed
        trial, (K,) in a K-seed one."""
        assert self.uncertainty_ref is not None, "ū is set by the first update"
        states = {"uncertainty_ref": self.uncertainty_ref, "decay": self.current_decay()}
        return {k: v[0] for k, v in states.items()} if self.num_seeds == 1 else states

    def with_states(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """`batch` carrying every seed's ū and c(t) (`seed_states`) for `per_seed` to hand out."""
        return {**batch, BATCH_STATE: self.seed_states()}

    def with_seed_state(self, fn: Callable[..., Any], net: torch.nn.Module, batch: Mapping[str, Any], *args: Any) -> Any:
        """`fn(net, batch, *args)` with the seed's ū and c(t) (`batch[BATCH_STATE]`) where BAQ's
        hooks read them."""
        self.seed_state = batch[BATCH_STATE]
        try:
            return fn(net, batch, *args)
        finally:
            self.seed_state = None

    def constraint_weights(
        self, obs: torch.Tensor, pi: torch.Tensor, behaviour: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """λ(s, t) at the policy's actions π(s), and u(s, π(s))/ū there."""
        u = self.normalized(self.uncertainty(obs, pi.detach(), behaviour))
        gate = uncertainty_gate(u, self.hp.uncertainty_sharpness) if self.hp.uncertainty_gate else torch.full_like(u, 0.5)
        return constraint_weight(self.hp.constraint_weight, gate, self.seed_state["decay"]), u

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        metrics: dict[str, torch.Tensor] = {}
        if self.fine_tuning:
            u = self.per_seed(lambda net, b: self.uncertainty(b["obs"], b["actions"]).mean(), batch)
        else:
            loss, metrics = self.seed_losses(self.behaviour_losses, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            u = metrics.pop("minibatch_uncertainty")
        u = u.reshape(self.num_seeds)
        self.uncertainty_ref = u.clone() if self.uncertainty_ref is None else torch.lerp(self.uncertainty_ref, u, UNCERTAINTY_EMA)
        metrics.update(super().update_step(self.with_states(batch)))
        metrics["uncertainty_ref"] = self.uncertainty_ref[0].clone() if self.num_seeds == 1 else self.uncertainty_ref.clone()
        return metrics

    def behaviour_losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """π_β's maximum-likelihood loss on one seed's minibatch (its step leaves the base's
        groups untouched: their gradients are unset), and u on the minibatch from π_β's output
        before the step (`minibatch_uncertainty`)."""
        mean, log_std = net.behaviour(batch["obs"])
        loss = behaviour_nll(mean, log_std, batch["actions"]).mean()
        u = self.uncertainty(batch["obs"], batch["actions"], (mean.detach(), log_std.detach())).mean()
        return loss, {"behaviour_nll": loss.detach(), "minibatch_uncertainty": u}

    def losses(
        self, net: torch.nn.Module, batch: dict[str, torch.Tensor], delayed: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The base's losses, with the seed's ū and c(t) where BAQ's hooks read them."""
        return self.with_seed_state(super().losses, net, batch, delayed)

    def td_weights(
        self, batch: dict[str, torch.Tensor], next_actions: torch.Tensor
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Fine-tuning with `uncertainty_weighted_q`: 1/(1 + u(s', ã')/ū), mean 1 over the minibatch."""
        if not (self.fine_tuning and self.hp.uncertainty_weighted_q):
            return super().td_weights(batch, next_actions)
        u = self.normalized(self.uncertainty(batch["new_obs"], next_actions))
        weights = uncertainty_td_weights(u)
        return weights, {"target_uncertainty": u.mean(), "td_weight_min": weights.min()}

    def actor_losses(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fine-tuning: the base's actor loss + the behaviour-consistency term under λ(s, t)."""
        losses = super().actor_losses(obs, actions)
        if not self.fine_tuning:
            return losses
        pi = self.net.actor(obs)
        with torch.no_grad():
            behaviour = self.net.behaviour(obs)
        weights, u = self.constraint_weights(obs, pi, behaviour)
        consistency = behaviour_consistency_loss(pi, behaviour[0], weights)
        return {
            **losses,
            "actor_loss": losses["actor_loss"] + consistency,
            "consistency_loss": consistency.detach(),
            "minibatch_lambda": weights.mean(),
            "policy_uncertainty": u.mean(),
            "confidence_decay": self.seed_state["decay"],
        }

    def behaviour_of(self, lane: int) -> Behaviour:
        """Seed `lane`'s π_β."""
        return self.net.behaviour if self.num_seeds == 1 else seed_module(self.net.behaviour, lane)

    def priority_source(self, rule: str, lane: int) -> PrioritySource | None:
        """Under `prioritized`: behaviour divergence under the seed's π_β, every seed's built at
        the first use."""
        if rule != "prioritized":
            return super().priority_source(rule, lane)
        if not self.divergence_priorities:
            self.divergence_priorities = [
                DivergencePriorities.fitted(self.behaviour_of(i), store) for i, store in enumerate(self.lanes)
            ]
        return self.divergence_priorities[lane]

    def confident_rows(self, net: torch.nn.Module, rows: Mapping[str, Any]) -> torch.Tensor:
        """How many of one seed's new raw online rows have u below its ū."""
        return (self.uncertainty(net.obs_normalizer(rows["obs"]), rows["actions"]) < self.seed_state["uncertainty_ref"]).sum()

    def visited_lambda(self, net: torch.nn.Module, rows: Mapping[str, Any]) -> torch.Tensor:
        """λ(s, t) in each of one seed's new raw online states, at the policy's action there."""
        obs = net.obs_normalizer(rows["obs"])
        return self.constraint_weights(obs, net.act(obs))[0]

    def add_online(self, data: Mapping[str, np.ndarray]) -> None:
        """Also, in fine-tuning: count each seed's new transitions whose u is below its ū as
        confident, and record λ(s, t) in each new state at the policy's action there."""
        super().add_online(data)
        if not self.fine_tuning or self.uncertainty_ref is None:
            return
        rows = {k: torch.as_tensor(np.asarray(data[k], np.float32), device=self._device) for k in ("obs", "actions")}
        with torch.no_grad():  # λ with c(t) after counting these rows
            confident = self.per_seed(lambda net, r: self.with_seed_state(self.confident_rows, net, r), self.with_states(rows))
            self.confident += confident.reshape(self.num_seeds).cpu().numpy()
            weights = self.per_seed(lambda net, r: self.with_seed_state(self.visited_lambda, net, r), self.with_states(rows))
        self.visited_lambdas.append(weights.cpu().numpy())

    def drain_distributions(self) -> dict[str, tuple[np.ndarray, tuple[float, float]]]:
        """`online/lambda`: λ(s, t) in every online state collected since the last call."""
        if not self.visited_lambdas:
            return {}
        values, self.visited_lambdas = np.concatenate(self.visited_lambdas, axis=-1), []
        return {"online/lambda": (values, (0.0, self.hp.constraint_weight))}

    def drain_summaries(self) -> dict[str, float | np.ndarray]:
        """In fine-tuning: the share of its transitions that were confident, and the spread of the
        store's priorities (their coefficient of variation, and the share of the sampling mass on
        online rows); per seed in a K-seed trial."""
        if not self.fine_tuning or self.phase_env_steps == 0:
            return {}
        per_seed: dict[str, list[float]] = {"online/confident_share": list(self.confident / self.phase_env_steps)}
        for store in self.lanes:
            if store.priorities is None:
                break
            held = store.n_offline + store.n_online
            priorities = store.priorities.values(0, held)
            per_seed.setdefault("online/priority_spread", []).append(float(priorities.std() / priorities.mean()))
            per_seed.setdefault("online/priority_online_mass", []).append(
                float(priorities[store.n_offline :].sum() / priorities.sum())
            )
        return {k: float(v[0]) if self.num_seeds == 1 else np.array(v) for k, v in per_seed.items()}

    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component("baq", components, not_components):
            state["baq"] = {
                "uncertainty_ref": None if self.uncertainty_ref is None else self.uncertainty_ref.tolist(),
                "confident": self.confident.tolist(),
                "priority_statistics": [(source.mean, source.std) for source in self.divergence_priorities] or None,
            }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        own = state.get("baq")
        if own is None:
            return
        # Per seed; a checkpoint from before K-seed trials holds one seed's as scalars.
        ref = own["uncertainty_ref"]
        if ref is not None:
            ref = torch.tensor(np.reshape(ref, -1), dtype=torch.float32, device=self._device)
        self.uncertainty_ref = ref
        self.confident = np.reshape(np.asarray(own["confident"], dtype=np.int64), -1)
        statistics = own["priority_statistics"]
        if statistics is not None:  # the stores' priorities came back with the replay
            statistics = [statistics] if np.ndim(statistics) == 1 else statistics
            self.divergence_priorities = [
                DivergencePriorities(self.behaviour_of(i), mean, std, self._device) for i, (mean, std) in enumerate(statistics)
            ]
            self.row_priorities = list(self.divergence_priorities)
