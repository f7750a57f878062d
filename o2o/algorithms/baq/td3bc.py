"""BAQ on TD3+BC: TD3+BC offline with π_β fitted beside it; in fine-tuning TD3+BC's fixed BC term
gives way to BAQ's adaptive behaviour-consistency term (`bc_weight` 0 online), the actor's Q term
still normalized by TD3+BC's λ."""

from __future__ import annotations

from o2o.algorithms.baq.config import BAQConfig
from o2o.algorithms.baq.learner import BAQLearner
from o2o.algorithms.baq.module import BAQModule
from o2o.algorithms.td3.module import TD3Module
from o2o.algorithms.td3bc.algorithm import TD3BCAlgorithm
from o2o.algorithms.td3bc.config import TD3BCConfig
from o2o.algorithms.td3bc.learner import TD3BCLearner


class BAQTD3BCModule(BAQModule, TD3Module):
    """TD3's networks and π_β."""


class BAQTD3BCLearner(BAQLearner, TD3BCLearner):
    """TD3+BC's update, with BAQ's pieces in it."""

    seeds_batched = True


class BAQTD3BCAlgorithm(TD3BCAlgorithm):
    """TD3+BC's phases: offline, then online."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        return BAQTD3BCConfig()


class BAQTD3BCConfig(BAQConfig, TD3BCConfig):
    """BAQ on TD3+BC (α 2.5): the BC term to the dataset's actions offline, BAQ's adaptive term to
    π_β's in fine-tuning, at TD3+BC's 1 update per env step."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or BAQTD3BCAlgorithm)
        self.phase_overrides = {"online": {"bc_weight": 0.0}}

    @property
    def module_class(self) -> type:
        return BAQTD3BCModule

    def get_default_learner_class(self) -> type:
        return BAQTD3BCLearner
