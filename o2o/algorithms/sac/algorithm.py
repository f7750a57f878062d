"""SAC as an RLlib Algorithm on the engine (online phase; an offline phase is allowed)."""

from __future__ import annotations

from o2o.platform.engine import O2OAlgorithm


class SACAlgorithm(O2OAlgorithm):
    """Soft actor-critic with the engine's replay and phases."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.sac.config import SACConfig

        return SACConfig()
