"""Generators: models that write synthetic transitions into a base algorithm's replay.

A generator is a config choice on any off-policy base (`generator: edis | cfdg` in a trial's
hyperparameters, with the generator's own fields; `o2o.platform.engine` runs it), not a
method folder per pair. The authors' per-base settings are data here, as CORL keeps
per-dataset settings: a field left None takes its value from `AUTHORS_SETTINGS`.
"""

from __future__ import annotations

from typing import Any

GENERATORS = ("edis", "cfdg")

GENERATOR_SCHEDULES = ("mix", "burst")
"""How generated rows enter updates: ``mix`` — every online update draws `generated_fraction`
of its minibatch from them (Cal-QL-EDIS, CFDG); ``burst`` — ordinary updates keep the base's
rule, and right after each retrain `burst_updates` extra updates draw that share from them
(IQL-EDIS: `utd_ratio` = 20 updates at each retrain step)."""

AUTHORS_SETTINGS: dict[str, dict[str | None, dict[str, Any]]] = {
    "edis": {
        # liuxhym/EDIS: algorithms/iql_edis.py and configs/iql_edis/*.gin (offline_mixing_ratio 0.2,
        # utd_ratio 20 at each retrain, 30k diffusion steps); algorithms/cal_ql_edis.py (0.5 in
        # every online update, 10k diffusion steps).
        "iql": {"generator_schedule": "burst", "generated_fraction": 0.2, "generator_train_steps": 30_000},
        "calql": {"generator_schedule": "mix", "generated_fraction": 0.5, "generator_train_steps": 10_000},
        None: {"generator_schedule": "mix", "generated_fraction": 0.5, "generator_train_steps": 30_000},
    },
    # CFDG (arXiv 2508.06806; no code): one third of each minibatch synthetic, retrained as EDIS.
    "cfdg": {None: {"generator_schedule": "mix", "generated_fraction": 1 / 3, "generator_train_steps": 30_000}},
}
"""generator → base algorithm (None: any other) → the settings its authors ran it with."""


def authors_settings(generator: str, algorithm: str) -> dict[str, Any]:
    """The authors' settings of `generator` on the base `algorithm` (their default elsewhere)."""
    table = AUTHORS_SETTINGS[generator]
    return dict(table.get(algorithm, table[None]))


def generator_class(name: str) -> type:
    """The `TransitionGenerator` subclass registered as `name`."""
    if name == "edis":
        from o2o.generators.edis import EDISGenerator

        return EDISGenerator
    if name == "cfdg":
        from o2o.generators.cfdg import CFDGGenerator

        return CFDGGenerator
    raise ValueError(f"unknown generator {name!r} (known: {', '.join(GENERATORS)})")
