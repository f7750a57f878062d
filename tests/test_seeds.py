"""K seeds in one trial (`seeds_per_trial`), without Ray: seed i of a K-seed learner is a one-seed
learner of seed i, the store holds the dataset once with a ring and a sampler per seed, and a
setting a K-seed trial cannot run per seed is refused with its reason.

The conformance suite (`test_conformance.py`) runs a two-seed trial of every algorithm on real
Ray, with its checkpoint; `test_tracking.py` checks each seed's MLflow run.
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch

from o2o.algorithms import config_class
from o2o.algorithms.iql.config import IQLConfig
from o2o.algorithms.iql.learner import IQLLearner
from o2o.algorithms.td3bc.config import TD3BCConfig
from o2o.platform.engine import O2OConfig, O2OLearner, Phase
from o2o.platform.replay import ReplayStore, Sampling, transition_columns

from helpers import random_transitions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def float64() -> Iterator[None]:
    """Networks and the store in float64 while the test runs."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def learner(config: O2OConfig, seed: int, seeds_per_trial: int = 1) -> O2OLearner:
    """`config`'s learner on Hopper-v5 built outside Ray, seed `seed`, minibatches of 32, its
    store holding the same 400 random transitions whatever the seed."""
    config = (
        config.environment("Hopper-v5")
        .training(train_batch_size_per_learner=32)
        .debugging(seed=seed)
        .o2o(seeds_per_trial=seeds_per_trial)
    )
    built = config.build_learner(env=gym.make("Hopper-v5"))
    built.build_replay(random_transitions(), 11, 3)
    return built


def online_rows(n: int) -> dict[str, np.ndarray]:
    rows = random_transitions(n)
    return {"obs": rows.obs, "actions": rows.actions, "rewards": rows.rewards, "new_obs": rows.new_obs,
            "terminateds": rows.terminateds.astype(np.float32)}


@pytest.mark.parametrize(
    ("config", "phase"),
    [
        (IQLConfig, "offline"),
        (lambda: TD3BCConfig().training(target_noise=0.0), "offline"),
        (lambda: config_class("opt_td3bc")().training(target_noise=0.0), "online_pretraining"),
    ],
    ids=["iql", "td3bc-without-target-noise", "opt-meta-gradient-without-target-noise"],
)
def test_seed_i_of_a_k_seed_learner_is_the_one_seed_learner_of_seed_i(config, phase: str, float64) -> None:
    """Given seed i's initial weights, the K-seed learner's seed i draws the minibatches of a
    one-seed learner of seed 3 + i and ends 300 updates at its weights and losses. In float64:
    in float32 a batched matmul rounds differently from a single one (~1e-7), and Adam's
    normalised steps carry that on to ~1e-4 over 300 updates (benchmarks/README.md, seeds.py).
    Target smoothing draws noise per seed in either learner, so TD3's kin run without it. OPT's
    online pre-training (each seed's inner gradient step, differentiated through, on its own
    online minibatch) runs on 50 online rows that each seed holds."""
    singles = [learner(config(), seed) for seed in (3, 4)]
    stacked = learner(config(), 3, seeds_per_trial=2)
    with torch.no_grad():
        for name, value in stacked.net.state_dict(keep_vars=True).items():
            assert value.shape[0] == 2, f"{name} has a leading seed dimension"
            for i, single in enumerate(singles):
                value[i].copy_(single.net.state_dict()[name])
    # The one-seed learners' stores and the K-seed learner's lanes draw the same indices.
    for lane, single in zip(stacked.lanes, singles, strict=True):
        assert torch.equal(lane.generator.get_state(), single.replay.generator.get_state())
    rows = online_rows(50)
    for built, seeds in ((stacked, 2), *((single, 1) for single in singles)):
        built.on_phase_start(Phase(phase, 300, "updates"))
        if phase != "offline":
            built.add_online({k: np.stack([v] * seeds) for k, v in rows.items()} if seeds > 1 else rows)

    together = stacked.run_updates(300, Sampling("offline"))
    apart = [single.run_updates(300, Sampling("offline")) for single in singles]

    for key, values in together.items():
        np.testing.assert_allclose(values, [m[key] for m in apart], rtol=1e-9, atol=1e-9, err_msg=key)
    for name, value in stacked.net.state_dict().items():
        for i, single in enumerate(singles):
            torch.testing.assert_close(value[i], single.net.state_dict()[name], rtol=1e-9, atol=1e-9, msg=name)
    # The seeds learned apart: their weights differ as their one-seed learners' do.
    assert not torch.equal(stacked.net.actor.net[0].weight[0], stacked.net.actor.net[0].weight[1])


