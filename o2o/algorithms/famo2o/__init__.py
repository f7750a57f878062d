"""FamO2O: a family of policies over improvement/constraint balances and a balance model that
picks each state's, on IQL and on CQL."""

from o2o.algorithms.famo2o.cql import FamO2OCQLConfig
from o2o.algorithms.famo2o.iql import FamO2OIQLConfig

ON_BASES = {"iql": FamO2OIQLConfig, "cql": FamO2OCQLConfig}
"""Base algorithm → FamO2O on it; registered as famo2o_iql and famo2o_cql."""

__all__ = ["ON_BASES", "FamO2OCQLConfig", "FamO2OIQLConfig"]
