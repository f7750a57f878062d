"""E2O's networks: CQL's (tanh-Gaussian actor, an N-critic ensemble and its target, log α, log α'),
with the critics on the EnvRunner too, where exploration scores sampled actions by UCB."""

from __future__ import annotations

import torch

from o2o.algorithms.cql.module import CQLModule
from o2o.platform.networks import QEnsemble


def ucb_choice(q: torch.Tensor, coefficient: float) -> torch.Tensor:
    """E2O's optimistic exploration (SUNRISE's UCB): of K candidate actions per state, the index
    of the highest mean_i Q_i + λ·std_i Q_i over the N critics. q (N, B, K) → (B,)."""
    return (q.mean(0) + coefficient * q.std(0)).argmax(-1)


class E2OModule(CQLModule):
    """CQL's module whose EnvRunner copy holds the critics (not their target) for `explore`."""

    def setup(self) -> None:
        super().setup()
        cfg = self.model_config
        if self.inference_only:
            in_dim = self.observation_space.shape[0] + self.action_space.shape[0]
            self.critic = QEnsemble(cfg["num_critics"], in_dim, cfg["critic_hidden_sizes"], cfg["critic_layer_norm"])
        self.ucb_actions: int = cfg["ucb_actions"]
        self.ucb_coefficient: float = cfg["ucb_coefficient"]

    def get_non_inference_attributes(self) -> list[str]:
        return [name for name in super().get_non_inference_attributes() if name != "critic"]

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """K = `ucb_actions` draws a ~ π(·|s) per state; the one `ucb_choice` picks."""
        batch, k = obs.shape[0], self.ucb_actions
        states = obs.repeat_interleave(k, dim=0)
        actions = self.actor.sample(states)[0]
        q = self.critic(states, actions).view(-1, batch, k)
        best = ucb_choice(q, self.ucb_coefficient)
        return actions.view(batch, k, -1)[torch.arange(batch, device=obs.device), best]
