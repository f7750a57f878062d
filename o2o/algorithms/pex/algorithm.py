"""PEX as an RLlib Algorithm: IQL's phases with PEX's config; the expansion is a learner hook."""

from __future__ import annotations

from o2o.algorithms.iql.algorithm import IQLAlgorithm


class PEXAlgorithm(IQLAlgorithm):
    """Offline IQL, then online fine-tuning of a new policy composed with the frozen offline one."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.pex.config import PEXConfig

        return PEXConfig()
