"""AWAC's networks: a Gaussian actor, twin critics Q(s, a) and their target."""

from __future__ import annotations

import copy

import torch

from o2o.platform.module import O2OModule
from o2o.platform.networks import GaussianActor, QEnsemble


class AWACModule(O2OModule):
    """EnvRunners build only the actor; the learner builds the critics and their target too.

    The actor is `GaussianActor` (state-independent σ), whose exact log-likelihood of dataset
    actions the advantage-weighted loss maximises; a tanh-squashed Gaussian has no exact
    log-density at actions on the bounds, which datasets hold."""

    def setup(self) -> None:
        obs_dim = self.observation_space.shape[0]
        act_dim = self.action_space.shape[0]
        hidden = self.model_config["hidden_sizes"]
        critic_hidden = self.model_config["critic_hidden_sizes"]
        self.actor = GaussianActor(obs_dim, act_dim, hidden)
        if not self.inference_only:
            self.critic = QEnsemble(
                self.model_config["num_critics"], obs_dim + act_dim, critic_hidden, self.model_config["critic_layer_norm"]
            )
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic", "critic_target"]

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)
