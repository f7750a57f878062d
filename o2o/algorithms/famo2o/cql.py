"""FamO2O on CQL: the universal policy is CQL's SAC actor, β the weight of Q in its loss.

The universal policy's loss is E[α log π_u(ã | s, enc β) − β · min_i Q_i(s, ã)] (authors:
`family_conservative_sac.py`, `policy_loss`); the critics keep CQL's losses, their actions drawn
from π_u at the update's β. The balance model maximises min_i Q_i(s, ã), ã ~ π_u(·|s, enc β),
β ~ π_b(·|s), with no entropy term (`hierarchical_loss`).

Where this departs from the released code: its TD target and the log-sum-exp's π(·|s') draws
read β from π_b(s) in both phases, ours read the update's β (uniform offline), as its π(·|s)
draws and actor loss do.
"""

from __future__ import annotations

import torch

from o2o.algorithms.cql.algorithm import CQLAlgorithm
from o2o.algorithms.cql.config import CQLConfig
from o2o.algorithms.cql.learner import CQLLearner
from o2o.algorithms.cql.module import CQLModule
from o2o.algorithms.famo2o.config import FamO2OConfig
from o2o.algorithms.famo2o.learner import FamO2OLearner
from o2o.algorithms.famo2o.module import FamO2OModule


def universal_actor_loss(logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """FamO2O on CQL, the universal policy's loss: E[α log π_u(ã|s, enc β) − β · Q(s, ã)], β per
    state (B,): a larger β weighs improvement over the entropy and CQL's pessimism."""
    return (alpha * logp - beta * q_pi).mean()


class FamO2OCQLModule(FamO2OModule, CQLModule):
    """CQL's networks, its actor the universal policy, plus the balance model."""


class FamO2OCQLLearner(FamO2OLearner, CQLLearner):
    """CQL's update with β weighing Q in the actor loss, after π_b's step."""

    seeds_batched = True

    def actor_objective(self, logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return universal_actor_loss(logp, q_pi, alpha, self.beta)

    def universal_action(self, policy_input: torch.Tensor) -> torch.Tensor:
        return self.net.actor.sample(policy_input)[0]

    def balance_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min_i Q_i(s, ã) of the critics, as the authors' balance loss reads them."""
        return self.net.critic(obs, actions, detach_params=True).min(0).values


class FamO2OCQLAlgorithm(CQLAlgorithm):
    """CQL's phases with FamO2O's config."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        return FamO2OCQLConfig()


class FamO2OCQLConfig(FamO2OConfig, CQLConfig):
    """FamO2O on CQL with the released code's settings (`jax_cql`, `finetune_configs/family.py`
    over young-geng's JaxCQL defaults): β ∈ [0.5, 1.5], conservative weight 1 in both phases,
    actor, critic and temperature learning rates 3e-4, 2×256 networks, no entropy in the backup
    or the balance loss, raw rewards."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or FamO2OCQLAlgorithm)
        self.beta_range = [0.5, 1.5]
        self.balance_target_entropy = None
        self.cql_alpha = 1.0
        self.actor_lr = 3e-4
        self.alpha_lr = 3e-4
        self.hidden_sizes = [256, 256]

    @property
    def module_class(self) -> type:
        return FamO2OCQLModule

    def get_default_learner_class(self) -> type:
        return FamO2OCQLLearner
