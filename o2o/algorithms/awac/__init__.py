"""AWAC: advantage-weighted actor-critic, offline then online on the union replay with the same losses."""

from o2o.algorithms.awac.algorithm import AWACAlgorithm
from o2o.algorithms.awac.config import AWACConfig

CONFIG = AWACConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "AWACAlgorithm", "AWACConfig"]
