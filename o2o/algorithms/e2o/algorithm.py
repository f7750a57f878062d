"""E2O as an RLlib Algorithm: CQL's, with E2O's config."""

from __future__ import annotations

from o2o.algorithms.cql.algorithm import CQLAlgorithm


class E2OAlgorithm(CQLAlgorithm):
    """CQL on an N-critic ensemble offline, then SAC-N with E2O's target, uncertainty weight and
    UCB exploration on a fresh online buffer."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.e2o.config import E2OConfig

        return E2OConfig()
