"""CQL's conservative term and Lagrange step, and Cal-QL's lower bound, on hand-computed cases;
the Cal-QL store's Monte-Carlo returns against the dataset's. No Ray session needed."""

from __future__ import annotations

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from o2o.algorithms.calql.config import CalQLConfig
from o2o.algorithms.calql.learner import CalQLLearner, calibrated_q
from o2o.algorithms.cql.config import CQLConfig
from o2o.algorithms.cql.learner import conservative_gap, conservative_loss, lagrange_loss, q_at
from o2o.platform.data import Transitions
from o2o.platform.engine import Phase
from o2o.platform.networks import QEnsemble
from o2o.platform.replay import Sampling


def test_conservative_gap_is_importance_weighted_log_sum_exp_minus_data_q() -> None:
    # One critic, one state, two sampled actions from proposals of density 1/2 each:
    # Q − log μ = (ln 2 − ln ½, ln 6 − ln ½) = (ln 4, ln 12); log(4 + 12) − Q(s, a_D) = ln 16 − ln 2.
    q_sampled = torch.tensor([[[math.log(2.0), math.log(6.0)]]])
    log_density = torch.full((1, 2), math.log(0.5))
    q_data = torch.tensor([[math.log(2.0)]])
    gap = conservative_gap(q_sampled, log_density, q_data, temperature=1.0, clip_min=-math.inf)
    torch.testing.assert_close(gap, torch.tensor([math.log(8.0)]))


def test_conservative_gap_averages_states_per_critic() -> None:
    # Two critics (rows), two states, one action each with density 1: the log-sum-exp of one
    # value is that value, so each critic's gap is the mean of Q(s, a) − Q(s, a_D) over states.
    q_sampled = torch.tensor([[[3.0], [1.0]], [[0.0], [2.0]]])
    q_data = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    gap = conservative_gap(q_sampled, torch.zeros(2, 1), q_data, temperature=1.0, clip_min=-math.inf)
    torch.testing.assert_close(gap, torch.tensor([1.0, 1.0]))  # (2 + 0)/2 and (0 + 2)/2


def test_conservative_gap_temperature_and_lower_clip() -> None:
    q_sampled = torch.tensor([[[0.0, 2 * math.log(3.0)]]])
    q_data = torch.tensor([[0.0]])
    # τ·log Σ exp(Q/τ) with τ = 2: 2·log(1 + 3) = 2 ln 4.
    hot = conservative_gap(q_sampled, torch.zeros(1, 2), q_data, temperature=2.0, clip_min=-math.inf)
    torch.testing.assert_close(hot, torch.tensor([2 * math.log(4.0)]))
    # A data Q far above the sampled ones is clipped at the floor: the term stops pushing it up.
    clipped = conservative_gap(q_sampled, torch.zeros(1, 2), torch.tensor([[100.0]]), temperature=1.0, clip_min=-5.0)
    torch.testing.assert_close(clipped, torch.tensor([-5.0]))


def test_conservative_loss_weights_each_critics_gap() -> None:
    gap = torch.tensor([1.0, 3.0])
    # Eq. 4: α·Σ_i gap_i = 10·(1 + 3); the Lagrange form: α·α'·Σ_i (gap_i − τ_gap) = 2·(0.5 + 2.5).
    assert conservative_loss(gap, 10.0, 0.0).item() == pytest.approx(40.0)
    assert conservative_loss(gap, torch.tensor(2.0), 0.5).item() == pytest.approx(6.0)


def test_lagrange_step_raises_the_multiplier_while_the_gap_exceeds_its_target() -> None:
    multiplier = torch.tensor(2.0, requires_grad=True)
    gap = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = lagrange_loss(multiplier, gap, cql_alpha=5.0, target_gap=0.5)
    assert loss.item() == pytest.approx(-2.0 * 5.0 * (2.0 - 0.5))
    loss.backward()
    # ∂L/∂α' = −α·(mean gap − τ_gap) < 0: gradient descent raises α' while the gap is too wide.
    assert multiplier.grad.item() == pytest.approx(-7.5)
    assert gap.grad is None, "the dual step moves α' only, never the critics"
    below = lagrange_loss(torch.tensor(2.0, requires_grad=True), torch.tensor([0.1, 0.1]), 5.0, 0.5)
    assert below.item() > 0, "below the target gap the step lowers α'"


