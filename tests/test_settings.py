"""Settings take effect or are refused: a phase's learning rates reach every optimizer, fields fixed
when the networks are built are refused as phase overrides, a fractional UTD ratio runs exactly
utd × env steps updates, actions live in [−1, 1] whatever the env's bounds, and RLPD's SAC steps
its actor once per env step."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from o2o.algorithms import REGISTRY, config_class
from o2o.algorithms.sac import SACConfig
from o2o.platform.engine import Phase
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions, random_transitions

RATE_FIELDS: dict[str, dict[str, str]] = {
    "apl": {"critic": "lr", "actor": "lr"},
    "awac": {"critic": "lr", "actor": "lr"},
    "baq_td3bc": {"critic": "lr", "actor": "lr", "behaviour": "lr"},
    "calql": {"critic": "lr", "actor": "actor_lr", "alpha": "alpha_lr", "cql_multiplier": "lr"},
    "cql": {"critic": "lr", "actor": "actor_lr", "alpha": "alpha_lr", "cql_multiplier": "lr"},
    "e2o": {"critic": "lr", "actor": "actor_lr", "alpha": "alpha_lr", "cql_multiplier": "lr"},
    "famo2o_cql": {
        "critic": "lr", "actor": "actor_lr", "alpha": "alpha_lr", "cql_multiplier": "lr",
        "balance": "balance_lr", "balance_temperature": "balance_temperature_lr",
    },
    "famo2o_iql": {
        "value": "lr", "critic": "lr", "actor": "lr", "balance": "balance_lr", "balance_temperature": "balance_temperature_lr",
    },
    "iql": {"value": "lr", "critic": "lr", "actor": "lr"},
    "opt_spot": {"critic": "lr", "actor": "actor_lr", "vae": "vae_lr", "critic_online": "lr"},
    "opt_td3bc": {"critic": "lr", "actor": "lr", "critic_online": "lr"},
    "pex": {"value": "lr", "critic": "lr", "actor": "lr"},
    "sac": {"critic": "lr", "actor": "lr", "alpha": "alpha_lr"},
    "spot": {"critic": "lr", "actor": "actor_lr", "vae": "vae_lr"},
    "td3": {"critic": "lr", "actor": "lr"},
    "td3bc": {"critic": "lr", "actor": "lr"},
}
"""Per algorithm: each optimizer parameter group and the config field that sets its step size."""


def test_every_algorithm_has_its_rates_listed() -> None:
    assert set(RATE_FIELDS) == set(REGISTRY), "a new algorithm lists its parameter groups' rate fields here"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_phase_override_of_every_learning_rate_reaches_the_optimizer(name: str) -> None:
    fields = sorted(set(RATE_FIELDS[name].values()))
    online_rates = {field: 1e-5 * (i + 2) for i, field in enumerate(fields)}  # distinct, unlike any default
    config = config_class(name)()
    config.phase_overrides = {**config.phase_overrides, "online": {**config.phase_overrides.get("online", {}), **online_rates}}
    learner = learner_on_random_transitions(config)
    learner.on_phase_start(Phase("offline", 10, "updates"))
    offline = {g["name"]: g["lr"] for opt in learner._named_optimizers.values() for g in opt.param_groups}
    defaults = {group: getattr(config, field) for group, field in RATE_FIELDS[name].items()}
    assert offline == {group: config.lr if rate is None else rate for group, rate in defaults.items()}  # SPOT: None is lr

    learner.on_phase_start(Phase("online", 10, "env_steps"))
    learner.run_updates(2, Sampling("union"))
    online = {g["name"]: g["lr"] for opt in learner._named_optimizers.values() for g in opt.param_groups}
    assert online == {group: online_rates[field] for group, field in RATE_FIELDS[name].items()}


def test_a_restored_learner_takes_its_phase_rates() -> None:
    config = config_class("iql")().training(phase_overrides={"online": {"lr": 7e-5}})
    learner = learner_on_random_transitions(config)
    learner.on_phase_start(Phase("online", 10, "env_steps"))
    state = learner.get_state()
    fresh = learner_on_random_transitions(config_class("iql")().training(phase_overrides={"online": {"lr": 7e-5}}))
    fresh.on_phase_start(Phase("offline", 10, "updates"))
    fresh.set_state(state)
    assert {g["lr"] for g in fresh.optimizer.param_groups} == {7e-5}


@pytest.mark.parametrize(
    ("name", "override", "reason"),
    [
        ("iql", {"hidden_sizes": [64, 64]}, "networks are built once"),
        ("cql", {"critic_hidden_sizes": [64, 64]}, "networks are built once"),
        ("sac", {"num_critics": 10}, "networks are built once"),
        ("iql", {"actor_dropout": 0.1}, "networks are built once"),
        ("spot", {"vae_latent_dim": 4}, "networks are built once"),
        ("pex", {"inverse_temperature": 1.0}, "networks are built once"),
        ("td3", {"critic_layer_norm": True}, "networks are built once"),
        ("td3bc", {"online_buffer_capacity": 10}, "allocated once"),
        ("iql", {"reward_normalization": "none"}, "rescaled once"),
        ("td3bc", {"normalize_observations": False}, "standardized once"),
    ],
)
def test_a_phase_override_of_a_field_fixed_at_build_is_refused(name: str, override: dict, reason: str) -> None:
    config = config_class(name)().environment("Hopper-v5").o2o(online_env_steps=10)
    config.phase_overrides = {"online": override}
    with pytest.raises(ValueError, match=rf"phase_overrides\['online'\] cannot change {next(iter(override))} \(.*{reason}"):
        config.validate()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_critic_widths_shape_the_value_networks_and_leave_the_actor(name: str) -> None:
    """`critic_hidden_sizes` (E2O's 3×256 critics beside a 2×256 actor) builds every critic of
    the ensemble, its targets and V where the method has one, with those widths; the actor
    keeps `hidden_sizes`. Unset, the critics take `hidden_sizes`."""
    wide = learner_on_random_transitions(config_class(name)().o2o(hidden_sizes=[32, 32], critic_hidden_sizes=[48, 48, 48]))
    plain = learner_on_random_transitions(config_class(name)().o2o(hidden_sizes=[32, 32], critic_hidden_sizes=None))

    def widths(module: torch.nn.Module) -> list[int]:
        """Output widths of its linear maps, batched (the ensemble's einsum weights) or not."""
        return [p.shape[-1] for n, p in module.named_parameters() if n.endswith("bias")]

    for learner, critic in ((wide, [48, 48, 48, 1]), (plain, [32, 32, 1])):
        net = learner.net
        assert widths(net.critic) == critic and widths(net.critic_target) == critic
        if hasattr(net, "value"):
            assert widths(net.value) == critic
        assert widths(net.actor)[:-1] == [32, 32], "the actor's hidden layers"


def test_critic_widths_are_refused_unless_a_list_of_positive_widths() -> None:
    for bad in ([], [256, 0], 256):
        config = config_class("sac")().environment("Hopper-v5").o2o(critic_hidden_sizes=bad)
        with pytest.raises(ValueError, match=r"critic_hidden_sizes must be a non-empty list of positive layer widths"):
            config.validate()


def test_a_phase_override_equal_to_the_built_value_is_accepted() -> None:
    config = config_class("td3bc")().environment("Hopper-v5").o2o(online_env_steps=10)
    config.phase_overrides = {"online": {"normalize_observations": True, "hidden_sizes": [256, 256], "lr": 1e-4}}
    config.validate()


def online_sac(**training) -> SACConfig:  # noqa: ANN003 - SAC's fields
    """SAC online only on Hopper-v5 from the first step, without a dataset, no evaluation."""
    return (
        SACConfig()
        .environment("Hopper-v5")
        .o2o(online_env_steps=20, env_steps_per_iteration=10, random_steps=0, learning_starts=0, hidden_sizes=[32, 32])
        .training(train_batch_size_per_learner=16, **training)
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(("utd", "expected"), [(0.5, (5, 10)), (2.5, (25, 50)), (0.3, (3, 6))])
def test_a_fractional_utd_ratio_runs_exactly_utd_times_the_env_steps(utd: float, expected: tuple[int, int]) -> None:
    algo = online_sac(utd_ratio=utd).build_algo()
    try:
        first = algo.train()["o2o"]["counters/updates"]
        last = algo.train()["o2o"]["counters/updates"]
    finally:
        algo.stop()
    assert (first, last) == expected, "updates after 10 and 20 env steps"


def test_dataset_actions_enter_the_replay_in_unit_bounds() -> None:
    """Pendulum's torque lies in [−2, 2]; the store holds it halved, as the policies act."""
    env = gym.make("Pendulum-v1")
    config = config_class("td3bc")().environment("Pendulum-v1").training(train_batch_size_per_learner=8).debugging(seed=0)
    learner = config.build_learner(env=env)
    hopper = random_transitions(200)
    torque = np.random.default_rng(1).uniform(-2.0, 2.0, (200, 1)).astype(np.float32)
    data = dataclasses.replace(hopper, obs=hopper.obs[:, :3].copy(), new_obs=hopper.new_obs[:, :3].copy(), actions=torque)
    learner.build_replay(data, 3, 1)
    stored = learner.replay.gather(torch.arange(200))["actions"].numpy()
    np.testing.assert_allclose(stored, torque / 2.0, rtol=0, atol=1e-6)


def test_rlpd_steps_the_actor_and_temperature_once_per_env_step() -> None:
    config = SACConfig().training(utd_ratio=4, policy_update_per_env_step=True, target_entropy_per_dim=-0.5)
    learner = learner_on_random_transitions(config)
    learner.on_phase_start(Phase("online", 10, "env_steps"))
    net = learner.net

    def policy() -> list[torch.Tensor]:
        return [p.detach().clone() for p in [*net.actor.parameters(), net.log_alpha]]

    before = policy()
    critic_before = [p.detach().clone() for p in net.critic.parameters()]
    metrics = learner.run_updates(3, Sampling("offline"))
    assert all(torch.equal(a, b) for a, b in zip(before, policy())), "the first 3 of 4 updates leave the actor and α"
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, net.critic.parameters())), "but step the critics"
    assert "actor_loss" not in metrics
    metrics = learner.run_updates(1, Sampling("offline"))
    assert not any(torch.equal(a, b) for a, b in zip(before, policy())), "the 4th steps the actor and α"
    assert "actor_loss" in metrics and "entropy" in metrics
    assert learner.target_entropy == -1.5, "RLPD's target entropy is −|A|/2 (Hopper: |A| = 3)"


def test_sac_steps_the_actor_on_every_update_by_default() -> None:
    learner = learner_on_random_transitions(SACConfig().training(utd_ratio=4))
    learner.on_phase_start(Phase("online", 10, "env_steps"))
    before = [p.detach().clone() for p in learner.net.actor.parameters()]
    learner.run_updates(1, Sampling("offline"))
    assert not any(torch.equal(a, b) for a, b in zip(before, learner.net.actor.parameters()))
    assert learner.target_entropy == -3.0


def test_cql_refuses_rlpds_actor_schedule() -> None:
    config = config_class("cql")().environment("Hopper-v5").o2o(online_env_steps=10).training(policy_update_per_env_step=True)
    with pytest.raises(ValueError, match="policy_update_per_env_step is RLPD's SAC schedule"):
        config.validate()
