"""PEX: policy expansion — IQL offline, then a frozen offline policy beside a fresh one online."""

from o2o.algorithms.pex.algorithm import PEXAlgorithm
from o2o.algorithms.pex.config import PEXConfig

CONFIG = PEXConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "PEXAlgorithm", "PEXConfig"]
