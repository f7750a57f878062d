"""OPT's phases: the base's, with online collection and online pre-training before `online`."""

from __future__ import annotations

from o2o.algorithms.opt.config import COLLECTION, PRETRAINING, OPTConfig
from o2o.platform.engine import O2OAlgorithm, Phase


class OPTAlgorithm(O2OAlgorithm):
    """Mixin over a base's algorithm: … → offline → `online_collection` → `online_pretraining`
    → online. Neither new phase changes the policy, so neither is evaluated."""

    @classmethod
    def phases(cls, config: OPTConfig) -> list[Phase]:
        phases = super().phases(config)
        at = [p.name for p in phases].index("online")
        return [
            *phases[:at],
            Phase(COLLECTION, config.collection_env_steps, "env_steps", trains_policy=False),
            Phase(PRETRAINING, config.pretraining_updates, "updates", trains_policy=False),
            *phases[at:],
        ]

    def iterate(self, phase: Phase, remaining: int) -> int:
        """A collection iteration steps the env with the offline policy and updates nothing;
        pre-training is an update phase like any other (its learner draws the online half)."""
        if phase.name == COLLECTION:
            return self.collect_online(min(self.hp.env_steps_per_iteration, remaining))
        return super().iterate(phase, remaining)
