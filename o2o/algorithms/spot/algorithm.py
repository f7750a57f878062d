"""SPOT as an RLlib Algorithm: TD3's phases with a VAE pretraining phase in front."""

from __future__ import annotations

from typing import TYPE_CHECKING

from o2o.algorithms.td3.algorithm import TD3Algorithm
from o2o.platform.engine import Phase

if TYPE_CHECKING:
    from o2o.algorithms.spot.config import SPOTConfig


class SPOTAlgorithm(TD3Algorithm):
    """`vae_pretraining` (the behaviour VAE alone, on the dataset) → `offline` → `online`."""

    @classmethod
    def get_default_config(cls):  # noqa: ANN206 - RLlib's signature
        from o2o.algorithms.spot.config import SPOTConfig

        return SPOTConfig()

    @classmethod
    def phases(cls, config: SPOTConfig) -> list[Phase]:
        """The authors' order: `train_vae.py`, then `main.py`, then `main_finetune.py`. The VAE
        phase leaves the actor untrained, so it is not evaluated."""
        vae = Phase("vae_pretraining", config.vae_pretrain_updates, "updates", trains_policy=False)
        return [vae, *super().phases(config)]
