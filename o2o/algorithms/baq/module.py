"""BAQ's networks: the base's, plus the implicit behaviour model π_β."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from o2o.platform.module import O2OModule
from o2o.platform.networks import LOG_STD_MAX, LOG_STD_MIN, mlp


class BehaviourModel(nn.Module):
    """π_β(a|s) = N(μ_β(s), diag σ_β(s)²), μ_β = tanh(·) in the action box [−1, 1]: a Gaussian
    policy whose mean and per-dimension spread depend on the state, fitted to the dataset's
    actions by maximum likelihood. Unsquashed, so the likelihood of a dataset action on the
    box's edge stays finite."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, obs) → μ_β(s) (B, act) and log σ_β(s) (B, act)."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return torch.tanh(mean), log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


class BAQModule(O2OModule):
    """Mixin over a base's module: π_β on the learner only (the EnvRunner acts with the base's
    actor)."""

    def setup(self) -> None:
        super().setup()
        if not self.inference_only:
            obs_dim, act_dim = self.observation_space.shape[0], self.action_space.shape[0]
            self.behaviour = BehaviourModel(obs_dim, act_dim, self.model_config["hidden_sizes"])

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "behaviour"]
