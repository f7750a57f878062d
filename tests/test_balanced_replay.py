"""Balanced replay (Lee et al., CoRL 2021): the density-ratio loss and the priority rule on
hand-computed cases, proportional sampling from the store's sum tree, priorities through a
store state round trip, and a real online run of TD3+BC under `sampling_rule: balanced`
(the density-ratio loss falls, online rows are replayed more than uniformly, and a checkpoint
restores the priorities and the density-ratio network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from o2o.algorithms.td3bc import TD3BCConfig
from o2o.platform.balanced import PRIORITY_MAX, PRIORITY_MIN, balanced_priority, density_ratio_loss
from o2o.platform.replay import ReplayStore, Sampling, transition_columns

from helpers import on_dataset


def test_density_ratio_loss_hand_computed() -> None:
    w_offline = torch.tensor([1.0, 3.0])
    w_online = torch.tensor([1.0, 3.0])
    # offline: −log(2/2) = 0, −log(2/4) = log 2; online: log(2/2) = 0, log(6/4) = log 1.5.
    expected = (math.log(2.0) - math.log(1.5)) / 2
    assert density_ratio_loss(w_offline, w_online).item() == pytest.approx(expected)
    assert density_ratio_loss(torch.ones(3), torch.ones(5)).item() == pytest.approx(0.0, abs=1e-6)


def test_density_ratio_loss_is_minimized_by_the_density_ratio() -> None:
    # Two atoms: online data put 0.8 / 0.2 on them, offline data 0.2 / 0.8, so d_on/d_off = 4, 1/4.
    log_w = torch.zeros(2, requires_grad=True)
    offline_atoms = torch.tensor([0] * 2 + [1] * 8)
    online_atoms = torch.tensor([0] * 8 + [1] * 2)
    optimizer = torch.optim.Adam([log_w], lr=0.05)
    for _ in range(2000):
        w = log_w.exp()
        loss = density_ratio_loss(w[offline_atoms], w[online_atoms])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(log_w.exp().detach(), torch.tensor([4.0, 0.25]), rtol=1e-3, atol=1e-3)
    # at the optimum the loss is −2·JS(on ‖ off), JS with the 1/2 weights, in nats
    p_on, p_off = np.array([0.8, 0.2]), np.array([0.2, 0.8])
    mix = (p_on + p_off) / 2
    js = 0.5 * (p_on * np.log(p_on / mix)).sum() + 0.5 * (p_off * np.log(p_off / mix)).sum()
    assert loss.item() == pytest.approx(-2 * js, abs=1e-4)


def test_priority_is_tempered_normalized_and_clamped() -> None:
    w = torch.tensor([32.0, 1.0, 0.0, 1e20])
    priority = balanced_priority(w, reference=torch.tensor(2.0), temperature=5.0)
    # 32^(1/5) / 2 = 1; 1 / 2 = 0.5; 0 is lifted to the floor; (1e20)^(1/5) / 2 = 5000 is capped.
    torch.testing.assert_close(priority, torch.tensor([1.0, 0.5, PRIORITY_MIN, PRIORITY_MAX]))


def small_store(n_offline: int = 4, capacity: int = 4) -> ReplayStore:
    """A store whose rows carry their own index in `rewards`, so draws can be counted by row."""
    columns = transition_columns(1, 1)
    offline = {k: np.zeros((n_offline, *s), np.float32) for k, s in columns.items()}
    offline["rewards"] = np.arange(n_offline, dtype=np.float32)
    return ReplayStore(columns, offline, capacity, torch.device("cpu"), seed=0)


def online_rows(values: list[float]) -> dict[str, np.ndarray]:
    columns = transition_columns(1, 1)
    rows = {k: np.zeros((len(values), *s), np.float32) for k, s in columns.items()}
    rows["rewards"] = np.asarray(values, np.float32)
    return rows


def test_balanced_rule_draws_rows_in_proportion_to_their_priorities() -> None:
    store = small_store()
    store.track_priorities()
    store.add_online(online_rows([4.0, 5.0]), priorities=torch.tensor([6.0, 4.0]))
    store.set_priorities(torch.tensor([1, 2, 3]), torch.tensor([2.0, 3.0, 4.0]))  # row 0 keeps 1
    draws = torch.cat([store.sample_indices(256, Sampling("balanced")) for _ in range(400)])
    counts = torch.bincount(draws, minlength=store.n_offline + store.capacity).double()
    expected = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0, 4.0, 0.0, 0.0]) / 20.0
    torch.testing.assert_close(counts / counts.sum(), expected.double(), atol=0.005, rtol=0.0)
    assert counts[6:].sum() == 0, "empty ring slots are never drawn"


def test_new_online_rows_replace_the_priorities_of_the_rows_they_overwrite() -> None:
    store = small_store(n_offline=2, capacity=2)
    store.track_priorities()
    store.add_online(online_rows([2.0, 3.0]), priorities=torch.tensor([5.0, 7.0]))
    store.add_online(online_rows([4.0]))  # overwrites the oldest online row; default priority 1
    torch.testing.assert_close(store.priorities.values(0, 4), torch.tensor([1.0, 1.0, 1.0, 7.0], dtype=torch.float64))
    assert store.priorities.total.item() == pytest.approx(10.0)


def test_priorities_survive_a_store_state_round_trip() -> None:
    store = small_store()
    store.track_priorities()
    store.add_online(online_rows([4.0, 5.0, 6.0]), priorities=torch.tensor([0.5, 8.0, 2.0]))
    store.set_priorities(torch.tensor([0, 3]), torch.tensor([3.0, 0.25]))
    state = store.get_state()

    restored = small_store()
    restored.set_state(state)
    torch.testing.assert_close(restored.priorities.values(0, 8), store.priorities.values(0, 8))
    assert restored.priorities.total.item() == pytest.approx(store.priorities.total.item())
    # the sampler's generator came back too: both stores now draw the same rows
    for _ in range(3):
        assert torch.equal(restored.sample_indices(64, Sampling("balanced")), store.sample_indices(64, Sampling("balanced")))


def test_balanced_rule_without_priorities_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="needs priorities"):
        small_store().sample_indices(8, Sampling("balanced"))


def learner(algo):  # noqa: ANN001, ANN201 - the local O2OLearner
    return algo.learner_group._learner


@pytest.mark.usefixtures("ray_session")
def test_td3bc_online_under_balanced_replay_learns_the_density_ratio_and_restores_it(hopper_random, tmp_path) -> None:
    config = (
        on_dataset(
            TD3BCConfig(),
            hopper_random,
            offline_updates=100,
            online_env_steps=400,
            updates_per_iteration=100,
            env_steps_per_iteration=100,
            phase_overrides={"online": {"sampling_rule": "balanced"}},
        )
        .training(train_batch_size_per_learner=64)
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        offline = algo.train()["o2o"]
        assert "offline/density_ratio_loss" not in offline, "the offline phase samples the dataset uniformly"
        assert learner(algo).balancers == []
        losses, shares = [], []
        for _ in range(3):
            metrics = algo.train()["o2o"]
            losses.append(metrics["online/density_ratio_loss"])
            shares.append(metrics["online/online_share"])
        # w ≡ 1 gives a loss of 0; learning to tell online from offline rows drives it below.
        assert losses[-1] < losses[0] and losses[-1] < -0.05, losses
        # online rows hold 300 of 3300 rows; balanced replay draws them more often than that.
        store = learner(algo).replay
        assert shares[-1] > store.n_online / (store.n_offline + store.n_online), shares
        priorities = store.priorities.values(0, store.n_offline + store.n_online).clone()
        assert priorities[store.n_offline :].mean() > priorities[: store.n_offline].mean()
        ratio_net = {k: v.clone() for k, v in learner(algo).balancers[0].net.state_dict().items()}
        algo.save_to_path(tmp_path / "ckpt")
    finally:
        algo.stop()

    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        store = learner(restored).replay
        torch.testing.assert_close(store.priorities.values(0, store.n_offline + store.n_online), priorities)
        for key, value in learner(restored).balancers[0].net.state_dict().items():
            assert torch.equal(value, ratio_net[key]), f"restored density-ratio weight {key} differs"
        assert learner(restored).balancers[0].optimizer.state, "the density-ratio Adam moments come back too"
        assert np.isfinite(restored.train()["o2o"]["online/density_ratio_loss"])
    finally:
        restored.stop()
