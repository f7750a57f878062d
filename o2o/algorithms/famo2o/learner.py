"""FamO2O's balance model update and the universal policy's β, whatever the base.

FamO2O — Wang et al. "Train Once, Get a Family: State-Adaptive Balances for Offline-to-Online
Reinforcement Learning", NeurIPS 2023. Checked against
the released code, LeapLabTHU/FamO2O: `jax_iql/family_learner.py`, `family_actor.py`,
`family_temperature.py` (on IQL) and `jax_cql/JaxCQL/family_conservative_sac.py` (on CQL).

Each update, in the released code's order:
1. β for the universal policy's loss, one per transition: U[β_lo, β_hi] offline, β ~ π_b(·|s)
   online (`beta_source`), drawn before π_b's step, as the authors' actor reads the π_b of before
   the update.
2. The balance model's step: β ~ π_b(·|s) reparameterised, ã ~ π_u(·|s, enc β) through the
   policy (its weights held, `frozen`), the loss E[α_b log π_b(β|s) − Q(s, ã)], and where the
   base's variant has one (IQL), α_b's step toward the target entropy.
3. The base's own update, its policy reading [s, enc β] (`policy_obs`) and its actor loss
   weighted by β (each base's hook, in `iql.py` and `cql.py`).

Steps 2 and 3 touch disjoint parameters and read each other's networks as constants (β enters
the base's losses drawn, π_u and Q enter the balance loss frozen), so their losses share one
backward on the networks of before the update, and each optimizer steps on its own gradient:
the released code's two steps in a row, computed once per seed in a K-seed trial
(`O2OLearner.seed_losses`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from o2o.platform.engine import O2OLearner
from o2o.platform.networks import frozen


def balance_loss(log_prob: torch.Tensor, q: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """The balance model's objective: E_s[α_b log π_b(β|s) − Q(s, ã)], β ~ π_b(·|s) and
    ã ~ π_u(·|s, enc β) both reparameterised, so the gradient moves π_b toward the balance whose
    policy the critic values most (authors: `family_hierarchical_update`; the CQL variant has no
    entropy term, α_b = 0)."""
    return (temperature * log_prob - q).mean()


def balance_temperature_loss(log_temperature: torch.Tensor, entropy: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """α_b's objective α_b · (H(π_b) − H̄), the entropy estimated on the balance step's draws
    (no gradient): α_b grows while π_b is more random than H̄ wants. The authors' form
    (`family_temperature.update`), α_b itself times the gap, not SAC's log α."""
    return log_temperature.exp() * (entropy - target_entropy)


