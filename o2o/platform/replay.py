"""Learner-resident replay: the offline dataset and online experience in one packed tensor.

Every transition is one row of a single float tensor on the learner's device: the dataset's
rows first, then a ring of online rows. A minibatch is one index draw and one row gather, then
column views — no host round trip, no per-batch conversion. Sampling rules say where the rows of
a minibatch come from; they are named so a method's config can choose one:

- ``offline``: the dataset only (the offline phase);
- ``union``: uniform over the dataset and everything collected online (IQL, FamO2O, CORL, and
  APL's offline buffer);
- ``ratio``: a fixed fraction from the dataset, the rest from the online rows (RLPD's symmetric
  sampling at 0.5, Cal-QL's mixing);
- ``online``: online rows only (E2O's fresh buffer), or only the newest `online_window` of them
  (APL's near-on-policy online buffer);
- ``prioritized``: every row, dataset and online, with probability proportional to its
  priority, the priorities set by the method's own `PrioritySource` (BAQ: behaviour divergence);
- ``balanced``: the same draw, the priorities set by the density-ratio network of balanced
  replay (Lee et al. 2021, `o2o.platform.balanced.BalancedReplay`), which any learner can use.

A third region after the online ring holds generated rows (a generator's samples, EDIS and
CFDG; `o2o.generators`). It is replaced whole at each retrain (`set_generated`), and a rule's
`generated_fraction` draws that share of a minibatch from it — uniformly, or ∝ a weight per
generated row where the generator gives them (CFDG's density ratios), by a binary search of their
cumulative sum (O(batch · log n)). The rest of the minibatch follows the rule.

The store only keeps and samples the priorities; a `PrioritySource` of the learner computes them.

Priorities live in a sum tree (`SumTree`) over all rows, allocated when a learner first asks
for them (`track_priorities`): drawing a minibatch and rewriting its priorities each cost
O(batch · log N) instead of the O(N) of a multinomial over the whole store (measured on one CPU
thread with 2M rows: ~0.3 ms for a draw of 256 and their update together, against ~12 ms for one
`torch.multinomial` draw).
"""

from __future__ import annotations

import copy

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

SAMPLING_RULES = ("offline", "union", "ratio", "online", "prioritized", "balanced")
PRIORITIZED_RULES = ("prioritized", "balanced")
"""The rules that draw rows ∝ the store's per-row priorities."""


@dataclass(frozen=True)
class Sampling:
    """Where a minibatch's rows come from: a rule; for ``ratio``, the dataset fraction; for
    ``online``, optionally a window of the newest online rows."""

    rule: str = "union"
    offline_fraction: float = 0.5
    online_window: int | None = None
    """Under ``online``: draw from the newest this-many online rows only (None: all of them)."""
    generated_fraction: float = 0.0
    """Share of the minibatch drawn from the generated rows; the rest follows `rule`."""

    def __post_init__(self) -> None:
        if self.rule not in SAMPLING_RULES:
            raise ValueError(f"sampling rule {self.rule!r} is not one of {SAMPLING_RULES}")
        if not 0.0 <= self.generated_fraction <= 1.0:
            raise ValueError(f"generated_fraction must lie in [0, 1], got {self.generated_fraction}")
        if self.generated_fraction > 0 and self.rule in PRIORITIZED_RULES:
            raise ValueError(
                f"generated_fraction cannot be drawn beside the {self.rule!r} rule: generated rows carry no priorities"
            )
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction must lie in [0, 1], got {self.offline_fraction}")
        if self.online_window is not None and self.online_window < 1:
            raise ValueError(f"online_window must be >= 1 or None, got {self.online_window}")


