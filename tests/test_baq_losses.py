"""BAQ without Ray: each piece against its hand-computed value (π_β's likelihood, u, the gate,
c(t), λ, the behaviour-consistency term, the TD weights, the priorities), what each phase
trains, each ablation switch, the checkpointed state, and the refusals."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from o2o.algorithms import config_class
from o2o.algorithms.baq.learner import (
    Z_CLIP,
    behaviour_consistency_loss,
    behaviour_divergence,
    behaviour_nll,
    confidence_decay,
    divergence_priority,
    uncertainty_gate,
    uncertainty_td_weights,
)
from o2o.algorithms.td3.learner import critic_loss
from o2o.platform.engine import Phase
from o2o.platform.replay import Sampling
from o2o.platform.seeds import seed_module

from helpers import learner_on_random_transitions, moved, parameters_of, random_transitions


def test_behaviour_nll_is_the_gaussian_negative_log_likelihood() -> None:
    mean, log_std = torch.tensor([[0.1, -0.5]]), torch.tensor([[math.log(0.5), math.log(2.0)]])
    actions = torch.tensor([[0.6, 1.5]])
    # ((0.6 − 0.1)/0.5)² = 1 and ((1.5 + 0.5)/2)² = 1: ½ + log 0.5 + ½ log 2π, ½ + log 2 + ½ log 2π.
    expected = 1.0 + math.log(0.5) + math.log(2.0) + math.log(2 * math.pi)
    assert float(behaviour_nll(mean, log_std, actions)) == pytest.approx(expected)
    reference = -torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(behaviour_nll(mean, log_std, actions), reference)


def test_bc_divergence_is_the_standardized_squared_distance_averaging_one_under_the_behaviour() -> None:
    mean, log_std = torch.tensor([[0.1, -0.5]]), torch.tensor([[math.log(0.5), math.log(2.0)]])
    assert float(behaviour_divergence(mean, log_std, torch.tensor([[0.6, 3.5]]))) == pytest.approx((1.0 + 4.0) / 2)
    assert float(behaviour_divergence(mean, log_std, mean)) == 0.0
    generator = torch.Generator().manual_seed(0)
    draws = mean + log_std.exp() * torch.randn(20_000, 2, generator=generator)
    assert float(behaviour_divergence(mean, log_std, draws).mean()) == pytest.approx(1.0, abs=0.03)


def test_gate_decay_and_lambda_by_hand() -> None:
    u = torch.tensor([0.5, 1.0, 2.0])
    torch.testing.assert_close(uncertainty_gate(u, 4.0), torch.sigmoid(torch.tensor([-2.0, 0.0, 4.0])))
    assert confidence_decay(0, 100.0) == 1.0
    assert confidence_decay(250, 100.0) == pytest.approx(math.exp(-2.5))


def test_consistency_term_by_hand_and_its_gradient_reaches_the_policy_only() -> None:
    pi = torch.tensor([[0.2, 0.4], [0.0, -1.0]], requires_grad=True)
    behaviour_mean = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    weights = torch.tensor([2.0, 0.5], requires_grad=True)
    loss = behaviour_consistency_loss(pi, behaviour_mean, weights)
    # state 1: 2·(0.04 + 0.16)/2 = 0.2; state 2: 0.5·(0 + 1)/2 = 0.25; mean 0.225
    assert float(loss) == pytest.approx(0.225)
    loss.backward()
    torch.testing.assert_close(pi.grad, torch.tensor([[0.2, 0.4], [0.0, -0.25]]))
    assert weights.grad is None, "λ weighs the term; it is not optimized"


def test_td_weights_trust_uncertain_backups_less_at_the_same_mean() -> None:
    weights = uncertainty_td_weights(torch.tensor([0.0, 1.0, 3.0]))
    raw = torch.tensor([1.0, 0.5, 0.25])
    torch.testing.assert_close(weights, raw / raw.mean())
    q, target = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), torch.tensor([0.0, 0.0, 0.0])
    by_hand = sum(float((weights * (q[i] - target).pow(2)).mean()) for i in range(2))
    assert float(critic_loss(q, target, weights)) == pytest.approx(by_hand)


def test_priorities_standardize_the_divergence_and_clip() -> None:
    divergence = torch.tensor([1.0, 3.0, 100.0, -100.0])
    priorities = divergence_priority(divergence, mean=1.0, std=2.0)
    torch.testing.assert_close(priorities, torch.tensor([1.0, math.e, math.exp(Z_CLIP), math.exp(-Z_CLIP)]))


def baq_learner(**training: object):  # noqa: ANN201 - BAQLearner
    return learner_on_random_transitions(config_class("baq_td3bc")().o2o(online_env_steps=100).training(**training))


def online_rows(n: int, actions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    rows = random_transitions(n)
    return {"obs": rows.obs, "actions": rows.actions if actions is None else actions, "rewards": rows.rewards,
            "new_obs": rows.new_obs, "terminateds": rows.terminateds.astype(np.float32)}


def fine_tuning(offline_updates: int, **training: object):  # noqa: ANN201 - BAQLearner
    """A BAQ learner after `offline_updates` offline updates (π_β fitted), in its online phase."""
    learner = baq_learner(**training)
    learner.on_phase_start(Phase("offline", offline_updates, "updates"))
    learner.run_updates(offline_updates, Sampling("offline"))
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    return learner


def test_behaviour_model_fits_offline_and_is_frozen_online() -> None:
    learner = baq_learner()
    learner.on_phase_start(Phase("offline", 400, "updates"))
    first = learner.run_updates(20, Sampling("offline"))["behaviour_nll"]
    learner.run_updates(300, Sampling("offline"))
    last = learner.run_updates(20, Sampling("offline"))["behaviour_nll"]
    assert last < first - 0.5, f"π_β's likelihood of the dataset's actions rises offline: {first} → {last}"

    learner.on_phase_start(Phase("online", 100, "env_steps"))
    learner.add_online(online_rows(20))
    behaviour, actor = parameters_of(learner.net.behaviour), parameters_of(learner.net.actor)
    metrics = learner.run_updates(4, Sampling("prioritized"))
    assert not moved(behaviour, learner.net.behaviour), "π_β stays as the dataset left it"
    assert moved(actor, learner.net.actor) and "behaviour_nll" not in metrics
    assert {"consistency_loss", "minibatch_lambda", "td_weight_min", "target_uncertainty", "online_share"} <= set(metrics)


def test_online_actor_loss_is_the_base_with_bc_off_plus_the_weighted_consistency_term() -> None:
    learner = fine_tuning(10, uncertainty_sharpness=3.0, constraint_weight=1.5)
    obs, actions = torch.randn(16, 11), torch.rand(16, 3) * 2 - 1
    net = learner.net
    learner.seed_state = learner.seed_states()  # ū and c(t), as an update hands them to its losses
    with torch.no_grad():
        pi = net.actor(obs)
        q_pi = net.critic(obs, pi)[0]
        mean, log_std = net.behaviour(obs)
        lam = 1.5 * torch.sigmoid(3.0 * (behaviour_divergence(mean, log_std, pi) / learner.uncertainty_ref - 1.0))
        base = -(2.5 / q_pi.abs().mean()) * q_pi.mean()  # TD3+BC with bc_weight 0 online
        expected = base + (lam * (pi - mean).pow(2).mean(-1)).mean()
        losses = learner.actor_losses(obs, actions)
    assert float(losses["actor_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(losses["minibatch_lambda"]) == pytest.approx(float(lam.mean()), rel=1e-5)


def test_confident_transitions_relax_lambda_and_each_switch_takes_effect() -> None:
    learner = fine_tuning(300, confidence_scale=10.0)
    obs = torch.as_tensor(random_transitions(20).obs)
    with torch.no_grad():
        at_behaviour = learner.net.behaviour(obs)[0].numpy()
    learner.add_online(online_rows(20, actions=at_behaviour))  # π_β's own means: u = 0 < ū, all confident
    assert learner.confident.tolist() == [20] and float(learner.current_decay()[0]) == pytest.approx(math.exp(-2.0))
    learner.add_online(online_rows(20, actions=np.clip(at_behaviour + 5.0, -1, 1)))  # far from π_β: none
    assert learner.confident.tolist() == [20]
    assert learner.drain_summaries()["online/confident_share"] == pytest.approx(0.5)
    lambdas, (low, high) = learner.drain_distributions()["online/lambda"]
    assert len(lambdas) == 40 and (low, high) == (0.0, 2.0)
    assert lambdas.max() <= 2.0 * math.exp(-1.0) + 1e-6, "λ in the second batch's states carries c(t) after the first"

    pi = learner.net.actor(obs)
    learner.seed_state = learner.seed_states()  # ū and c(t), as an update hands them to its losses
    weights, _ = learner.constraint_weights(obs, pi)
    assert weights.std() > 0, "the gate makes λ depend on the state"
    learner.hp.uncertainty_gate = False
    weights, _ = learner.constraint_weights(obs, pi)
    torch.testing.assert_close(weights, torch.full((20,), 2.0 * 0.5 * math.exp(-2.0)))
    learner.hp.confidence_decay = False
    learner.seed_state = learner.seed_states()
    weights, _ = learner.constraint_weights(obs, pi)
    torch.testing.assert_close(weights, torch.full((20,), 1.0))

    batch = learner.replay.sample(32, Sampling("union"))
    assert learner.td_weights(batch, batch["actions"])[0] is not None
    learner.hp.uncertainty_weighted_q = False
    assert learner.td_weights(batch, batch["actions"]) == (None, {})


def test_ensemble_std_reads_the_critics_spread() -> None:
    learner = baq_learner(uncertainty="ensemble_std", num_critics=5)
    obs, actions = torch.randn(8, 11), torch.rand(8, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(learner.uncertainty(obs, actions), learner.net.critic(obs, actions).std(0))


def test_replay_is_prioritized_by_behaviour_divergence() -> None:
    learner = fine_tuning(300)
    learner.add_online(online_rows(10))
    assert learner.replay.priorities is None, "no priorities before the first prioritized update"
    learner.run_updates(1, Sampling("prioritized"))
    (source,) = learner.divergence_priorities
    replay = learner.replay
    rows = replay.gather(torch.arange(replay.n_offline + replay.n_online))
    with torch.no_grad():
        divergence = behaviour_nll(*learner.net.behaviour(rows["obs"]), rows["actions"])
    dataset = divergence[: replay.n_offline]
    assert (source.mean, source.std) == pytest.approx((float(dataset.mean()), float(dataset.std())), rel=1e-4)
    torch.testing.assert_close(
        replay.priorities.values(0, len(divergence)), divergence_priority(divergence, source.mean, source.std).double()
    )
    obs = torch.as_tensor(random_transitions(10).obs)
    with torch.no_grad():
        at_behaviour = learner.net.behaviour(obs)[0].numpy()
    learner.add_online(online_rows(10, actions=np.clip(at_behaviour + 2.0, -1, 1)))  # unlike the behaviour
    new = replay.priorities.values(replay.n_offline + 10, replay.n_offline + 20)
    assert float(new.min()) > float(replay.priorities.values(0, replay.n_offline).median()), "divergent rows replay more"
    summaries = learner.drain_summaries()
    assert summaries["online/priority_online_mass"] > 20 / (replay.n_offline + 20)
    assert summaries["online/priority_spread"] > 0


def test_each_seed_of_a_trial_keeps_its_own_priorities_u_bar_and_confident_count() -> None:
    """Two seeds: each lane's priorities are the divergence under that seed's own π_β, and ū and
    the confident count are each seed's."""
    learner = learner_on_random_transitions(config_class("baq_td3bc")().o2o(online_env_steps=100, seeds_per_trial=2))
    learner.on_phase_start(Phase("offline", 50, "updates"))
    learner.run_updates(50, Sampling("offline"))
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    rows = online_rows(20)
    learner.add_online({k: np.stack([v, v]) for k, v in rows.items()})  # the same rows in both seeds' buffers
    learner.run_updates(1, Sampling("prioritized"))
    assert learner.uncertainty_ref.shape == (2,) and learner.uncertainty_ref[0] != learner.uncertainty_ref[1]
    held = []
    for i, (store, source) in enumerate(zip(learner.lanes, learner.divergence_priorities, strict=True)):
        offline = learner.replay.gather(torch.arange(learner.replay.n_offline))
        with torch.no_grad():
            mean, log_std = seed_module(learner.net.behaviour, i)(offline["obs"])
        divergence = behaviour_nll(mean, log_std, offline["actions"])
        assert (source.mean, source.std) == pytest.approx((float(divergence.mean()), float(divergence.std())), rel=1e-4)
        held.append(store.priorities.values(0, store.n_offline + store.n_online).clone())
    assert not torch.equal(held[0], held[1]), "each seed's priorities under its own π_β"
    assert learner.confident.shape == (2,)


