"""IQL's networks: a Gaussian actor, a state value V(s), twin critics Q(s, a) and their target."""

from __future__ import annotations

import copy
from typing import Any

import torch
from ray.rllib.core.columns import Columns

from o2o.platform.module import O2OModule
from o2o.platform.networks import GaussianActor, QEnsemble, mlp


class IQLModule(O2OModule):
    """EnvRunners build only the actor; the learner builds all four networks."""

    def setup(self) -> None:
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        hidden = self.model_config["hidden_sizes"]
        self.actor = GaussianActor(obs_dim, act_dim, hidden, self.model_config.get("actor_dropout", 0.0))
        if not self.inference_only:
            self.value = mlp(obs_dim, hidden, 1)
            self.critic = QEnsemble(
                self.model_config["num_critics"], obs_dim + act_dim, hidden, self.model_config["critic_layer_norm"]
            )
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["value", "critic", "critic_target"]

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs).squeeze(-1)

    @torch.no_grad()
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTIONS: self.actor.deterministic(self.observations(batch))}

    @torch.no_grad()
    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTIONS: self.actor.sample(self.observations(batch))}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._forward_inference(batch)
