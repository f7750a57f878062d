"""The engine's phase machine on real Ray, a real MuJoCo env and a real dataset (phases run in
order with their budgets, evaluation at each phase's end), and the losses and replay rules
checked by hand. What every algorithm must do on the engine is in test_conformance.py."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from o2o.algorithms.iql import IQLConfig
from o2o.algorithms.iql.learner import awr_loss, expectile_loss
from o2o.platform.data import ResolvedDataset
from o2o.platform.replay import ReplayStore, Sampling, transition_columns

from helpers import on_dataset


def tiny_iql(dataset: ResolvedDataset, **o2o: Any) -> IQLConfig:
    settings = dict(offline_updates=300, online_env_steps=200, updates_per_iteration=100, env_steps_per_iteration=100)
    settings.update(o2o)
    return (
        on_dataset(IQLConfig(), dataset, **settings)
        .training(train_batch_size_per_learner=64)
        .evaluation(evaluation_interval=100, evaluation_duration=1)
        .debugging(seed=0)
    )


def learner(algo):  # noqa: ANN001, ANN201
    return algo.learner_group._learner


@pytest.mark.usefixtures("ray_session")
def test_phases_run_in_order_and_hand_off_weights(hopper_random) -> None:
    algo = tiny_iql(hopper_random).build_algo()
    try:
        phases, losses = [], []
        while True:
            result = algo.train()
            phases.append(result["o2o_tags"]["phase"])
            if result["o2o"]["counters/env_steps"] > 0:
                # an online result carries the online phase's measurements, not the last offline ones
                assert not [k for k in result["o2o"] if k.startswith(("offline/", "perf/updates"))], result["o2o"]
            if "offline/critic_loss" in result["o2o"] and result["o2o"]["counters/env_steps"] == 0:
                losses.append(result["o2o"]["offline/critic_loss"])
            if result["done"]:
                break
        # three offline iterations, then two online ones, then done — the budgets, exactly.
        assert phases == ["offline", "offline", "online", "online", "done"]
        assert result["o2o"]["counters/env_steps"] == 200
        assert result["o2o"]["counters/updates"] == 300 + 200
        assert learner(algo).replay.n_online == 200
        # offline updates fit the critic: its TD error falls
        assert losses[-1] < losses[0]
        # an evaluation ran at each phase's end and reports a normalized score
        assert np.isfinite(result["o2o"]["eval/normalized_score"])
        # after the hand-off the EnvRunner acts with exactly the learner's actor
        learner_actor = learner(algo).net.actor.state_dict()
        runner_actor = algo.env_runner.module.actor.state_dict()
        for key, value in learner_actor.items():
            assert torch.equal(value, runner_actor[key]), key
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_online_phase_overrides_set_the_sampling_rule_and_anneal_it(hopper_random) -> None:
    online = {"sampling_rule": "ratio", "offline_fraction": 1.0, "offline_fraction_end": 0.0, "anneal_env_steps": 200}
    config = tiny_iql(hopper_random, offline_updates=100, online_env_steps=200)
    config.o2o(phase_overrides={"online": online})
    algo = config.build_algo()
    try:
        assert algo.train()["o2o"].get("online/offline_fraction") is None  # offline: the dataset only
        assert algo.hp.sampling_rule == "ratio", "the online phase's override is in force"
        fractions = [algo.train()["o2o"]["online/offline_fraction"] for _ in range(2)]
        # the last update of each 100-step iteration samples after 100 and after 200 of 200 steps
        assert fractions == pytest.approx([1 - 100 / 200, 1 - 200 / 200])
    finally:
        algo.stop()


def test_expectile_loss_hand_computed() -> None:
    diff = torch.tensor([1.0, -2.0, 0.5])
    # τ = 0.7: weights 0.7, 0.3, 0.7 on squared differences 1, 4, 0.25 → mean of 0.7, 1.2, 0.175
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 + 1.2 + 0.175) / 3)


def test_awr_weight_is_clipped() -> None:
    log_prob = torch.tensor([1.0, 1.0])
    advantage = torch.tensor([10.0, 0.0])
    # exp(3·10) is clipped at 100; exp(0) = 1
    assert awr_loss(log_prob, advantage, 3.0, 100.0).item() == pytest.approx(-(100 + 1) / 2)


def test_replay_rules_draw_from_the_right_rows() -> None:
    columns = transition_columns(2, 1)
    offline = {k: np.zeros((10, *shape)) for k, shape in columns.items()}
    store = ReplayStore(columns, offline, online_capacity=4, device=torch.device("cpu"), seed=0)
    with pytest.raises(RuntimeError, match="needs online transitions"):
        store.sample_indices(8, Sampling("online"))
    online = {k: np.ones((6, *shape)) for k, shape in columns.items()}
    store.add_online(online)  # 6 rows into a ring of 4: the oldest 2 are overwritten
    assert store.n_online == 4 and store.total_added == 6
    assert (store.sample_indices(100, Sampling("online")) >= 10).all()
    assert (store.sample_indices(100, Sampling("offline")) < 10).all()
    mixed = store.sample_indices(100, Sampling("ratio", 0.25))
    assert (mixed[:25] < 10).all() and (mixed[25:] >= 10).all()
    batch = store.sample(8, Sampling("union"))
    # vectors keep their width even when it is 1 (a one-dimensional action); scalars are (B,)
    assert batch["obs"].shape == (8, 2) and batch["actions"].shape == (8, 1) and batch["rewards"].shape == (8,)


def test_learner_that_needs_returns_to_go_gets_them_from_the_engine(hopper_random) -> None:
    import gymnasium as gym

    from o2o.algorithms.iql.learner import IQLLearner
    from o2o.platform.data import read_parquet

    class ReturnsLearner(IQLLearner):
        needs_returns_to_go = True

    config = IQLConfig().environment("Hopper-v5").training(learner_class=ReturnsLearner, gamma=0.9)
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    data = read_parquet(hopper_random.parquet_path)
    learner.build_replay(data, data.obs_dim, data.act_dim)
    store = learner.replay
    rows = torch.arange(store.n_offline)
    # the returns are in the learner's reward units (IQL rescales rewards by the return range)
    expected = data.returns_to_go(0.9) * learner.reward_scale
    np.testing.assert_allclose(store.gather(rows)["mc_returns"].numpy(), expected, rtol=1e-5)
    # online rows carry no return yet: −inf, so a max() lower bound leaves their Q untouched
    learner.add_online({k: v[:5] for k, v in learner.offline_columns(data).items() if k != "mc_returns"})
    online = store.gather(torch.arange(store.n_offline, store.n_offline + 5))["mc_returns"]
    assert torch.isneginf(online).all()


def test_rlpd_options_ensemble_of_layer_norm_critics_min_over_a_random_pair(hopper_random) -> None:
    import gymnasium as gym

    from o2o.algorithms.sac import SACConfig
    from o2o.platform.data import read_parquet
    from o2o.platform.engine import Phase

    config = (
        SACConfig()
        .environment("Hopper-v5")
        .o2o(num_critics=10, critic_layer_norm=True, target_critic_subset=2, sampling_rule="ratio", utd_ratio=20)
        .training(actor_q_reduction="mean", train_batch_size_per_learner=32)
    )
    config.validate()
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    data = read_parquet(hopper_random.parquet_path)
    learner.build_replay(data, data.obs_dim, data.act_dim)
    learner.on_phase_start(Phase("offline", 10, "updates"))
    critic = learner.net.critic
    assert critic.linears[0].weight.shape[0] == 10 and critic.norms is not None, "one batched module of 10 LayerNorm critics"
    # member i predicts i everywhere: the min over a random pair is the smaller of two distinct members
    q = torch.arange(10.0)[:, None].expand(10, 4)
    picks = {float(learner.target_min(q)[0]) for _ in range(50)}
    assert len(picks) > 1 and picks <= set(range(9)), picks
    metrics = learner.run_updates(5, Sampling("offline"))
    assert np.isfinite(metrics["critic_loss"])
    with pytest.raises(ValueError, match="target_critic_subset"):
        SACConfig().environment("Hopper-v5").o2o(num_critics=2, target_critic_subset=3).validate()


def test_state_normalization_and_reward_scale_reach_replay_and_env_runner(hopper_random) -> None:
    from o2o.platform.data import read_parquet

    config = tiny_iql(hopper_random, offline_updates=100, online_env_steps=20, updates_per_iteration=100)
    config.o2o(normalize_observations=True, reward_normalization="return_range", env_steps_per_iteration=20)
    algo = config.build_algo()
    try:
        data = read_parquet(hopper_random.parquet_path)
        returns = data.episode_returns()
        store = learner(algo).replay
        offline = store.gather(torch.arange(store.n_offline))
        # the replay holds standardized states and rewards × 1000 / (max − min episode return)
        np.testing.assert_allclose(offline["obs"].mean(0).numpy(), 0.0, atol=1e-3)
        np.testing.assert_allclose(offline["obs"].std(0).numpy(), data.obs.std(0) / (data.obs.std(0) + 1e-3), rtol=1e-3)
        scale = 1000.0 / (returns.max() - returns.min())
        np.testing.assert_allclose(offline["rewards"].numpy(), data.rewards * scale, rtol=1e-5)
        algo.train()  # the offline phase; the hand-off follows
        algo.train()  # 20 online steps
        # the EnvRunner standardizes with the learner's statistics, and online rows are
        # standardized and rescaled like the dataset's
        runner = algo.env_runner.module.obs_normalizer
        torch.testing.assert_close(runner.mean, torch.as_tensor(data.obs.mean(0)))
        online = store.gather(torch.arange(store.n_offline, store.n_offline + store.n_online))
        raw_obs = online["obs"] * runner.std + runner.mean
        assert raw_obs[:, 0].min() > 0.5, "the raw Hopper height (first state) is positive: rows were standardized"
        assert online["rewards"].abs().max() < 10 * scale
    finally:
        algo.stop()


def test_a_method_field_rllib_would_route_to_evaluation_is_refused() -> None:
    """RLlib's `update_from_dict` sends `evaluation_*` keys to `.evaluation()`: such a method field
    would vanish from every trial Tune builds, so it is refused when the config is validated."""

    class Routed(IQLConfig):
        def __init__(self) -> None:
            super().__init__()
            self.evaluation_epsilon = 0.1

    with pytest.raises(ValueError, match=r"Routed fields \['evaluation_epsilon'\]: RLlib passes every config key"):
        Routed().environment("Hopper-v5").validate()


def test_unknown_reward_normalization_is_refused() -> None:
    with pytest.raises(ValueError, match="reward_normalization 'zscore'"):
        IQLConfig().environment("Hopper-v5").o2o(reward_normalization="zscore").validate()


@pytest.mark.usefixtures("ray_session")
def test_a_phase_is_evaluated_before_the_next_phase_starts(hopper_random) -> None:
    from o2o.algorithms.iql import IQLAlgorithm

    events: list[str] = []

    class Recording(IQLAlgorithm):
        def evaluate(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            events.append("evaluate")
            return super().evaluate(*args, **kwargs)

        def on_phase_start(self, phase) -> None:  # noqa: ANN001
            events.append(f"start {phase.name}")
            super().on_phase_start(phase)

    config = tiny_iql(hopper_random, offline_updates=100, online_env_steps=0)
    config.o2o(offline_updates=100, online_env_steps=100)
    config.algo_class = Recording
    algo = config.build_algo()
    try:
        algo.train()
        # the offline phase's last score is the offline policy's: the online phase's hook (PEX
        # expands its policy there, SPOT resets its optimizers) runs after that evaluation
        assert events == ["start offline", "evaluate", "start online"], events
    finally:
        algo.stop()


def test_an_offline_phase_without_a_dataset_is_refused() -> None:
    """RLlib's `input_` defaults to "sampler" (no dataset), which an emptiness test let through."""
    from o2o.algorithms.sac import SACConfig

    with pytest.raises(ValueError, match=re.escape("an offline phase needs a dataset (config.offline_data(input_=...))")):
        SACConfig().environment("Hopper-v5").o2o(offline_updates=10).validate()
