"""The RLModule base every o2o method's networks extend.

Methods that train on standardized states (TD3+BC §5, SPOT) see them everywhere: the replay
holds standardized rows (`O2OLearner` writes them), and the env-facing forwards standardize
what the environment returns with the same statistics. Those statistics are buffers of the
module, so they are checkpointed and reach the EnvRunners with the weights; until a learner
sets them from a dataset they are the identity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn


class ObservationNormalizer(nn.Module):
    """s ↦ (s − μ) / σ with fixed statistics held as buffers (identity by default)."""

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def set(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Take the dataset's per-dimension mean and standard deviation."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


class O2OModule(TorchRLModule, InferenceOnlyAPI):
    """A TorchRLModule whose env-facing forwards are the method's `act` (evaluation) and
    `explore` (online collection), both on standardized observations.

    Subclasses build their networks in `setup()` as RLlib expects, name the networks EnvRunners
    do not need in `get_non_inference_attributes()`, and say how they act; RLlib's forward
    methods, the observation standardization and `no_grad` live here once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.obs_normalizer = ObservationNormalizer(int(np.prod(self.observation_space.shape)))

    def policy_input_dim(self) -> int:
        """Width of the policy's input: the state's here. A method that conditions its policy on
        more than the state widens it (FamO2O appends the encoded balance coefficient)."""
        return int(np.prod(self.observation_space.shape))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy's actions (B, act) for standardized states (B, obs): what
        evaluation scores."""
        raise NotImplementedError

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """The actions (B, act) online collection takes for standardized states (B, obs)."""
        raise NotImplementedError

    @torch.no_grad()
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTIONS: self.act(self.obs_normalizer(batch[Columns.OBS]))}

    @torch.no_grad()
    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTIONS: self.explore(self.obs_normalizer(batch[Columns.OBS]))}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._forward_inference(batch)
