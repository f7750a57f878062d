"""SAC: soft actor-critic, the online learner (and the dataset factory's behaviour learner)."""

from o2o.algorithms.sac.algorithm import SACAlgorithm
from o2o.algorithms.sac.config import SACConfig

CONFIG = SACConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "SACAlgorithm", "SACConfig"]
