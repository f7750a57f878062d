"""APL: TD3+BC offline; online, each update takes the near-on-policy online buffer with TD3's
loss or the offline buffer with TD3+BC's (Zheng et al., AAAI 2023)."""

from o2o.algorithms.apl.algorithm import APLAlgorithm
from o2o.algorithms.apl.config import APLConfig

CONFIG = APLConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["APLAlgorithm", "APLConfig", "CONFIG"]
