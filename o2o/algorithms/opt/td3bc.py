"""OPT on TD3+BC, the paper's locomotion setting: TD3+BC offline, TD3 fine-tuning (the BC term
off online) at 5 updates per env step, the actor's Q the κ-mix, normalized by TD3+BC's λ."""

from __future__ import annotations

from o2o.algorithms.opt.algorithm import OPTAlgorithm
from o2o.algorithms.opt.config import OPTConfig
from o2o.algorithms.opt.learner import OPTLearner
from o2o.algorithms.opt.module import OPTModule
from o2o.algorithms.td3.module import TD3Module
from o2o.algorithms.td3bc.algorithm import TD3BCAlgorithm
from o2o.algorithms.td3bc.config import TD3BCConfig
from o2o.algorithms.td3bc.learner import TD3BCLearner


class OPTTD3BCModule(OPTModule, TD3Module):
    """TD3's networks and Q_on."""


class OPTTD3BCLearner(OPTLearner, TD3BCLearner):
    """TD3+BC's update, Q_on's around it."""

    seeds_batched = True


class OPTTD3BCAlgorithm(OPTAlgorithm, TD3BCAlgorithm):
    """TD3+BC's phases with OPT's two between offline and online."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        return OPTTD3BCConfig()


class OPTTD3BCConfig(OPTConfig, TD3BCConfig):
    """OPT on TD3+BC (α 2.5) with the ports' locomotion settings: UTD 5 and no BC term online,
    balanced replay at temperature 5, κ 0.1 → 0.9 over 150k steps (medium: 0.3 → 0.9, a
    `dataset_overrides` entry)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or OPTTD3BCAlgorithm)
        self.phase_overrides = {"online": {"bc_weight": 0.0, "utd_ratio": 5.0}}

    @property
    def module_class(self) -> type:
        return OPTTD3BCModule

    def get_default_learner_class(self) -> type:
        return OPTTD3BCLearner
