"""APL (Zheng et al., AAAI 2023): the per-update buffer choice (the online buffer with
probability p, only once it holds more than `min_online_rows` transitions), the online buffer
as the newest rows of the store, the actor loss — TD3's on online-buffer batches, TD3+BC's on
offline-buffer batches — on a hand-computed case, and a real online run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from o2o.algorithms.apl import APLConfig
from o2o.algorithms.apl.learner import APLLearner, actor_bc_weight, draws_online_buffer
from o2o.platform.replay import ReplayStore, Sampling, transition_columns

from helpers import on_dataset

PHASE_RULE = Sampling("union")
"""The rule the algorithm passes for an online learner call: APL's offline buffer."""


def test_draws_online_buffer_only_past_the_threshold_and_below_p() -> None:
    assert not draws_online_buffer(0.1, 0.5, online_rows=10_000, min_online_rows=10_000), "needs more than 10k rows"
    assert draws_online_buffer(0.1, 0.5, online_rows=10_001, min_online_rows=10_000)
    assert not draws_online_buffer(0.5, 0.5, online_rows=10_001, min_online_rows=10_000), "u < p, as p_t < p_online"


def stub_learner(n_online: int, num_updates: int, seed: int = 0, seeds: int = 1) -> SimpleNamespace:
    """What `update_sampling` reads of a learner: settings, seed, each seed's store, the clock."""
    lanes = [SimpleNamespace(n_online=n_online) for _ in range(seeds)]
    return SimpleNamespace(hp=APLConfig(), config=SimpleNamespace(seed=seed), lanes=lanes, num_updates=num_updates)


def choices(n_online: int, updates: range, seed: int = 0, lane: int = 0, seeds: int = 1) -> list[Sampling]:
    return [APLLearner.update_sampling(stub_learner(n_online, n, seed, seeds), PHASE_RULE, lane) for n in updates]


def test_update_sampling_takes_the_online_buffer_half_the_time_once_it_holds_enough() -> None:
    config = APLConfig()
    assert (config.online_update_probability, config.min_online_rows, config.near_on_policy_size) == (0.5, 10_000, 20_000)
    below = choices(10_000, range(2000))
    assert all(s == PHASE_RULE for s in below), "at 10k online rows every update draws the offline buffer"

    above = choices(10_001, range(4000))
    online = [s for s in above if s != PHASE_RULE]
    assert all(s == Sampling("online", online_window=20_000) for s in online), "the newest 20k rows, nothing else"
    assert len(online) / len(above) == pytest.approx(0.5, abs=0.03)
    # the coin of update n depends only on (seed, n): a restored trial flips the same coins
    assert choices(10_001, range(1000, 1100)) == above[1000:1100]
    # a ring holding more than the online buffer's capacity still counts as a full online buffer
    assert choices(50_000, range(4000)) == above


def test_each_seed_of_a_trial_flips_the_coins_of_its_own_one_seed_trial() -> None:
    second = choices(10_001, range(2000), seed=0, lane=1, seeds=2)
    assert second == choices(10_001, range(2000), seed=1), "seed 0 + lane 1 picks as a one-seed trial of seed 1"
    assert second != choices(10_001, range(2000), seed=0, lane=0, seeds=2), "the two seeds pick apart"


def test_online_window_draws_only_the_newest_online_rows() -> None:
    columns = transition_columns(1, 1)
    store = ReplayStore(columns, {k: np.zeros((5, *s), np.float32) for k, s in columns.items()}, 8, torch.device("cpu"), 0)
    for start in range(0, 13, 4):  # 13 rows through a ring of 8: rows 5..12 are held, 9..12 newest
        values = np.arange(start, min(start + 4, 13), dtype=np.float32)
        rows = {k: np.zeros((len(values), *s), np.float32) for k, s in columns.items()}
        store.add_online({**rows, "rewards": values})
    drawn = store.sample(4000, Sampling("online", online_window=4))["rewards"]
    assert set(drawn.tolist()) == {9.0, 10.0, 11.0, 12.0}
    assert set(store.sample(4000, Sampling("online"))["rewards"].tolist()) == set(range(5, 13))


def stub_actor_learner(optimistic: float) -> SimpleNamespace:
    """π(s) and Q(s, π(s)) fixed: π = [[0.5, 0], [0, −1]], Q_1 = Q_2 = [1, −3]; dataset actions 0;
    the update's buffer choice `optimistic` (1: the online buffer)."""
    pi = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    q_pi = torch.tensor([1.0, -3.0])
    net = SimpleNamespace(actor=lambda obs: pi, critic=lambda obs, actions, detach_params: torch.stack([q_pi, q_pi]))
    return SimpleNamespace(net=net, hp=APLConfig(), optimistic=torch.tensor(optimistic))


def test_actor_loss_is_td3s_on_online_batches_and_td3_bcs_on_dataset_batches() -> None:
    obs, actions = torch.zeros(2, 3), torch.zeros(2, 2)
    # λ = 2.5 / mean|Q| = 1.25; BC = (0.25 + 0 + 0 + 1) / 4 = 0.3125.
    pessimistic = APLLearner.actor_losses(stub_actor_learner(0.0), obs, actions)
    assert pessimistic["actor_loss"].item() == pytest.approx(-1.25 * (-1.0) + 0.3125), "TD3+BC: −λQ + BC"
    optimistic = APLLearner.actor_losses(stub_actor_learner(1.0), obs, actions)
    assert optimistic["actor_loss"].item() == pytest.approx(1.25), "TD3: −λQ, no BC term"
    assert optimistic["bc_loss"].item() == pytest.approx(0.3125), "the BC term is still reported"
    assert float(actor_bc_weight(torch.tensor(0.0), 1.0)) == 1.0, "an offline-buffer batch is TD3+BC's"


@pytest.mark.usefixtures("ray_session")
def test_apl_online_updates_turn_optimistic_half_the_time_once_the_online_buffer_fills(hopper_random) -> None:
    """A trial of two seeds: each seed's updates turn optimistic by its own coins on its own
    online buffer."""
    config = (
        on_dataset(
            APLConfig(),
            hopper_random,
            offline_updates=100,
            online_env_steps=300,
            updates_per_iteration=100,
            env_steps_per_iteration=100,
            weight_sync_interval=100,
            utd_ratio=1.0,
            seeds_per_trial=2,
        )
        .training(train_batch_size_per_learner=64, min_online_rows=100, near_on_policy_size=150)
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        assert [r["offline/optimistic"] for r in algo.train()["o2o_seeds"]] == [0.0, 0.0], "offline: TD3+BC on the dataset"
        shares = [[r["online/optimistic"] for r in algo.train()["o2o_seeds"]] for _ in range(3)]
        # 100 online rows after the first collection: not more than 100, so no optimistic update;
        # then 150 (the online buffer's capacity) > 100: about half of the 100 updates per call.
        assert shares[0] == [0.0, 0.0]
        assert all(0.35 < s < 0.65 for seed_shares in shares[1:] for s in seed_shares), shares
        assert any(first != second for first, second in shares[1:]), f"each seed flips its own coins: {shares}"
        lanes = algo.learner_group._learner.lanes
        assert [lane.n_online for lane in lanes] == [300, 300], "each offline buffer keeps its seed's online rows"
    finally:
        algo.stop()