class PrioritySource(Protocol):
    """What sets the store's per-row priorities under a prioritized rule: the priorities of new
    online rows, and any refresh after an update on drawn rows."""

    def priorities_for(self, rows: Mapping[str, np.ndarray]) -> torch.Tensor:
        """Priorities (one per row, > 0) of new online rows as the store will hold them."""
        ...

    def update(self, replay: ReplayStore, indices: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """After one learner update on rows `indices`: refresh what depends on it; its metrics."""
        ...


def transition_columns(obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
    """The packed layout: column name → per-row shape (() for a scalar), RLlib's column names."""
    return {"obs": (obs_dim,), "actions": (act_dim,), "rewards": (), "new_obs": (obs_dim,), "terminateds": ()}


class SumTree:
    """Non-negative priorities of `size` rows in a sum tree of fan-out `FANOUT` (float64, on one
    device), for drawing rows ∝ priority.

    Level 0 holds the priorities (padded with zeros to a multiple of the fan-out); each entry of
    level j + 1 is the sum of a block of `FANOUT` entries of level j; the top level has exactly
    `FANOUT` entries. A wide tree keeps the depth at 4 for millions of rows, so a draw or an
    update is a few dozen vectorized tensor ops with no host round trip; a binary tree needs
    over a hundred each (kernel launches on a GPU, interpreter overhead on a CPU; measured 2×
    slower for a draw and its update on one CPU thread).
    """

    FANOUT = 64

    def __init__(self, size: int, device: torch.device) -> None:
        k = self.FANOUT
        length = -(-max(size, 1) // k) * k
        self.levels = [torch.zeros(length, dtype=torch.float64, device=device)]
        while length > k:
            length = -(-(length // k) // k) * k
            self.levels.append(torch.zeros(length, dtype=torch.float64, device=device))

    @property
    def total(self) -> torch.Tensor:
        """Σ priorities (0-d tensor)."""
        return self.levels[-1].sum()

    def values(self, start: int, stop: int) -> torch.Tensor:
        """The priorities of rows [start, stop)."""
        return self.levels[0][start:stop]

    def fill(self, start: int, values: torch.Tensor) -> None:
        """Set a contiguous run of priorities and rebuild every upper level (O(size))."""
        self.levels[0][start : start + len(values)] = values
        for lower, upper in zip(self.levels[:-1], self.levels[1:]):
            upper[: len(lower) // self.FANOUT] = lower.view(-1, self.FANOUT).sum(1)

    def set(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Set the priorities of `rows` and recompute their ancestors' block sums. A row given
        twice must carry the same value twice (a minibatch drawn with replacement does)."""
        node = rows.to(torch.long)
        self.levels[0][node] = values.to(torch.float64)
        for lower, upper in zip(self.levels[:-1], self.levels[1:]):
            node = node // self.FANOUT
            upper[node] = lower.view(-1, self.FANOUT)[node].sum(1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` rows drawn with probability ∝ priority, stratified: the i-th draw is uniform in the
        i-th of n equal slices of the total mass (as the prioritized buffer of Off2OnRL does).
        From the top level down, each draw picks the child block whose cumulative mass first
        exceeds its remaining value u, and subtracts the mass of the blocks before it."""
        device = self.levels[0].device
        u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
        u = (torch.arange(n, dtype=torch.float64, device=device) + u) * (self.total / n)
        node = torch.zeros(n, dtype=torch.long, device=device)
        for level in reversed(self.levels):
            children = level.view(-1, self.FANOUT)[node]
            through = children.cumsum(1)
            choice = torch.searchsorted(through, u.unsqueeze(1), right=True).clamp_(max=self.FANOUT - 1)
            u = u - (through.gather(1, choice) - children.gather(1, choice)).squeeze(1)
            node = node * self.FANOUT + choice.squeeze(1)
        return node


class ReplayStore:
    """Offline rows [0, n_offline), an online ring [n_offline, n_offline + capacity) and
    `generated_capacity` generated rows after it.

    A trial of K seeds holds the dataset once: its store is built with `lanes=K` and each
    seed's rows are a `lane(i)`, a store over the same table with a ring of its own (lane i's at
    [n_offline + i·capacity, n_offline + (i + 1)·capacity)), a sampler of its own and, under a
    prioritized rule, priorities of its own over the dataset's rows and its ring."""

    def __init__(
        self,
        columns: Mapping[str, tuple[int, ...]],
        offline: Mapping[str, np.ndarray] | None,
        online_capacity: int,
        device: torch.device,
        seed: int,
        generated_capacity: int = 0,
        lanes: int = 1,
    ) -> None:
        if lanes > 1 and generated_capacity:
            raise ValueError("a store of several lanes holds no generated rows")
        self.columns = dict(columns)
        widths = [int(np.prod(shape)) for shape in self.columns.values()]
        self.width = sum(widths)
        self.n_offline = 0 if offline is None else len(next(iter(offline.values())))
        self.capacity = online_capacity
        self.device = device
        self.generated_capacity = generated_capacity
        self.table = torch.empty(self.n_offline + lanes * online_capacity + generated_capacity, self.width, device=device)
        self.lanes = lanes
        self.lane_shift = 0
        """Where this store's ring starts past the first lane's: row numbers of the online rows
        (as the sampler computes them) plus this are rows of the table."""
        if offline is not None:
            self.table[: self.n_offline] = torch.from_numpy(self._pack(offline)).to(device)
        self.n_online = 0
        self.total_added = 0  # online transitions ever added, ring wrap included
        self.n_generated = 0
        self.generated_weights: torch.Tensor | None = None
        """The generated rows' weights when they are drawn ∝ weight (None: uniformly)."""
        self._generated_cdf: torch.Tensor | None = None
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.priorities: SumTree | None = None
        """Per-row priorities of the prioritized rules; None until `track_priorities()`."""
        offsets = np.cumsum([0, *widths])
        self._slices = {k: slice(int(a), int(b)) for k, a, b in zip(self.columns, offsets[:-1], offsets[1:])}

    def lane(self, index: int, seed: int) -> ReplayStore:
        """Lane `index`'s store: the same table and dataset rows, its own empty ring and its
        own sampler seeded with `seed` (lane 0 is this store)."""
        if not 0 < index < self.lanes:
            raise ValueError(f"lane {index} is not one of this store's lanes 1..{self.lanes - 1}")
        other = copy.copy(self)
        other.lane_shift = index * self.capacity
        other.n_online = other.total_added = 0
        other.generator = torch.Generator(device=self.device)
        other.generator.manual_seed(seed)
        other.priorities = None
        return other

    def _pack(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [k for k in self.columns if k not in data]
        if missing:
            raise KeyError(f"replay rows lack columns {missing}")
        parts = [np.asarray(data[k], dtype=np.float32).reshape(len(data[k]), -1) for k in self.columns]
        return np.concatenate(parts, axis=1)

    def track_priorities(self) -> None:
        """Keep a priority per row from now on (the prioritized rules need them): every row held
        so far starts at 1, as the dataset's rows do in Off2OnRL's prioritized buffer. A no-op
        when priorities are already kept (e.g. restored from a checkpoint)."""
        if self.priorities is not None:
            return
        self.priorities = SumTree(self.n_offline + self.capacity, self.device)
        held = self.n_offline + self.n_online
        self.priorities.fill(0, torch.ones(held, dtype=torch.float64, device=self.device))

    def add_online(self, data: Mapping[str, np.ndarray], priorities: torch.Tensor | None = None) -> None:
        """Append online transitions, overwriting the oldest online rows once the ring is full.
        Where priorities are kept, the new rows take `priorities` (one per row; default 1)."""
        rows = torch.from_numpy(self._pack(data)).to(self.device, self.table.dtype)
        if len(rows) > self.capacity:  # only the newest `capacity` rows survive the write
            self.total_added += len(rows) - self.capacity
            rows = rows[-self.capacity :]
            priorities = None if priorities is None else priorities[-self.capacity :]
        slots = (self.total_added + torch.arange(len(rows), device=self.device)) % self.capacity + self.n_offline
        self.table[slots + self.lane_shift] = rows
        if self.priorities is not None:
            self.priorities.set(slots, torch.ones(len(rows), device=self.device) if priorities is None else priorities)
        self.total_added += len(rows)
        self.n_online = min(self.n_online + len(rows), self.capacity)

    @property
    def generated_start(self) -> int:
        """The first generated row's index."""
        return self.n_offline + self.capacity

    def set_generated(self, rows: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None) -> None:
        """Replace the generated rows with `rows` (a tensor per column, in the store's space);
        with `weights` (one per row, > 0) later draws take each row ∝ its weight."""
        missing = [k for k in self.columns if k not in rows]
        if missing:
            raise KeyError(f"generated rows lack columns {missing}")
        packed = torch.cat([rows[k].reshape(len(rows[k]), -1).to(self.device, torch.float32) for k in self.columns], dim=1)
        if len(packed) > self.generated_capacity:
            raise ValueError(f"{len(packed)} generated rows do not fit the store's {self.generated_capacity}")
        if weights is not None and (weights.shape != (len(packed),) or not bool((weights > 0).all())):
            raise ValueError(f"generated rows' weights must be {len(packed)} positive values")
        self.table[self.generated_start : self.generated_start + len(packed)] = packed
        self.n_generated = len(packed)
        self._set_generated_weights(weights)

    def _set_generated_weights(self, weights: torch.Tensor | None) -> None:
        self.generated_weights = None if weights is None else weights.to(self.device, torch.float64)
        self._generated_cdf = None if weights is None else self.generated_weights.cumsum(0)

    def generated_rows(self) -> torch.Tensor:
        """The generated rows held now, packed (n_generated, width)."""
        return self.table[self.generated_start : self.generated_start + self.n_generated]

    def set_priorities(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        """New positive priorities for rows `indices` (row numbers as `sample_indices` returns)."""
        if self.priorities is None:
            raise RuntimeError("this store keeps no priorities; call track_priorities() first")
        if self.lane_shift:  # the tree numbers a lane's rows as `_by_rule` draws them
            indices = torch.where(indices >= self.n_offline, indices - self.lane_shift, indices)
        self.priorities.set(indices, values)

    def sample_indices(self, batch_size: int, sampling: Sampling) -> torch.Tensor:
        """Row indices of one minibatch under a sampling rule: its `generated_fraction` from the
        generated rows first, the rest by the rule."""
        if self.lane_shift:
            rows = self._by_rule(batch_size, sampling)
            return torch.where(rows >= self.n_offline, rows + self.lane_shift, rows)
        if sampling.generated_fraction > 0:
            if self.n_generated == 0:
                raise RuntimeError("generated_fraction needs generated rows; the generator has produced none yet")
            n_gen = int(round(batch_size * sampling.generated_fraction))
            if n_gen == batch_size:
                return self._generated(n_gen)
            return torch.cat([self._generated(n_gen), self._by_rule(batch_size - n_gen, sampling)])
        return self._by_rule(batch_size, sampling)

    def _generated(self, n: int) -> torch.Tensor:
        if self._generated_cdf is None:
            return self._randint(self.generated_start, self.generated_start + self.n_generated, n)
        u = torch.rand(n, dtype=torch.float64, device=self.device, generator=self.generator) * self._generated_cdf[-1]
        rows = torch.searchsorted(self._generated_cdf, u, right=True).clamp_(max=self.n_generated - 1)
        return rows + self.generated_start

    def _by_rule(self, batch_size: int, sampling: Sampling) -> torch.Tensor:
        rule = sampling.rule
        if rule in PRIORITIZED_RULES:
            return self._prioritized(batch_size, rule)
        if rule == "union" and self.n_online == 0 or rule == "offline":
            return self._randint(0, self.n_offline, batch_size)
        if self.n_online == 0:
            raise RuntimeError(f"sampling rule {rule!r} needs online transitions; none collected yet")
        if rule == "union":
            return self._randint(0, self.n_offline + self.n_online, batch_size)
        if rule == "online" or self.n_offline == 0:
            return self._newest_online(batch_size, sampling.online_window or self.n_online)
        n_off = int(round(batch_size * sampling.offline_fraction))
        return torch.cat(
            [
                self._randint(0, self.n_offline, n_off),
                self._randint(self.n_offline, self.n_offline + self.n_online, batch_size - n_off),
            ]
        )

    def _randint(self, low: int, high: int, n: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), device=self.device, generator=self.generator)

    def _newest_online(self, n: int, window: int) -> torch.Tensor:
        """Uniform over the newest `window` online rows: the k-th newest sits k − 1 slots before
        the ring's write position."""
        window = min(window, self.n_online)
        if window == self.n_online:
            return self._randint(self.n_offline, self.n_offline + self.n_online, n)
        age = self._randint(1, window + 1, n)
        return (self.total_added - age) % self.capacity + self.n_offline

    def _prioritized(self, n: int, rule: str) -> torch.Tensor:
        if self.priorities is None:
            raise RuntimeError(f"sampling rule {rule!r} needs priorities; call track_priorities() first")
        rows = self.priorities.sample(n, self.generator)
        # Float rounding can carry a draw at the very top of the mass into the empty slots past
        # the last held row; such a draw takes that last row.
        return rows.clamp_(max=self.n_offline + self.n_online - 1)

    def gather(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Column views of the selected rows, each shaped (*indices.shape, *its shape): (B,) rows
        of one minibatch, or (K, B) of one minibatch per lane, scalars as (B,) or (K, B)."""
        rows = self.table.index_select(0, indices.reshape(-1))
        return {k: rows[:, s].reshape(*indices.shape, *self.columns[k]) for k, s in self._slices.items()}

    def sample(self, batch_size: int, sampling: Sampling) -> dict[str, torch.Tensor]:
        return self.gather(self.sample_indices(batch_size, sampling))

    def get_state(self) -> dict:
        """The online rows and ring position, the generated rows and their weights, the sampler's
        RNG and, where kept, the priorities of every held row (the dataset itself is re-read from
        its content hash)."""
        held = self.n_offline + self.n_online
        start = self.n_offline + self.lane_shift
        online = self.table[start : start + self.n_online].cpu().numpy().copy()
        weights = self.generated_weights
        return {
            "online_rows": online,
            "generated_rows": self.generated_rows().cpu().numpy().copy(),
            "generated_weights": None if weights is None else weights.cpu().numpy().copy(),
            "total_added": self.total_added,
            "generator": self.generator.get_state().cpu().numpy(),
            "priorities": None if self.priorities is None else self.priorities.values(0, held).cpu().numpy().copy(),
        }

    def set_state(self, state: Mapping) -> None:
        rows = torch.from_numpy(np.asarray(state["online_rows"], dtype=np.float32))
        if rows.shape[1:] != (self.width,) or len(rows) > self.capacity:
            raise ValueError(
                f"checkpointed online buffer has shape {tuple(rows.shape)}; this store holds "
                f"{self.capacity} rows of width {self.width}"
            )
        start = self.n_offline + self.lane_shift
        self.table[start : start + len(rows)] = rows.to(self.device)
        self.n_online = len(rows)
        self.total_added = int(state["total_added"])
        self.generator.set_state(torch.from_numpy(np.asarray(state["generator"], dtype=np.uint8)))
        generated = np.asarray(state.get("generated_rows", np.zeros((0, self.width))), dtype=np.float32)
        if len(generated) > self.generated_capacity:
            raise ValueError(
                f"checkpointed generated region has {len(generated)} rows; this store holds {self.generated_capacity}"
            )
        self.table[self.generated_start : self.generated_start + len(generated)] = torch.from_numpy(generated).to(self.device)
        self.n_generated = len(generated)
        weights = state.get("generated_weights")
        self._set_generated_weights(None if weights is None else torch.from_numpy(np.asarray(weights, np.float64)))
        if state.get("priorities") is not None:
            self.priorities = SumTree(self.n_offline + self.capacity, self.device)
            self.priorities.fill(0, torch.from_numpy(np.asarray(state["priorities"], dtype=np.float64)).to(self.device))
