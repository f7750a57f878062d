"""FamO2O on IQL: the universal policy is IQL's AWR actor, β its per-state temperature.

The universal policy's loss is IQL's eq. 7 with the temperature replaced by each transition's β
and the policy reading [s, enc β]: −E[min(exp(β(Q̂ − V)), 100) · log π_u(a | s, enc β)] (authors:
`family_actor.family_update`). The balance model maximises the target critics' min Q̄(s, ã) with
an entropy bonus whose temperature α_b is tuned to H̄ = −0.5 (`family_hierarchical_update`).

Where the order departs from the released code: IQL's V, Q and π losses here share one
backward on the parameters of before the update (`IQLLearner`), where the authors update V,
then π against the new V, then Q toward the new V.
"""

from __future__ import annotations

import torch

from o2o.algorithms.famo2o.config import FamO2OConfig
from o2o.algorithms.famo2o.learner import FamO2OLearner
from o2o.algorithms.famo2o.module import FamO2OModule
from o2o.algorithms.iql.algorithm import IQLAlgorithm
from o2o.algorithms.iql.config import IQLConfig
from o2o.algorithms.iql.learner import IQLLearner
from o2o.algorithms.iql.module import IQLModule


class FamO2OIQLModule(FamO2OModule, IQLModule):
    """IQL's networks, its actor the universal policy, plus the balance model and log α_b."""


class FamO2OIQLLearner(FamO2OLearner, IQLLearner):
    """IQL's update with β as the AWR temperature of each transition, after π_b's step."""

    seeds_batched = True

    def awr_temperature(self) -> torch.Tensor:
        return self.beta

    def universal_action(self, policy_input: torch.Tensor) -> torch.Tensor:
        return self.net.actor.sample(policy_input)

    def balance_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min_i Q̄_i(s, ã) of the target critics, as the authors' balance update reads them."""
        return self.net.critic_target(obs, actions).min(0).values


class FamO2OIQLAlgorithm(IQLAlgorithm):
    """IQL's phases with FamO2O's config."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        return FamO2OIQLConfig()


class FamO2OIQLConfig(FamO2OConfig, IQLConfig):
    """FamO2O on IQL with the released code's settings (`jax_iql`, `family_*`): β ∈ [1, 5] on
    locomotion (its AntMaze config: [8, 14] with expectile 0.9, a `dataset_overrides` entry),
    balance entropy target −0.5, every learning rate 3e-4 and constant; IQL's reward scaling."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or FamO2OIQLAlgorithm)
        self.beta_range = [1.0, 5.0]
        self.balance_target_entropy = -0.5

    @property
    def module_class(self) -> type:
        return FamO2OIQLModule

    def get_default_learner_class(self) -> type:
        return FamO2OIQLLearner

    def validate(self) -> None:
        super().validate()
        default = IQLConfig().temperature
        if self.temperature != default or any("temperature" in o for o in self.phase_overrides.values()):
            self._value_error(
                "temperature cannot take effect in FamO2O on IQL: each transition's AWR temperature is "
                "its β, from U[beta_range] offline and from the balance model online; set beta_range"
            )
