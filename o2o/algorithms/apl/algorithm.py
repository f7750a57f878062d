"""APL as an RLlib Algorithm: TD3+BC's, with APL's config (the buffer choice is the learner's)."""

from __future__ import annotations

from o2o.algorithms.td3bc.algorithm import TD3BCAlgorithm


class APLAlgorithm(TD3BCAlgorithm):
    """Offline TD3+BC, then APL's adaptive online fine-tuning (see `APLConfig`, `APLLearner`)."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.apl.config import APLConfig

        return APLConfig()
