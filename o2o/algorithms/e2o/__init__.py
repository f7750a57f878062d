"""E2O: pessimistic CQL on a Q-ensemble offline, optimistic SAC-N with UCB exploration online."""

from o2o.algorithms.e2o.algorithm import E2OAlgorithm
from o2o.algorithms.e2o.config import E2OConfig

CONFIG = E2OConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "E2OAlgorithm", "E2OConfig"]
