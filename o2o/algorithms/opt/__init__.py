"""OPT: online pre-training of a new value function between offline training and fine-tuning,
on TD3+BC and on SPOT."""

from o2o.algorithms.opt.spot import OPTSPOTConfig
from o2o.algorithms.opt.td3bc import OPTTD3BCConfig

ON_BASES = {"td3bc": OPTTD3BCConfig, "spot": OPTSPOTConfig}
"""Base algorithm → OPT on it; registered as opt_td3bc and opt_spot."""

__all__ = ["ON_BASES", "OPTSPOTConfig", "OPTTD3BCConfig"]
