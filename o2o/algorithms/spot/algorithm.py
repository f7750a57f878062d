"""SPOT as an RLlib Algorithm: TD3's phases with a VAE pretraining phase in front."""

from __future__ import annotations

from typing import TYPE_CHECKING

from o2o.algorithms.td3.algorithm import TD3Algorithm
from o2o.platform.engine import Phase
from o2o.platform.replay import Sampling

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

    def iterate(self, phase: Phase, remaining: int) -> int:
        """A VAE pretraining iteration is `updates_per_iteration` VAE updates on dataset minibatches
        (metrics under `vae_pretraining/`); the other phases are the engine's."""
        if phase.name != "vae_pretraining":
            return super().iterate(phase, remaining)
        n = min(self.hp.updates_per_iteration, remaining)
        self._record(phase.name, self._learner("run_updates", n, Sampling("offline")))
        self.updates += n
        return n