def test_each_seed_starts_from_its_own_weights_and_seed_0_from_the_one_seed_trials() -> None:
    single = learner(IQLConfig(), 5)
    stacked = learner(IQLConfig(), 5, seeds_per_trial=3)
    for name, value in stacked.net.state_dict().items():
        torch.testing.assert_close(value[0], single.net.state_dict()[name], rtol=0, atol=0, msg=name)
    weights = stacked.net.value[0].weight
    assert not torch.equal(weights[1], weights[2]) and not torch.equal(weights[0], weights[1])
    # The frozen targets start as their seed's critics.
    for target, critic in zip(stacked.net.critic_target.parameters(), stacked.net.critic.parameters()):
        assert torch.equal(target, critic) and not target.requires_grad


def tiny_dataset(n: int) -> tuple[dict[str, tuple[int, ...]], dict[str, np.ndarray]]:
    """A store layout of 2-d states and 1-d actions, and `n` dataset rows in it: states 0, 1, …,
    everything else 0."""
    return transition_columns(2, 1), {
        "obs": np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.zeros(n, np.float32),
        "new_obs": np.zeros((n, 2), np.float32),
        "terminateds": np.zeros(n, np.float32),
    }


def test_lanes_share_the_dataset_and_keep_their_own_rings_samplers_and_checkpoints() -> None:
    n = 10
    columns, offline = tiny_dataset(n)
    first = ReplayStore(columns, offline, 4, torch.device("cpu"), seed=7, lanes=2)
    second = first.lane(1, seed=8)
    assert second.table is first.table and first.table.shape[0] == n + 2 * 4, "one dataset, two rings"

    def rows(value: float, count: int) -> dict[str, np.ndarray]:
        return {**{k: v[:count] for k, v in offline.items()}, "rewards": np.full(count, value, np.float32)}

    first.add_online(rows(1.0, 3))
    second.add_online(rows(2.0, 5))  # one more than its ring holds: the oldest is overwritten
    assert (first.n_online, second.n_online) == (3, 4)
    online = Sampling("online")
    assert set(first.gather(first.sample_indices(64, online))["rewards"].tolist()) == {1.0}
    assert set(second.gather(second.sample_indices(64, online))["rewards"].tolist()) == {2.0}
    # A lane draws as a one-lane store of its seed does: the same rows, here shifted past lane 0's ring.
    alone = ReplayStore(columns, offline, 4, torch.device("cpu"), seed=8)
    alone.add_online(rows(2.0, 5))
    alone.sample_indices(64, online)  # as the lane has drawn once
    union = Sampling("union")
    np.testing.assert_array_equal(
        second.gather(second.sample_indices(64, union))["obs"], alone.gather(alone.sample_indices(64, union))["obs"]
    )
    # Minibatches of both lanes in one gather: (K, B).
    both = first.gather(torch.stack([first.sample_indices(8, online), second.sample_indices(8, online)]))
    assert both["obs"].shape == (2, 8, 2) and both["rewards"][0].eq(1.0).all() and both["rewards"][1].eq(2.0).all()

    restored = ReplayStore(columns, offline, 4, torch.device("cpu"), seed=0, lanes=2)
    restored_second = restored.lane(1, seed=0)
    restored.set_state(first.get_state())
    restored_second.set_state(second.get_state())
    np.testing.assert_array_equal(restored_second.get_state()["online_rows"], second.get_state()["online_rows"])
    np.testing.assert_array_equal(restored.get_state()["online_rows"], first.get_state()["online_rows"])
    assert torch.equal(restored_second.sample_indices(16, union), second.sample_indices(16, union))


