"""TD3 as an RLlib Algorithm: the engine's phases with TD3's config."""

from __future__ import annotations

from o2o.platform.engine import O2OAlgorithm


class TD3Algorithm(O2OAlgorithm):
    """Offline TD3, then online fine-tuning with Gaussian exploration noise."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.td3.config import TD3Config

        return TD3Config()
