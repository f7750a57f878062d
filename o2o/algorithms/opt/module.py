"""OPT's networks: the base's, plus the online critic Q_on and its target."""

from __future__ import annotations

import copy

from o2o.platform.module import O2OModule
from o2o.platform.networks import QEnsemble


class OPTModule(O2OModule):
    """Mixin over a base's module: Q_on, a fresh twin critic shaped as the base's Q_off, and its
    Polyak target, on the learner only (the EnvRunner acts with the base's actor)."""

    def setup(self) -> None:
        super().setup()
        if not self.inference_only:
            obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
            self.critic_online = QEnsemble(
                self.model_config["num_critics"],
                obs_dim + act_dim,
                self.model_config["critic_hidden_sizes"],
                self.model_config["critic_layer_norm"],
            )
            self.critic_online_target = copy.deepcopy(self.critic_online).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "critic_online", "critic_online_target"]
