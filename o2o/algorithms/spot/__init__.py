"""SPOT: TD3 whose actor is kept in the behaviour policy's support by a VAE density penalty; the
VAE pretrained first, then offline, then online with λ cooled and fresh optimizer state."""

from o2o.algorithms.spot.algorithm import SPOTAlgorithm
from o2o.algorithms.spot.config import SPOTConfig

CONFIG = SPOTConfig
"""The config class the registry finds this algorithm by."""

__all__ = ["CONFIG", "SPOTAlgorithm", "SPOTConfig"]
