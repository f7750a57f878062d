"""Balanced replay: sample offline and online rows in proportion to their online-ness.

Lee, Seo, Lee, Abbeel, Shin. "Offline-to-Online Reinforcement Learning via Balanced Replay and
Pessimistic Q-Ensemble", CoRL 2021, arXiv:2107.00591. Checked against the authors' code
shlee94/Off2OnRL (`rlkit/torch/sac/ours.py`, `rlkit/core/batch_rl_algorithm.py`,
`rlkit/data_management/prioritized_replay_buffer.py`, `examples/ours.py`).

A density-ratio network w_ψ(s, a) ≈ d_online(s, a) / d_offline(s, a) is trained on one offline
and one online minibatch per update with the Jensen–Shannon case of the variational
f-divergence bound (`density_ratio_loss`). Every row of the replay (dataset and online alike)
has a priority; a minibatch is drawn with probability ∝ priority, and after each update the rows
it drew get fresh priorities w^(1/T), relative to the dataset's typical value, from the current
network (`balanced_priority`, temperature T = 5). So online-like dataset rows and the online
rows themselves are replayed more as the policy moves away from the data, without discarding
the dataset.

This is a sampling rule of the engine (``sampling_rule: balanced``) that any off-policy learner
can use: `O2OLearner.run_updates` creates a `BalancedReplay` at the first update drawn by the
rule, calls `update` after each such update, asks it for the priorities of new online rows, and
checkpoints its state with the learner's.

One deliberate difference from the released code: there, a new online row enters with the
buffer's running maximum priority, initialised to n_offline · f / ((1 − f) · 1000) with
`init_online_fraction` f = 0.5, so that each freshly collected 1000-step chunk holds about half
of the sampling mass until its rows are first drawn (and refreshed). o2o's EnvRunner usually
hands over one transition per update, and once the running maximum reaches the clamp 1000 a
single new row holds 1000 / (n_offline + 1000) of the mass — on a 5k-row dataset
(Adroit's human sets) about 17% of every minibatch would be copies of the newest transition.
New rows here take the priority the current network gives them, the rule of a refreshed row.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from o2o.platform.networks import mlp
from o2o.platform.replay import ReplayStore, Sampling

PRIORITY_MIN = 1e-3
"""Lower clamp of a priority (Off2OnRL `ours.py`: `normalized_weight.clamp(0.001, 1000)`)."""
PRIORITY_MAX = 1e3
"""Upper clamp of a priority (same line)."""


class DensityRatio(torch.nn.Module):
    """w_ψ(s, a) ≥ 0: a ReLU MLP on [s, a] whose output passes a ReLU, with the last bias
    initialised to 1 so every row starts near w = 1 (Off2OnRL `examples/ours.py`, `ours.py`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1)
        torch.nn.init.constant_(self.net[-1].bias, 1.0)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, obs), (B, act) → (B,) density ratios."""
        return torch.relu(self.net(torch.cat([obs, actions], dim=-1))).squeeze(-1)


def density_ratio_loss(w_offline: torch.Tensor, w_online: torch.Tensor) -> torch.Tensor:
    """The Jensen–Shannon variational objective for w = d_online / d_offline:

        L(ψ) = E_offline[ −log(2 / (w + 1)) ] − E_online[ log(2w / (w + 1)) ],

    i.e. E_off[f*(T)] − E_on[T] with T = log(2w/(w+1)) and f*(T) = −log(2 − e^T). Pointwise its
    minimum is at w = d_on/d_off, where L = −2·JS(d_on ‖ d_off) ∈ [−2 log 2, 0]; at w ≡ 1 it is 0.
    1e-10 inside the logs as in the authors' code, so w = 0 stays finite."""
    offline_term = -torch.log(2.0 / (w_offline + 1.0) + 1e-10)
    online_term = torch.log(2.0 * w_online / (w_online + 1.0) + 1e-10)
    return offline_term.mean() - online_term.mean()


