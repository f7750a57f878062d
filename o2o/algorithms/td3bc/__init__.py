"""TD3+BC: TD3 whose actor loss adds behaviour cloning, offline then online on the union replay."""

from o2o.algorithms.td3bc.algorithm import TD3BCAlgorithm
from o2o.algorithms.td3bc.config import TD3BCConfig

CONFIG = TD3BCConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "TD3BCAlgorithm", "TD3BCConfig"]
