"""Builders the tests share: a config pointed at a factory dataset, random Hopper-shaped
transitions for learners built without Ray, and whether a network's parameters moved."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from o2o.platform.data import ResolvedDataset, Transitions
from o2o.platform.engine import O2OConfig, O2OLearner


def on_dataset(config: O2OConfig, dataset: ResolvedDataset, **o2o: Any) -> O2OConfig:
    """`config` on Hopper-v5 reading `dataset` through RLlib's offline reader, with its id and
    content hash set as a sweep sets them; `o2o` sets the engine's other fields."""
    return (
        config.environment("Hopper-v5")
        .offline_data(input_=[str(dataset.parquet_path)])
        .o2o(dataset_id=dataset.dataset_id, dataset_hash=dataset.content_hash, **o2o)
    )


def random_transitions(n: int = 400) -> Transitions:
    """Hopper-shaped random transitions in episodes of 100 steps."""
    rng = np.random.default_rng(0)
    return Transitions(
        obs=rng.standard_normal((n, 11), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        new_obs=rng.standard_normal((n, 11), dtype=np.float32),
        terminateds=np.zeros(n, bool),
        truncateds=np.arange(n) % 100 == 99,
        eps_id=np.arange(n) // 100,
        t=np.arange(n) % 100,
    )


def learner_on_random_transitions(config: O2OConfig, n: int = 400) -> O2OLearner:
    """The learner of `config` (on Hopper-v5, seed 0, minibatches of 32) built outside Ray, its
    replay holding `random_transitions(n)`."""
    config = config.environment("Hopper-v5").training(train_batch_size_per_learner=32).debugging(seed=0)
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    learner.build_replay(random_transitions(n), 11, 3)
    return learner


def parameters_of(module: torch.nn.Module) -> list[torch.Tensor]:
    """A copy of `module`'s parameters now, for `moved` to compare against."""
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    """Whether any of `module`'s parameters differs from `before` (`parameters_of` it earlier)."""
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
