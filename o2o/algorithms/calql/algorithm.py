"""Cal-QL as an RLlib Algorithm: CQL's, with Cal-QL's config."""

from __future__ import annotations

from o2o.algorithms.cql.algorithm import CQLAlgorithm


class CalQLAlgorithm(CQLAlgorithm):
    """Offline Cal-QL, then online fine-tuning on half dataset, half online minibatches."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.calql.config import CalQLConfig

        return CalQLConfig()