class FamO2OLearner(O2OLearner):
    """Mixin over a base's learner. A base composes it by defining `universal_action` and
    `balance_value` (and its actor loss's use of `self.beta`)."""

    def build(self) -> None:
        super().build()
        self.beta: torch.Tensor | None = None
        """The balance coefficient of each transition of the current update (B,), while its
        losses are computed."""
        self.visited_betas: list[np.ndarray] = []
        """β the policy acted with in each online state collected since the last drain ((n,),
        or (K, n) in a K-seed trial)."""
        self.visited_values: list[np.ndarray] = []
        """The critics' value of each of those states under the action the policy took there."""

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        super().configure_optimizers_for_module(module_id, config)
        net = self.module[module_id]
        groups = [
            {"params": list(net.balance.parameters()), "name": "balance"},
            {"params": [net.log_balance_temperature], "name": "balance_temperature"},
        ]
        self.balance_optimizer = self.grouped_adam(module_id, "famo2o_balance", groups)

    def learning_rates(self) -> dict[str, float]:
        return {**super().learning_rates(), "balance": self.hp.balance_lr, "balance_temperature": self.hp.balance_temperature_lr}

    def policy_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """[s, enc β] with this update's β of each state's batch row."""
        assert self.beta is not None, "policy_obs is read inside an update"
        return self.net.universal_obs(obs, self.beta)

    def universal_action(self, policy_input: torch.Tensor) -> torch.Tensor:
        """ã ~ π_u(·|s, enc β), reparameterised, for inputs [s, enc β] (B, obs + d) → (B, act)."""
        raise NotImplementedError

    def balance_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, ã) (B,) the balance model maximises, without gradient into the critics."""
        raise NotImplementedError

    def draw_beta(self, obs: torch.Tensor) -> torch.Tensor:
        """Step 1: this update's β (B,), per `beta_source`."""
        net = self.net
        if self.hp.beta_source == "balance":
            return net.balance.sample(obs)[0]
        u = torch.rand(obs.shape[0], device=obs.device)
        return net.balance.low + u * (net.balance.high - net.balance.low)

    def balance_losses(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step 2's loss: π_b's (and α_b's where the variant has one), and metrics."""
        net, hp = self.net, self.hp
        beta, log_prob = net.balance.sample(obs)
        with frozen(net.actor):
            actions = self.universal_action(net.universal_obs(obs, beta))
        q = self.balance_value(obs, actions)
        metrics = {"balance_beta_mean": beta.detach().mean(), "balance_beta_std": beta.detach().std()}
        if hp.balance_target_entropy is None:
            loss = balance_loss(log_prob, q, 0.0)
        else:
            temperature = net.log_balance_temperature.exp()
            entropy = -log_prob.detach().mean()
            loss = balance_loss(log_prob, q, temperature.detach()) + balance_temperature_loss(
                net.log_balance_temperature, entropy, hp.balance_target_entropy
            )
            metrics.update(balance_temperature=temperature.detach(), balance_entropy=entropy)
        return loss, {"balance_loss": loss.detach(), **metrics}

    def seed_losses(
        self, losses: Callable[..., Any], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The base's `losses` with steps 1 and 2 before them, per seed: β drawn for the
        minibatch, the balance loss, the base's losses reading β; their sum."""

        def famo2o_losses(
            net: torch.nn.Module, seed_batch: dict[str, torch.Tensor]
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            obs = seed_batch["obs"]
            with torch.no_grad():
                self.beta = self.draw_beta(obs)
            try:
                balance, metrics = self.balance_losses(obs)
                base, base_metrics = losses(net, seed_batch)
                return balance + base, {**metrics, **base_metrics, "beta_mean": self.beta.mean()}
            finally:
                self.beta = None

        return super().seed_losses(famo2o_losses, batch)

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base's update, whose backward also reaches π_b and α_b through `seed_losses`;
        then their Adam step."""
        self.balance_optimizer.zero_grad(set_to_none=True)
        metrics = super().update_step(batch)
        self.balance_optimizer.step()
        return metrics

    def visited(self, net: torch.nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For raw online states (n, obs): the β the policy acts with there (π_b's mode) and the
        balance model's Q of the action it takes, each (n,)."""
        obs = net.obs_normalizer(obs)
        return net.balance.mode(obs), self.balance_value(obs, net.act(obs))

    def add_online(self, data: Mapping[str, np.ndarray]) -> None:
        """Also record the β the policy acted with in each new state, with the weights the
        EnvRunner acted on (it is given the learner's after every update call); per seed, on
        its own states, in a K-seed trial."""
        super().add_online(data)
        obs = torch.as_tensor(np.asarray(data["obs"], np.float32), device=self._device)
        with torch.no_grad():
            beta, value = self.per_seed(self.visited, obs)
        self.visited_betas.append(beta.cpu().numpy())
        self.visited_values.append(value.cpu().numpy())

    def drain_distributions(self) -> dict[str, tuple[np.ndarray, tuple[float, float]]]:
        """`online/beta`: the β chosen in every online state collected since the last call."""
        if not self.visited_betas:
            return {}
        values, self.visited_betas = np.concatenate(self.visited_betas, axis=-1), []
        return {"online/beta": (values, (self.net.balance.low, self.net.balance.high))}

    def drain_summaries(self) -> dict[str, float]:
        """`online/beta_value_corr`: Pearson's correlation, over the online states collected since
        the last call, between the β chosen there and the critics' value of the state (the
        balance model's Q of the action taken): whether π_b picks β by how good a state looks,
        which a state-adaptive balance should. Read before `drain_distributions` empties the βs;
        absent while β or the value is constant over the states."""
        if not self.visited_values:
            return {}
        betas, values = np.concatenate(self.visited_betas, axis=-1), np.concatenate(self.visited_values, axis=-1)
        self.visited_values = []
        corr = [_correlation(b, v) for b, v in zip(np.atleast_2d(betas), np.atleast_2d(values))]
        if self.num_seeds > 1:
            return {"online/beta_value_corr": np.array(corr)}
        return {} if np.isnan(corr[0]) else {"online/beta_value_corr": corr[0]}


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of x and y; NaN where either is constant or fewer than two."""
    if len(x) < 2 or np.std(x) == 0.0 or np.std(y) == 0.0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
