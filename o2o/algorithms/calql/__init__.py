"""Cal-QL: CQL calibrated by Monte-Carlo returns offline, then online on a 50:50 mixed replay."""

from o2o.algorithms.calql.algorithm import CalQLAlgorithm
from o2o.algorithms.calql.config import CalQLConfig

CONFIG = CalQLConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "CalQLAlgorithm", "CalQLConfig"]