def test_each_lane_keeps_its_own_priorities_over_the_dataset_and_its_ring() -> None:
    """Balanced replay in a K-seed trial: a lane's sum tree covers the dataset and its own ring,
    its draws land in its own ring, and the priorities it sets reach its tree only."""
    n = 10
    columns, offline = tiny_dataset(n)
    first = ReplayStore(columns, offline, 4, torch.device("cpu"), seed=7, lanes=2)
    second = first.lane(1, seed=8)
    first.track_priorities()
    second.track_priorities()
    assert second.priorities is not first.priorities
    rows = {k: v[:3] for k, v in offline.items()}
    first.add_online({**rows, "rewards": np.full(3, 1.0, np.float32)})
    second.add_online({**rows, "rewards": np.full(3, 2.0, np.float32)}, priorities=torch.full((3,), 1e6))
    prioritized = Sampling("prioritized")
    drawn = second.sample_indices(512, prioritized)
    assert set(second.gather(drawn)["rewards"].tolist()) == {2.0}, "lane 1's mass is on its own new rows"
    assert bool(((drawn >= n + 4) & (drawn < n + 7)).all()), "rows of lane 1's ring in the shared table"
    assert 0.0 in set(first.gather(first.sample_indices(512, prioritized))["rewards"].tolist()), "lane 0's are 1 each"

    second.set_priorities(torch.tensor([2, n + 4 + 1]), torch.tensor([5.0, 7.0]))  # a dataset row, its 2nd online row
    np.testing.assert_array_equal(second.priorities.values(0, n + 3).numpy(), [1, 1, 5, *[1] * 7, 1e6, 7.0, 1e6])
    np.testing.assert_array_equal(first.priorities.values(0, n + 3).numpy(), np.ones(n + 3))
    restored = ReplayStore(columns, offline, 4, torch.device("cpu"), seed=7, lanes=2).lane(1, seed=8)
    restored.set_state(second.get_state())
    np.testing.assert_array_equal(restored.priorities.values(0, n + 3).numpy(), second.priorities.values(0, n + 3).numpy())


class _OneSeedIQLLearner(IQLLearner):
    """A learner that has not said it runs per seed: `seeds_batched` is read from the class itself."""


class _OneSeedIQLConfig(IQLConfig):
    def get_default_learner_class(self) -> type:
        return _OneSeedIQLLearner


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            lambda: config_class("apl")().o2o(sampling_rule="balanced"),
            "seeds_per_trial 2 with sampling_rule balanced: each seed picks its buffer apart",
        ),
        (lambda: _OneSeedIQLConfig(), r"trains one seed per trial: its update does not run per seed yet \(_OneSeedIQLLearner\)"),
        (lambda: IQLConfig().o2o(num_critics=4, target_critic_subset=2), "seeds_per_trial 2 with target_critic_subset"),
        (lambda: IQLConfig().o2o(generator="edis", online_env_steps=20_000), "seeds_per_trial 2 with generator"),
    ],
    ids=["apl-on-balanced-replay", "unbatched-method", "critic-subset", "generator"],
)
def test_what_cannot_run_per_seed_is_refused_with_its_reason(config, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config().environment("Hopper-v5").offline_data(input_=["x.parquet"]).o2o(seeds_per_trial=2).validate()


def test_a_seed_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="seeds_per_trial must be an integer >= 1, got 0"):
        IQLConfig().environment("Hopper-v5").o2o(seeds_per_trial=0).validate()
