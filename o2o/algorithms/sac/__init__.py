"""SAC: soft actor-critic, the online learner (and the dataset factory's behaviour learner)."""

from o2o.algorithms.sac.algorithm import SACAlgorithm
from o2o.algorithms.sac.config import SACConfig

__all__ = ["SACAlgorithm", "SACConfig"]
