"""The algorithm registry: every subpackage of `o2o.algorithms` that exports `CONFIG`.

A new algorithm is a folder `o2o/algorithms/<name>/` (config, module, learner) whose
`__init__.py` sets `CONFIG = <its O2OConfig subclass>`; it is registered under the folder's
name and must pass `tests/test_conformance.py`. The engine knows no method by name.
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
