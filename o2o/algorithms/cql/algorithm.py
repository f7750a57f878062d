"""CQL as an RLlib Algorithm: SAC's, with CQL's config."""

from __future__ import annotations

from o2o.algorithms.sac.algorithm import SACAlgorithm


class CQLAlgorithm(SACAlgorithm):
    """Offline CQL, then online fine-tuning with the same losses on the union replay."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.cql.config import CQLConfig

        return CQLConfig()