def balanced_priority(w: torch.Tensor, reference: torch.Tensor | float, temperature: float) -> torch.Tensor:
    """A row's priority: w^(1/T) / (r + 1e-10), clamped to [PRIORITY_MIN, PRIORITY_MAX], where
    r = mean over an offline minibatch of w^(1/T), so a typical dataset row has priority ≈ 1
    and the temperature T flattens the ratio (paper: T = 5)."""
    return (w.pow(1.0 / temperature) / (reference + 1e-10)).clamp(PRIORITY_MIN, PRIORITY_MAX)


class BalancedReplay:
    """The density-ratio network, its Adam, and the priority bookkeeping of a `ReplayStore`."""

    def __init__(
        self,
        replay: ReplayStore,
        hidden: Sequence[int],
        lr: float,
        batch_size: int,
        temperature: float,
    ) -> None:
        obs_dim, act_dim = (int(np.prod(replay.columns[k])) for k in ("obs", "actions"))
        self.net = DensityRatio(obs_dim, act_dim, hidden).to(replay.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.batch_size = batch_size
        self.temperature = temperature
        self.reference = torch.ones((), device=replay.device)
        """r of `balanced_priority`: mean w^(1/T) over the latest offline minibatch (1 until the
        first update: the fresh network gives w ≈ 1)."""
        replay.track_priorities()

    def configure(self, lr: float, batch_size: int, temperature: float) -> None:
        """Take a phase's settings: the Adam step size, the minibatch size and T."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.batch_size = batch_size
        self.temperature = temperature

    def update(
        self, replay: ReplayStore, indices: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """After one learner update on rows `indices` (`batch`): refresh those rows' priorities
        and take one gradient step of the density ratio on a fresh uniform offline minibatch and
        a fresh uniform online one (both drawn from the store's generator). As in the authors'
        code, the priorities use the network before this step."""
        offline = replay.sample(self.batch_size, Sampling("offline"))
        online = replay.sample(self.batch_size, Sampling("online"))
        with torch.enable_grad():  # one forward for both minibatches
            w = self.net(torch.cat([offline["obs"], online["obs"]]), torch.cat([offline["actions"], online["actions"]]))
            w_offline, w_online = w.split([len(offline["obs"]), len(online["obs"])])
            loss = density_ratio_loss(w_offline, w_online)
        with torch.no_grad():
            self.reference = w_offline.detach().pow(1.0 / self.temperature).mean()
            w_batch = self.net(batch["obs"], batch["actions"])
            replay.set_priorities(indices, balanced_priority(w_batch, self.reference, self.temperature))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {
            "density_ratio_loss": loss.detach(),
            "density_ratio_offline": w_offline.detach().mean(),
            "density_ratio_online": w_online.detach().mean(),
            "online_share": (indices >= replay.n_offline).float().mean(),
        }

    @torch.no_grad()
    def priorities_for(self, rows: Mapping[str, np.ndarray]) -> torch.Tensor:
        """Priorities of new online rows (as the store will hold them) under the current network."""
        device = self.reference.device
        obs = torch.as_tensor(np.asarray(rows["obs"], dtype=np.float32), device=device)
        actions = torch.as_tensor(np.asarray(rows["actions"], dtype=np.float32), device=device)
        return balanced_priority(self.net(obs, actions), self.reference, self.temperature)

    def get_state(self) -> dict[str, bytes]:
        """The network, its optimizer and the reference r, serialized as bytes."""
        buffer = io.BytesIO()
        torch.save(
            {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "reference": self.reference},
            buffer,
        )
        return {"torch": buffer.getvalue()}

    def set_state(self, state: Mapping[str, bytes]) -> None:
        device = self.reference.device
        saved = torch.load(io.BytesIO(state["torch"]), map_location=device, weights_only=True)
        self.net.load_state_dict(saved["net"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.reference = saved["reference"].to(device)
