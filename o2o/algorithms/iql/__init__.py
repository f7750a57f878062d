"""IQL: implicit Q-learning, offline then online on the union replay."""

from o2o.algorithms.iql.algorithm import IQLAlgorithm
from o2o.algorithms.iql.config import IQLConfig

CONFIG = IQLConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "IQLAlgorithm", "IQLConfig"]
