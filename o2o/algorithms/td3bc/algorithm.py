"""TD3+BC as an RLlib Algorithm: TD3's, with TD3+BC's config."""

from __future__ import annotations

from o2o.algorithms.td3.algorithm import TD3Algorithm


class TD3BCAlgorithm(TD3Algorithm):
    """Offline TD3+BC, then online fine-tuning with the same loss (see `TD3BCConfig`)."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.td3bc.config import TD3BCConfig

        return TD3BCConfig()
