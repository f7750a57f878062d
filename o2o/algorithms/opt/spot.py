"""OPT on SPOT, the paper's AntMaze and Adroit setting: SPOT's VAE, offline and fine-tuning
phases (λ cooled over fine-tuning), OPT's two between offline and fine-tuning, the actor's Q
the κ-mix inside SPOT's actor loss, 1 update per env step."""

from __future__ import annotations

from o2o.algorithms.opt.algorithm import OPTAlgorithm
from o2o.algorithms.opt.config import OPTConfig
from o2o.algorithms.opt.learner import OPTLearner
from o2o.algorithms.opt.module import OPTModule
from o2o.algorithms.spot.algorithm import SPOTAlgorithm
from o2o.algorithms.spot.config import SPOTConfig
from o2o.algorithms.spot.learner import SPOTLearner
from o2o.algorithms.spot.module import SPOTModule


class OPTSPOTModule(OPTModule, SPOTModule):
    """SPOT's networks (with its VAE) and Q_on."""


class OPTSPOTLearner(OPTLearner, SPOTLearner):
    """SPOT's update, Q_on's around it."""

    seeds_batched = True


class OPTSPOTAlgorithm(OPTAlgorithm, SPOTAlgorithm):
    """SPOT's phases with OPT's two between offline and online."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        return OPTSPOTConfig()


class OPTSPOTConfig(OPTConfig, SPOTConfig):
    """OPT on SPOT with SPOT's defaults (λ per dataset, cooled online) and the ports' κ 0.1 →
    0.9 over 150k fine-tuning steps (AntMaze: 100k, large-diverse 200k; Adroit 250k)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or OPTSPOTAlgorithm)

    @property
    def module_class(self) -> type:
        return OPTSPOTModule

    def get_default_learner_class(self) -> type:
        return OPTSPOTLearner
