"""Learner-resident replay: the offline dataset and online experience in one packed tensor.

Every transition is one row of a single float tensor on the learner's device: the dataset's
rows first, then a ring of online rows. A minibatch is one `randint` and one row gather, then
column views — no host round trip, no per-batch conversion. Sampling rules say where the rows of
a minibatch come from; they are named so a method's config can choose one:

- ``offline``: the dataset only (the offline phase);
- ``union``: uniform over the dataset and everything collected online (IQL, FamO2O, CORL);
- ``ratio``: a fixed fraction from the dataset, the rest from the online rows (RLPD's symmetric
  sampling at 0.5, Cal-QL's mixing);
- ``online``: online rows only (E2O's fresh buffer, APL's online branch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

SAMPLING_RULES = ("offline", "union", "ratio", "online")


@dataclass(frozen=True)
class Sampling:
    """Where a minibatch's rows come from: a rule and, for ``ratio``, the dataset fraction."""

    rule: str = "union"
    offline_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.rule not in SAMPLING_RULES:
            raise ValueError(f"sampling rule {self.rule!r} is not one of {SAMPLING_RULES}")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction must lie in [0, 1], got {self.offline_fraction}")


def transition_columns(obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
    """The packed layout: column name → per-row shape (() for a scalar), RLlib's column names."""
    return {"obs": (obs_dim,), "actions": (act_dim,), "rewards": (), "new_obs": (obs_dim,), "terminateds": ()}


class ReplayStore:
    """Offline rows [0, n_offline) and an online ring [n_offline, n_offline + capacity)."""

    def __init__(
        self,
        columns: Mapping[str, tuple[int, ...]],
        offline: Mapping[str, np.ndarray] | None,
        online_capacity: int,
        device: torch.device,
        seed: int,
    ) -> None:
        self.columns = dict(columns)
        widths = [int(np.prod(shape)) for shape in self.columns.values()]
        self.width = sum(widths)
        self.n_offline = 0 if offline is None else len(next(iter(offline.values())))
        self.capacity = online_capacity
        self.device = device
        self.table = torch.empty(self.n_offline + online_capacity, self.width, device=device)
        if offline is not None:
            self.table[: self.n_offline] = torch.from_numpy(self._pack(offline)).to(device)
        self.n_online = 0
        self.total_added = 0  # online transitions ever added, ring wrap included
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        offsets = np.cumsum([0, *widths])
        self._slices = {k: slice(int(a), int(b)) for k, a, b in zip(self.columns, offsets[:-1], offsets[1:])}

    def _pack(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [k for k in self.columns if k not in data]
        if missing:
            raise KeyError(f"replay rows lack columns {missing}")
        parts = [np.asarray(data[k], dtype=np.float32).reshape(len(data[k]), -1) for k in self.columns]
        return np.concatenate(parts, axis=1)

    def add_online(self, data: Mapping[str, np.ndarray]) -> None:
        """Append online transitions, overwriting the oldest online rows once the ring is full."""
        rows = torch.from_numpy(self._pack(data)).to(self.device)
        if len(rows) > self.capacity:  # only the newest `capacity` rows survive the write
            self.total_added += len(rows) - self.capacity
            rows = rows[-self.capacity :]
        start = self.total_added % self.capacity
        first = min(len(rows), self.capacity - start)
        base = self.n_offline
        self.table[base + start : base + start + first] = rows[:first]
        if first < len(rows):
            self.table[base : base + len(rows) - first] = rows[first:]
        self.total_added += len(rows)
        self.n_online = min(self.n_online + len(rows), self.capacity)

    def sample_indices(self, batch_size: int, sampling: Sampling) -> torch.Tensor:
        """Row indices of one minibatch under a sampling rule."""
        rule = sampling.rule
        if rule == "union" and self.n_online == 0 or rule == "offline":
            return self._randint(0, self.n_offline, batch_size)
        if self.n_online == 0:
            raise RuntimeError(f"sampling rule {rule!r} needs online transitions; none collected yet")
        if rule == "union":
            return self._randint(0, self.n_offline + self.n_online, batch_size)
        if rule == "online" or self.n_offline == 0:
            return self._randint(self.n_offline, self.n_offline + self.n_online, batch_size)
        n_off = int(round(batch_size * sampling.offline_fraction))
        return torch.cat(
            [
                self._randint(0, self.n_offline, n_off),
                self._randint(self.n_offline, self.n_offline + self.n_online, batch_size - n_off),
            ]
        )

    def _randint(self, low: int, high: int, n: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), device=self.device, generator=self.generator)

    def gather(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Column views of the selected rows, each shaped (B, *its shape): scalars as (B,)."""
        rows = self.table.index_select(0, indices)
        return {k: rows[:, s].reshape(-1, *self.columns[k]) for k, s in self._slices.items()}

    def sample(self, batch_size: int, sampling: Sampling) -> dict[str, torch.Tensor]:
        return self.gather(self.sample_indices(batch_size, sampling))

    def get_state(self) -> dict:
        """The online rows and ring position (the dataset is re-read from its content hash)."""
        online = self.table[self.n_offline : self.n_offline + self.n_online].cpu().numpy().copy()
        return {
            "online_rows": online,
            "total_added": self.total_added,
            "generator": self.generator.get_state().cpu().numpy(),
        }

    def set_state(self, state: Mapping) -> None:
        rows = torch.from_numpy(np.asarray(state["online_rows"], dtype=np.float32))
        if rows.shape[1:] != (self.width,) or len(rows) > self.capacity:
            raise ValueError(
                f"checkpointed online buffer has shape {tuple(rows.shape)}; this store holds "
                f"{self.capacity} rows of width {self.width}"
            )
        self.table[self.n_offline : self.n_offline + len(rows)] = rows.to(self.device)
        self.n_online = len(rows)
        self.total_added = int(state["total_added"])
        self.generator.set_state(torch.from_numpy(np.asarray(state["generator"], dtype=np.uint8)))
