"""CQL's networks: SAC's (tanh-Gaussian actor, twin critics and their target, log α) and the
log of the Lagrange multiplier α' of the conservative term."""

from __future__ import annotations

import math

import torch

from o2o.algorithms.sac.module import SACModule


class CQLModule(SACModule):
    """SAC's module plus log α'. The multiplier exists whether or not `cql_lagrange` is on, so a
    phase may switch the Lagrange variant and every checkpoint has one layout; without it, the
    parameter gets no gradient and Adam leaves it untouched."""

    def setup(self) -> None:
        super().setup()
        if not self.inference_only:
            initial = math.log(self.model_config.get("initial_cql_multiplier", math.e))
            self.log_cql_multiplier = torch.nn.Parameter(torch.tensor(initial))

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "log_cql_multiplier"]
