"""AWAC as an RLlib Algorithm: the engine's phases with AWAC's config."""

from __future__ import annotations

from o2o.platform.engine import O2OAlgorithm


class AWACAlgorithm(O2OAlgorithm):
    """Offline AWAC, then online fine-tuning with the same losses on the union of dataset and
    online replay."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.awac.config import AWACConfig

        return AWACConfig()