def test_uniform_replay_keeps_no_priorities() -> None:
    learner = baq_learner(sampling_rule="union")
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    learner.add_online(online_rows(10))
    learner.run_updates(2, Sampling("union"))
    assert learner.replay.priorities is None and "online/priority_spread" not in learner.drain_summaries()


def test_state_round_trips() -> None:
    learner = fine_tuning(20)
    learner.add_online(online_rows(10))
    learner.run_updates(2, Sampling("prioritized"))
    state = learner.get_state()
    restored = baq_learner()
    restored.set_state(state)
    assert float(restored.uncertainty_ref) == float(learner.uncertainty_ref)
    assert restored.confident.tolist() == learner.confident.tolist()
    assert [(s.mean, s.std) for s in restored.divergence_priorities] == [(s.mean, s.std) for s in learner.divergence_priorities]
    assert restored.row_priorities == restored.divergence_priorities, "new rows get priorities at once after a restore"


def test_defaults() -> None:
    config = config_class("baq_td3bc")()
    assert (config.uncertainty, config.sampling_rule, config.for_phase("online").bc_weight, config.bc_weight) == (
        "bc_divergence", "prioritized", 0.0, 1.0,
    )
    assert config.uncertainty_gate and config.confidence_decay and config.uncertainty_weighted_q


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"uncertainty": "entropy"}, "uncertainty 'entropy' is not one of ('bc_divergence', 'ensemble_std')"),
        ({"uncertainty": "ensemble_std", "num_critics": 1}, "ensemble_std is the critics' spread: it needs num_critics >= 2"),
        ({"phase_overrides": {"online": {"constraint_weight": -1.0}}}, "constraint_weight and uncertainty_sharpness must be >= 0 and confidence_scale > 0 in phase_overrides['online']"),
        ({"confidence_scale": 0.0}, "confidence_scale > 0, got 2.0, 5.0 and 0.0"),
        ({"phase_overrides": {"offline": {"uncertainty_gate": False}}}, "phase_overrides['offline'] sets uncertainty_gate: BAQ's pieces act in the 'online' phase only"),
        ({"phase_overrides": {"online": {"uncertainty": "ensemble_std"}}}, "phase_overrides['online'] sets uncertainty: its running mean"),
        ({"uncertainty_gate": False, "uncertainty_sharpness": 3.0}, "uncertainty_sharpness cannot take effect with uncertainty_gate false"),
        (
            {"confidence_scale": 1000.0, "phase_overrides": {"online": {"confidence_decay": False}}},
            "confidence_scale cannot take effect with confidence_decay false",
        ),
    ],
)
def test_settings_that_cannot_take_effect_are_refused(training: dict, message: str) -> None:
    config = (
        config_class("baq_td3bc")().environment("Hopper-v5").offline_data(input_=["unread.parquet"])
        .o2o(offline_updates=10).training(**training)
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()


@pytest.mark.parametrize("offline_updates", [0, 10])
def test_without_offline_training_of_the_behaviour_model_baq_is_refused(offline_updates: int) -> None:
    config = config_class("baq_td3bc")().environment("Hopper-v5").o2o(offline_updates=offline_updates, online_env_steps=10)
    if offline_updates:
        config = config.offline_data(input_=["unread.parquet"]).o2o(offline_updates=0)
    with pytest.raises(ValueError, match=re.escape("π_β is fitted to the dataset during the offline phase")):
        config.validate()


def test_prioritized_replay_is_refused_where_the_method_sets_no_priorities() -> None:
    config = config_class("td3bc")().environment("Hopper-v5").offline_data(input_=["unread.parquet"]).o2o(sampling_rule="prioritized")
    with pytest.raises(ValueError, match=re.escape("sampling_rule prioritized draws rows by priorities the method sets, and td3bc sets none")):
        config.validate()
