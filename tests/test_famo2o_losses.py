"""FamO2O's pieces by hand: the encoding of β, the balance model's range, its losses and the
universal policy's on CQL; how each base's learner reads β; the β the policy acts with online,
recorded per state; the defaults of each base and the refusals. No Ray session needed."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from o2o.algorithms import config_class
from o2o.algorithms.famo2o.cql import universal_actor_loss
from o2o.algorithms.famo2o.learner import balance_loss, balance_temperature_loss
from o2o.algorithms.famo2o.module import BalanceModel, encode_beta
from o2o.algorithms.iql.learner import IQLLearner, awr_loss
from o2o.platform.engine import Phase

from helpers import learner_on_random_transitions, random_transitions


def test_encode_beta_by_hand() -> None:
    beta = torch.tensor([2.0, 0.5])
    enc = encode_beta(beta, dim=6, base=10000.0)
    assert enc.shape == (2, 6)
    # frequencies 1 / 10000^(2i/6), i = 0, 1, 2: 1, 1/21.544, 1/464.16; sin and cos interleaved
    angles = [2.0, 2.0 / 10000 ** (1 / 3), 2.0 / 10000 ** (2 / 3)]
    by_hand = [f(a) for a in angles for f in (math.sin, math.cos)]
    np.testing.assert_allclose(enc[0].numpy(), by_hand, rtol=1e-6)
    assert enc[1, 0].item() == pytest.approx(math.sin(0.5)) and enc[1, 1].item() == pytest.approx(math.cos(0.5))


def test_balance_model_spans_its_range() -> None:
    torch.manual_seed(0)
    model = BalanceModel(11, [32, 32], [0.5, 1.5])
    assert model.to_range(torch.tensor([[-1.0], [0.0], [1.0]])).tolist() == [0.5, 1.0, 1.5]
    obs = torch.randn(500, 11) * 3
    beta, logp = model.sample(obs)
    assert beta.shape == logp.shape == (500,)
    assert bool(((beta >= 0.5) & (beta <= 1.5)).all()) and bool(((model.mode(obs) > 0.5) & (model.mode(obs) < 1.5)).all())
    assert beta.requires_grad, "reparameterised: the balance loss reaches π_b through β"


def test_balance_losses_by_hand() -> None:
    logp = torch.tensor([-1.0, 0.5])
    q = torch.tensor([3.0, 1.0])
    # E[α_b log π_b − Q] = ((0.2·−1 − 3) + (0.2·0.5 − 1)) / 2
    assert balance_loss(logp, q, 0.2).item() == pytest.approx(((-0.2 - 3.0) + (0.1 - 1.0)) / 2)
    assert balance_loss(logp, q, 0.0).item() == pytest.approx(-2.0), "CQL variant: −E[Q]"
    log_temperature = torch.tensor(math.log(0.5), requires_grad=True)
    loss = balance_temperature_loss(log_temperature, torch.tensor(0.3), -0.5)
    assert loss.item() == pytest.approx(0.5 * 0.8)
    loss.backward()
    assert log_temperature.grad.item() == pytest.approx(0.5 * 0.8), "entropy above target: descent lowers α_b"


def test_universal_actor_loss_on_cql_by_hand() -> None:
    logp = torch.tensor([-2.0, 1.0])
    q = torch.tensor([10.0, 4.0])
    beta = torch.tensor([0.5, 1.5])
    # (0.1·−2 − 0.5·10 + 0.1·1 − 1.5·4) / 2
    assert universal_actor_loss(logp, q, torch.tensor(0.1), beta).item() == pytest.approx((-0.2 - 5.0 + 0.1 - 6.0) / 2)


@pytest.mark.parametrize("name", ["famo2o_iql", "famo2o_cql"])
def test_policy_reads_the_state_and_each_rows_encoded_beta(name: str) -> None:
    learner = learner_on_random_transitions(config_class(name)())
    net = learner.net
    assert net.policy_input_dim() == 11 + 6
    obs = torch.randn(4, 11)
    learner.beta = torch.tensor([1.0, 1.2, 0.7, 1.4])
    flat = learner.policy_obs(obs)
    torch.testing.assert_close(flat, torch.cat([obs, encode_beta(learner.beta, 6, 10000.0)], -1))
    repeated = learner.policy_obs(obs.unsqueeze(1).expand(4, 3, 11))  # CQL's K draws per state
    assert repeated.shape == (4, 3, 17)
    torch.testing.assert_close(repeated[:, 2], flat)


@pytest.mark.parametrize("name", ["famo2o_iql", "famo2o_cql"])
def test_beta_is_uniform_offline_and_the_balance_models_online(name: str) -> None:
    learner = learner_on_random_transitions(config_class(name)())
    low, high = learner.hp.beta_range
    obs = torch.randn(4000, 11)
    learner.on_phase_start(Phase("offline", 1, "updates"))
    offline = learner.draw_beta(obs)
    assert offline.min() >= low and offline.max() <= high
    assert offline.std().item() == pytest.approx((high - low) / math.sqrt(12), rel=0.05), "U[β_lo, β_hi]"
    learner.on_phase_start(Phase("online", 1, "env_steps"))
    torch.manual_seed(1)
    online = learner.draw_beta(obs)
    torch.manual_seed(1)
    torch.testing.assert_close(online, learner.net.balance.sample(obs)[0].detach())


@pytest.mark.parametrize("name", ["famo2o_iql", "famo2o_cql"])
def test_balance_loss_reaches_the_balance_model_only(name: str) -> None:
    """Its gradient moves π_b (and α_b where the variant has one), never the policy or critics
    it reads, so it shares the base's backward."""
    learner = learner_on_random_transitions(config_class(name)())
    learner.on_phase_start(Phase("offline", 1, "updates"))
    net = learner.net
    loss, metrics = learner.balance_losses(torch.as_tensor(random_transitions(64).obs))
    loss.backward()
    reached = {k for k, p in net.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert reached and all(k.startswith("balance.") or k == "log_balance_temperature" for k in reached), reached
    assert ("log_balance_temperature" in reached) == (learner.hp.balance_target_entropy is not None)
    assert all(p.requires_grad for p in net.actor.parameters()), "the policy is frozen only inside the loss"
    assert np.isfinite(metrics["balance_loss"].item())


@pytest.mark.parametrize("name", ["famo2o_iql", "famo2o_cql"])
def test_an_update_steps_the_balance_model_and_the_base_on_their_own_losses(name: str) -> None:
    """One update: both optimizers step, β is drawn for the minibatch and released after."""
    learner = learner_on_random_transitions(config_class(name)())
    learner.on_phase_start(Phase("offline", 1, "updates"))
    net = learner.net
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    metrics = learner.update_step(learner.replay.gather(torch.arange(64)))
    moved = {k.split(".")[0] for k, v in net.named_parameters() if not torch.equal(v, before[k])}
    assert {"balance", "actor"} <= moved, moved
    assert learner.beta is None, "β belongs to one update"
    assert {"balance_loss", "actor_loss", "beta_mean"} <= set(metrics)


def test_iql_variant_weighs_awr_by_each_transitions_beta() -> None:
    learner = learner_on_random_transitions(config_class("famo2o_iql")())
    learner.on_phase_start(Phase("offline", 1, "updates"))
    net = learner.net
    batch = learner.replay.gather(torch.arange(32))
    learner.beta = torch.linspace(1.0, 5.0, 32)
    with torch.no_grad():
        advantage = net.critic_target(batch["obs"], batch["actions"]).min(0).values - net.v(batch["obs"])
        log_prob = net.actor.log_prob(learner.policy_obs(batch["obs"]), batch["actions"])
        expected = awr_loss(log_prob, advantage, learner.beta, 100.0)
        iql_default = awr_loss(log_prob, advantage, 3.0, 100.0)
    reported = IQLLearner.losses(learner, net, batch)[1]["actor_loss"]  # IQL's losses, this β in place
    assert reported.item() == pytest.approx(expected.item(), rel=1e-5)
    assert reported.item() != pytest.approx(iql_default.item(), rel=1e-3)


def test_cql_variant_weighs_q_in_the_actor_loss_by_beta() -> None:
    learner = learner_on_random_transitions(config_class("famo2o_cql")())
    learner.on_phase_start(Phase("offline", 1, "updates"))
    net = learner.net
    obs = torch.as_tensor(random_transitions(32).obs)
    learner.beta = torch.linspace(0.5, 1.5, 32)
    alpha = torch.tensor(0.2)
    torch.manual_seed(3)
    pi_loss = learner.policy_losses(obs, alpha)[0]
    torch.manual_seed(3)
    actions, logp = net.actor.sample(learner.policy_obs(obs))
    q = net.critic(obs, actions).min(0).values
    assert pi_loss.item() == pytest.approx(universal_actor_loss(logp, q, alpha, learner.beta).item(), rel=1e-5)


def test_online_states_record_the_beta_the_policy_acted_with() -> None:
    learner = learner_on_random_transitions(config_class("famo2o_iql")())
    learner.on_phase_start(Phase("online", 1, "env_steps"))
    assert learner.drain_distributions() == {}
    rows = random_transitions(10)
    columns = {"obs": rows.obs, "actions": rows.actions, "rewards": rows.rewards, "new_obs": rows.new_obs,
               "terminateds": rows.terminateds.astype(np.float32)}
    learner.add_online({k: v[:6] for k, v in columns.items()})
    learner.add_online({k: v[6:] for k, v in columns.items()})
    summaries = learner.drain_summaries()
    values, span = learner.drain_distributions()["online/beta"]
    with torch.no_grad():
        obs = torch.as_tensor(rows.obs)
        chosen = learner.net.balance.mode(obs).numpy()
        value = learner.net.critic_target(obs, learner.net.act(obs)).min(0).values.numpy()
    np.testing.assert_allclose(values, chosen, rtol=1e-6)
    assert span == (1.0, 5.0) and learner.drain_distributions() == {}, "drained"
    assert summaries["online/beta_value_corr"] == pytest.approx(np.corrcoef(chosen, value)[0, 1], abs=1e-5)
    assert learner.drain_summaries() == {}, "drained"


def test_defaults_follow_the_released_code() -> None:
    iql, cql = config_class("famo2o_iql")(), config_class("famo2o_cql")()
    assert (iql.beta_range, iql.balance_target_entropy, iql.expectile) == ([1.0, 5.0], -0.5, 0.7)
    assert (cql.beta_range, cql.balance_target_entropy, cql.cql_alpha, cql.actor_lr) == ([0.5, 1.5], None, 1.0, 3e-4)
    for config in (iql, cql):
        assert config.beta_source == "uniform" and config.for_phase("online").beta_source == "balance"
        assert (config.beta_encoding_dim, config.beta_encoding_base) == (6, 10000.0)


@pytest.mark.parametrize(
    ("name", "training", "message"),
    [
        ("famo2o_iql", {"beta_range": [5.0, 1.0]}, "beta_range must be [low, high] with 0 <= low < high, got [5.0, 1.0]"),
        ("famo2o_cql", {"beta_range": [1.0]}, "beta_range must be [low, high]"),
        ("famo2o_iql", {"beta_encoding_dim": 5}, "beta_encoding_dim must be an even number >= 2, got 5"),
        ("famo2o_iql", {"temperature": 10.0}, "temperature cannot take effect in FamO2O on IQL"),
        (
            "famo2o_cql",
            {"phase_overrides": {"online": {"beta_source": "greedy"}}},
            "beta_source must be one of uniform, balance in phase_overrides['online'], got 'greedy'",
        ),
        ("famo2o_cql", {"phase_overrides": {"online": {"beta_range": [1.0, 2.0]}}}, "cannot change beta_range"),
        ("famo2o_iql", {"balance_lr": 0.0}, "balance_lr and balance_temperature_lr must be > 0"),
        ("famo2o_cql", {"initial_balance_temperature": 0.5}, "initial_balance_temperature cannot take effect with balance_target_entropy None"),
        ("famo2o_iql", {"balance_target_entropy": None, "phase_overrides": {"online": {"balance_temperature_lr": 1e-4}}}, "balance_temperature_lr cannot take effect"),
    ],
)
def test_settings_that_cannot_take_effect_are_refused(name: str, training: dict, message: str) -> None:
    config = config_class(name)().environment("Hopper-v5").training(**training)
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