def test_q_at_pairs_each_state_with_its_own_actions() -> None:
    torch.manual_seed(0)
    critic = QEnsemble(2, 3 + 2, [8])
    obs, actions = torch.randn(4, 3), torch.rand(4, 5, 2)
    q = q_at(critic, obs, actions)
    assert q.shape == (2, 4, 5)
    expected = torch.stack([critic(obs, actions[:, k]) for k in range(5)], dim=-1)
    torch.testing.assert_close(q, expected)


def test_calibration_raises_q_below_the_return_and_keeps_q_above_it() -> None:
    q_policy = torch.tensor([[[1.0, 5.0], [-3.0, 0.0]]], requires_grad=True)  # (1 critic, 2 states, 2 actions)
    mc_returns = torch.tensor([2.0, -math.inf])  # the second row is online: no bound known
    bounded = calibrated_q(q_policy, mc_returns)
    torch.testing.assert_close(bounded, torch.tensor([[[2.0, 5.0], [-3.0, 0.0]]]))
    bounded.sum().backward()
    # A Q raised to its bound no longer receives the regularizer's push-down.
    torch.testing.assert_close(q_policy.grad, torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]))


def test_calql_bounds_the_policy_actions_only_while_calibrating() -> None:
    q_policy = torch.tensor([[[1.0, 5.0]]])
    batch = {"mc_returns": torch.tensor([2.0])}
    on, metrics = CalQLLearner.policy_action_q(SimpleNamespace(hp=SimpleNamespace(calibrate=True)), q_policy, batch)
    off, _ = CalQLLearner.policy_action_q(SimpleNamespace(hp=SimpleNamespace(calibrate=False)), q_policy, batch)
    torch.testing.assert_close(on, torch.tensor([[[2.0, 5.0]]]))
    torch.testing.assert_close(off, q_policy)
    assert metrics["calibration_rate"].item() == pytest.approx(0.5), "one of the two Q-values lies below its return"


def test_calql_defaults_calibrate_offline_only_and_mix_half_and_half() -> None:
    config = CalQLConfig()
    assert config.for_phase("offline").calibrate and not config.for_phase("online").calibrate
    assert (config.sampling_rule, config.offline_fraction) == ("ratio", 0.5)
    assert config.for_phase("online").cql_alpha == CQLConfig().cql_alpha, "Cal-QL keeps CQL's α online"


