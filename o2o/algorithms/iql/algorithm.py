"""IQL as an RLlib Algorithm: the engine's phases with IQL's config."""

from __future__ import annotations

from o2o.platform.engine import O2OAlgorithm


class IQLAlgorithm(O2OAlgorithm):
    """Offline IQL, then online fine-tuning on the union of dataset and online replay."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.iql.config import IQLConfig

        return IQLConfig()
