"""The algorithm registry: name → config class. The engine knows no method by name."""

from __future__ import annotations

from o2o.algorithms.iql import IQLConfig
from o2o.algorithms.sac import SACConfig
from o2o.platform.engine import O2OConfig

REGISTRY: dict[str, type[O2OConfig]] = {"iql": IQLConfig, "sac": SACConfig}


def config_class(name: str) -> type[O2OConfig]:
    """The config class registered under `name`; ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(sorted(REGISTRY))})") from None


def hyperparameters() -> dict[str, set[str]]:
    """Every registered algorithm's settable hyperparameter names (the spec validator uses it)."""
    return {name: cls.hyperparameter_names() for name, cls in REGISTRY.items()}