def episodes(rewards: np.ndarray, eps_id: np.ndarray, t: np.ndarray, truncated: list[int]) -> Transitions:
    """Hopper-shaped transitions with the given rewards and episode layout."""
    n = len(rewards)
    rng = np.random.default_rng(0)
    return Transitions(
        obs=rng.standard_normal((n, 11), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rewards=rewards.astype(np.float32),
        new_obs=rng.standard_normal((n, 11), dtype=np.float32),
        terminateds=np.zeros(n, bool),
        truncateds=np.isin(np.arange(n), truncated),
        eps_id=eps_id,
        t=t,
    )


def test_calql_store_holds_the_datasets_returns_to_go() -> None:
    # Three episodes with their rows interleaved, so a misaligned column would show.
    rewards = np.array([1.0, 2.0, 1.0, 5.0, 2.0, 1.0, -1.0])
    data = episodes(rewards, np.array([0, 1, 0, 2, 1, 0, 2]), np.array([0, 0, 1, 0, 1, 2, 1]), [4, 5, 6])
    gamma = 0.9
    config = CalQLConfig().environment("Hopper-v5").training(gamma=gamma).debugging(seed=0)
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    learner.build_replay(data, 11, 3)

    indices = learner.replay.sample_indices(64, Sampling("offline"))
    batch = learner.replay.gather(indices)
    rows = indices.cpu().numpy()
    np.testing.assert_allclose(batch["mc_returns"].cpu().numpy(), data.returns_to_go(gamma)[rows], rtol=1e-6)
    np.testing.assert_array_equal(batch["rewards"].cpu().numpy(), data.rewards[rows])
    # By hand: episode 0 is 1 + 0.9·(1 + 0.9·1) = 2.71 from its first row; episode 2 is 5 − 0.9.
    np.testing.assert_allclose(data.returns_to_go(gamma)[[0, 2, 5, 3, 6]], [2.71, 1.9, 1.0, 4.1, -1.0], rtol=1e-6)

    n = len(data)
    learner.add_online({k: getattr(data, k)[:2] for k in ("obs", "actions", "rewards", "new_obs", "terminateds")})
    online = learner.replay.gather(torch.arange(n, n + 2, device=learner.replay.device))["mc_returns"]
    assert torch.isinf(online).all() and (online < 0).all(), (
        "online rows carry no return yet, so calibration leaves their Q-values unbounded"
    )


def test_phase_overrides_reach_the_losses_and_the_learning_rates() -> None:
    data = episodes(np.ones(40), np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4), [9, 19, 29, 39])
    overrides = {"online": {"calibrate": False, "cql_alpha": 0.0, "actor_lr": 1e-4, "lr": 1e-3}}
    config = (
        CalQLConfig()
        .environment("Hopper-v5")
        .training(train_batch_size_per_learner=16)
        .o2o(phase_overrides=overrides)
        .debugging(seed=0)
    )
    learner = config.build_learner(env=gym.make("Hopper-v5"))
    learner.build_replay(data, 11, 3)

    def rates() -> dict[str, float]:
        return {g["name"]: g["lr"] for g in learner.optimizer.param_groups}

    learner.on_phase_start(Phase("offline", 1, "updates"))
    offline = learner.run_updates(1, Sampling("offline"))
    assert learner.hp.calibrate and offline["cql_loss"] > 0, "offline: the conservative term is on"
    assert rates() == {"critic": 3e-4, "actor": 3e-5, "alpha": 3e-5, "cql_multiplier": 3e-4}

    learner.on_phase_start(Phase("online", 1, "env_steps"))
    online = learner.run_updates(1, Sampling("offline"))
    assert not learner.hp.calibrate and online["cql_loss"] == 0.0, "online: α = 0 switches the term off"
    assert rates() == {"critic": 1e-3, "actor": 1e-4, "alpha": 3e-5, "cql_multiplier": 1e-3}


def test_without_the_conservative_term_the_sampled_actions_are_not_drawn() -> None:
    """CQL → SAC fine-tuning (α = 0 online) computes no conservative term: its 3K sampled actions
    per state were most of an update's cost and weighed nothing. So the number of sampled actions
    changes nothing there — not the update, nor the random stream after it — while with α > 0 it
    changes the update."""
    data = episodes(np.ones(40), np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4), [9, 19, 29, 39])

    def critic_after_two_updates(cql_alpha: float, num_sampled_actions: int) -> tuple[list[torch.Tensor], dict]:
        config = (
            CQLConfig()
            .environment("Hopper-v5")
            .training(train_batch_size_per_learner=16, cql_alpha=cql_alpha, num_sampled_actions=num_sampled_actions)
            .debugging(seed=0)
        )
        learner = config.build_learner(env=gym.make("Hopper-v5"))
        learner.build_replay(data, 11, 3)
        learner.on_phase_start(Phase("online", 2, "env_steps"))
        metrics = learner.run_updates(2, Sampling("offline"))
        return [p.detach().clone() for p in learner.net.critic.parameters()], metrics

    (few, metrics), (many, _) = critic_after_two_updates(0.0, 1), critic_after_two_updates(0.0, 10)
    assert all(torch.equal(a, b) for a, b in zip(few, many))
    assert metrics["cql_loss"] == 0.0 and "cql_gap" not in metrics
    (few, _), (many, _) = critic_after_two_updates(1.0, 1), critic_after_two_updates(1.0, 10)
    assert not all(torch.equal(a, b) for a, b in zip(few, many))
