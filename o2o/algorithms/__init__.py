"""The algorithm registry: every subpackage of `o2o.algorithms` that exports `CONFIG` or `ON_BASES`.

A new algorithm is a folder `o2o/algorithms/<name>/` (config, module, learner) whose
`__init__.py` sets `CONFIG = <its O2OConfig subclass>`; it is registered under the folder's
name and must pass `tests/test_conformance.py`. The engine knows no method by name.

A method built on base algorithms (FamO2O on IQL and on CQL) is one folder too. Its config,
learner and module are mixins written once; for each base, a few lines compose them with the
base's classes by inheritance (the mixin first, so it wraps the base's hooks) and add what
differs per base (FamO2O: the base's actor loss with the balance coefficient). The folder's
`__init__.py` sets `ON_BASES = {"<base>": <composed config class>, …}`, registered as
`<name>_<base>` (`famo2o_iql`), each its own algorithm in specs, runs and reports. A base lends
itself to such methods through hooks, not copies: `O2OModule.policy_input_dim` and
`O2OLearner.policy_obs` (what the policy reads), and the base's own loss hooks.
"""

from __future__ import annotations

import importlib
import pkgutil

from o2o.platform.engine import O2OConfig


def _discover() -> dict[str, type[O2OConfig]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}")
            config = getattr(module, "CONFIG", None)
            if config is not None:
                found[info.name] = config
            for base, composed in getattr(module, "ON_BASES", {}).items():
                found[f"{info.name}_{base}"] = composed
    for name, config in found.items():
        config.algorithm_name = name
    return dict(sorted(found.items()))


REGISTRY: dict[str, type[O2OConfig]] = _discover()
"""Algorithm name (its folder) → config class."""


def config_class(name: str) -> type[O2OConfig]:
    """The config class registered under `name`; ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(REGISTRY)})") from None


def hyperparameters() -> dict[str, set[str]]:
    """Every registered algorithm's settable hyperparameter names (the spec validator uses it)."""
    return {name: cls.hyperparameter_names() for name, cls in REGISTRY.items()}
