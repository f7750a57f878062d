"""CQL: conservative Q-learning on SAC, offline then online on the union replay."""

from o2o.algorithms.cql.algorithm import CQLAlgorithm
from o2o.algorithms.cql.config import CQLConfig

CONFIG = CQLConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "CQLAlgorithm", "CQLConfig"]
