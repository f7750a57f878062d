"""TD3's networks: a deterministic actor, twin critics and a target copy of each."""

from __future__ import annotations

import copy

import torch

from o2o.platform.module import O2OModule
from o2o.platform.networks import DeterministicActor, QEnsemble


class TD3Module(O2OModule):
    """EnvRunners build only the actor; the learner builds the critics and both targets too."""

    def setup(self) -> None:
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        hidden = self.model_config["hidden_sizes"]
        critic_hidden = self.model_config["critic_hidden_sizes"]
        self.exploration_noise = float(self.model_config["exploration_noise"])
        self.actor = DeterministicActor(obs_dim, act_dim, hidden, self.model_config.get("actor_dropout", 0.0))
        if not self.inference_only:
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
            self.critic = QEnsemble(
                self.model_config["num_critics"], obs_dim + act_dim, critic_hidden, self.model_config["critic_layer_norm"]
            )
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["actor_target", "critic", "critic_target"]

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.noisy(obs, self.exploration_noise)
