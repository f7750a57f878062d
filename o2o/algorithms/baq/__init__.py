"""BAQ: behaviour-adaptive Q-learning — a behaviour model fitted offline whose consistency signal
constrains the fine-tuned policy where it is uncertain and lets go as confident experience
accumulates, on TD3+BC."""

from o2o.algorithms.baq.td3bc import BAQTD3BCConfig

ON_BASES = {"td3bc": BAQTD3BCConfig}
"""Base algorithm → BAQ on it; registered as baq_td3bc."""

__all__ = ["ON_BASES", "BAQTD3BCConfig"]
