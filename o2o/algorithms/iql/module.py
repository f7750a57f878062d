"""IQL's networks: a Gaussian actor, a state value V(s), twin critics Q(s, a) and their target."""

from __future__ import annotations

import copy

import torch

from o2o.platform.module import O2OModule
from o2o.platform.networks import GaussianActor, QEnsemble, mlp


class IQLModule(O2OModule):
    """EnvRunners build only the actor; the learner builds all four networks."""

    def setup(self) -> None:
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        hidden = self.model_config["hidden_sizes"]
        critic_hidden = self.model_config["critic_hidden_sizes"]
        self.actor = GaussianActor(self.policy_input_dim(), act_dim, hidden, self.model_config.get("actor_dropout", 0.0))
        if not self.inference_only:
            self.value = mlp(obs_dim, critic_hidden, 1)
            self.critic = QEnsemble(
                self.model_config["num_critics"], obs_dim + act_dim, critic_hidden, self.model_config["critic_layer_norm"]
            )
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["value", "critic", "critic_target"]

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs).squeeze(-1)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)
