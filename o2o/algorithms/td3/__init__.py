"""TD3: twin delayed DDPG, offline then online on the union replay (APL's online learner,
the base SPOT and TD3+BC extend)."""

from o2o.algorithms.td3.algorithm import TD3Algorithm
from o2o.algorithms.td3.config import TD3Config

CONFIG = TD3Config
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "TD3Algorithm", "TD3Config"]
