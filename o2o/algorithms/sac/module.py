"""SAC's networks: a tanh-Gaussian actor, twin critics and their target, and log α."""

from __future__ import annotations

import copy
import math

import torch

from o2o.platform.module import O2OModule
from o2o.platform.networks import QEnsemble, TanhGaussianActor


class SACModule(O2OModule):
    """EnvRunners build only the actor; the learner builds the critics and temperature too."""

    def setup(self) -> None:
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        hidden = self.model_config["hidden_sizes"]
        critic_hidden = self.model_config["critic_hidden_sizes"]
        self.actor = TanhGaussianActor(self.policy_input_dim(), act_dim, hidden)
        if not self.inference_only:
            self.critic = QEnsemble(
                self.model_config["num_critics"], obs_dim + act_dim, critic_hidden, self.model_config["critic_layer_norm"]
            )
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
            initial = math.log(self.model_config.get("initial_temperature", 1.0))
            self.log_alpha = torch.nn.Parameter(torch.tensor(initial))

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic", "critic_target", "log_alpha"]

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)[0]
