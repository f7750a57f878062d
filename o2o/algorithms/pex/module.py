"""PEX's networks: IQL's, plus the frozen offline actor, and the composed policy that acts online.

The policy set is {π_offline, π_new}: `offline_actor` holds the offline phase's actor, frozen, and
`actor` is the new policy, re-initialised when the set is expanded (`expand_policy`, called by the
learner at the online start). Both exist from `setup()` on, so the state dict has one layout in
every phase (checkpoints and the EnvRunner weight pairing depend on it); the `expanded` flag, a
buffer that travels with the weights, says whether `act` and `explore` use the composed policy.

EnvRunners choose between the two candidates by their Q-values, so for PEX the critic and the
offline actor are inference attributes; only V and the target critic stay on the learner.
"""

from __future__ import annotations

import copy

import torch

from o2o.algorithms.iql.module import IQLModule
from o2o.platform.networks import QEnsemble
from o2o.platform.seeds import reinitialize_linear_


def selection_probabilities(q: torch.Tensor, inverse_temperature: float) -> torch.Tensor:
    """Paper §4, the policy composition: P[i] = exp(α·Q(s, a_i)) / Σ_j exp(α·Q(s, a_j)) over the
    candidates a_i ~ π_i(s). q (B, K) → (B, K)."""
    return torch.softmax(inverse_temperature * q, dim=-1)


def epsilon_greedy(sampled: torch.Tensor, greedy: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Per row, the sample with probability ε, else the greedy value (the authors'
    `epsilon_greedy_sample`: ε = 1 always samples, ε = 0 is greedy). Leading dimension B."""
    take_sample = torch.rand(sampled.shape[0], device=sampled.device) < epsilon
    return torch.where(take_sample.view(-1, *[1] * (sampled.dim() - 1)), sampled, greedy)


class PEXModule(IQLModule):
    """IQL's module with the policy set {frozen offline actor, new actor} composed by Q."""

    seed_shared_buffers = ("expanded",)
    """Every seed of a K-seed trial expands its policy set at the same phase start."""

    def setup(self) -> None:
        super().setup()
        cfg = self.model_config
        if self.inference_only:  # the learner's critic is built by IQL; EnvRunners need one too
            in_dim = self.observation_space.shape[0] + self.action_space.shape[0]
            self.critic = QEnsemble(cfg["num_critics"], in_dim, cfg["critic_hidden_sizes"], cfg["critic_layer_norm"])
        # A frozen policy acts as it was trained to act: no gradient, and no dropout (see `train`).
        self.offline_actor = copy.deepcopy(self.actor).requires_grad_(False).eval()
        self.register_buffer("expanded", torch.zeros((), dtype=torch.bool))
        self.inverse_temperature: float = cfg["inverse_temperature"]
        self.eval_epsilon: float = cfg["eval_epsilon"]

    def get_non_inference_attributes(self) -> list[str]:
        return ["value", "critic_target"]

    def train(self, mode: bool = True) -> PEXModule:
        """nn.Module's train/eval switch, leaving the frozen offline actor in eval mode."""
        super().train(mode)
        self.offline_actor.eval()
        return self

    @torch.no_grad()
    def expand_policy(self) -> None:
        """Expand the policy set: the trained actor becomes the frozen offline policy, and the
        actor restarts as a fresh policy (a new GaussianActor's initialisation, in place, so the
        optimizer and the EnvRunner weight pairs keep their tensors)."""
        self.offline_actor.load_state_dict(self.actor.state_dict())
        reinitialize_linear_(self.actor)
        self.actor.log_std.zero_()
        self.expanded.fill_(True)

    @torch.no_grad()
    def compose(self, obs: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One action of the composed policy per state, and which policy proposed it (0 offline,
        1 new). The offline candidate is its actor's mean (`act(deterministic=True)`); the new
        one and the choice are sampled with probability ε, else greedy (`epsilon_greedy`); the
        choice's probabilities are `selection_probabilities` of the min-critic Q-values. obs are
        standardized states (B, obs) → actions (B, act), choice (B,)."""
        offline = self.offline_actor.deterministic(obs)
        new = epsilon_greedy(self.actor.sample(obs), self.actor.deterministic(obs), epsilon)
        candidates = torch.stack([offline, new], dim=1)  # (B, 2, act)
        q = self.critic(obs.repeat(2, 1), torch.cat([offline, new])).min(0).values
        probs = selection_probabilities(q.view(2, -1).T, self.inverse_temperature)
        choice = epsilon_greedy(torch.multinomial(probs, 1).squeeze(-1), probs.argmax(-1), epsilon)
        return candidates[torch.arange(len(choice), device=choice.device), choice], choice

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self.compose(obs, self.eval_epsilon)[0] if self.expanded else super().act(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        return self.compose(obs, 1.0)[0] if self.expanded else super().explore(obs)
