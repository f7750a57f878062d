"""PEX's policy composition on hand-computed cases (softmax(10·Q) selection probabilities, the
ε-greedy evaluation choice), that online the new policy's AWR imitates the candidate the critics
prefer (`offline_policy_share`), what the online start does to the policy set (the trained actor
frozen as the offline policy, a fresh new actor, fresh Adam state), that the frozen policy gets
no gradient online, what its module gives EnvRunners, and its defaults. No Ray session needed."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from torch import nn

from o2o.algorithms.pex import PEXConfig
from o2o.algorithms.pex.learner import PEXLearner
from o2o.algorithms.pex.module import PEXModule, epsilon_greedy, selection_probabilities
from o2o.platform.engine import Phase
from o2o.platform.networks import QEnsemble
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions, random_transitions

COLUMNS = ("obs", "actions", "rewards", "new_obs", "terminateds")


def test_selection_probabilities_are_softmax_of_ten_times_q() -> None:
    q = torch.tensor([[1.0, 1.1], [2.0, 2.0], [0.5, 0.0]])  # (states, [offline, new])
    probs = selection_probabilities(q, inverse_temperature=10.0)
    e = math.e
    expected = torch.tensor(
        [
            [1 / (1 + e), e / (1 + e)],  # ΔQ = 0.1 → logits 10 and 11
            [0.5, 0.5],  # equal values: a fair coin
            [1 / (1 + e**-5), e**-5 / (1 + e**-5)],  # ΔQ = −0.5 → 0.9933 for the offline action
        ]
    )
    torch.testing.assert_close(probs, expected)
    uniform = selection_probabilities(q, inverse_temperature=0.0)
    torch.testing.assert_close(uniform, torch.full((3, 2), 0.5), msg="α = 0 ignores Q")


def test_epsilon_greedy_samples_with_probability_epsilon() -> None:
    torch.manual_seed(0)
    sampled, greedy = torch.ones(10000, 2), torch.zeros(10000, 2)
    assert torch.equal(epsilon_greedy(sampled, greedy, 0.0), greedy), "ε = 0 is greedy"
    assert torch.equal(epsilon_greedy(sampled, greedy, 1.0), sampled), "ε = 1 always samples"
    mixed = epsilon_greedy(sampled, greedy, 0.1)
    assert torch.equal(mixed[:, 0], mixed[:, 1]), "a row is taken whole from one of the two"
    assert mixed[:, 0].mean().item() == pytest.approx(0.1, abs=0.01)


class SignCritic(nn.Module):
    """Q(s, a) = 0.05·sign(a) for every critic: the positive candidate is worth 0.1 more."""

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return 0.05 * torch.sign(actions.sum(-1)).expand(2, -1)


def constant_actor_(actor: nn.Module, mean: float, log_std: float) -> None:
    """Make a GaussianActor's mean `mean` in every state, with the given log-std."""
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.fill_(math.atanh(mean))
        actor.log_std.fill_(log_std)


def runner_module(**training: object) -> PEXModule:
    """The module an EnvRunner builds (inference only), Hopper-sized observations, one action."""
    config = PEXConfig().training(**training)
    return PEXModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        inference_only=True,
        model_config=config.network_config(),
    )


def test_composed_policy_explores_by_softmax_and_evaluates_greedily() -> None:
    torch.manual_seed(0)
    module = runner_module(eval_epsilon=0.0)
    module.critic = SignCritic()
    constant_actor_(module.offline_actor, 0.05, 0.0)  # the offline policy's mean: +0.05, Q = +0.05
    constant_actor_(module.actor, -0.05, -5.0)  # the new policy: −0.05 ± 0.007, Q = −0.05
    obs = torch.randn(40000, 3)

    actions, choice = module.compose(obs, epsilon=1.0)
    # P(new) = e^{10·(−0.05)} / (e^{10·0.05} + e^{10·(−0.05)}) = 1/(1 + e) = 0.2689.
    assert choice.float().mean().item() == pytest.approx(1 / (1 + math.e), abs=0.01)
    assert torch.allclose(actions[choice == 0], torch.tensor(0.05)), "the offline candidate is its mean"
    assert (actions[choice == 1] < 0).all() and not torch.equal(
        actions[choice == 1], torch.full_like(actions[choice == 1], -0.05)
    ), "exploration samples the new policy"

    batch = {Columns.OBS: obs[:100]}
    offline_only = module.forward_inference(batch)[Columns.ACTIONS]
    torch.testing.assert_close(offline_only, torch.full((100, 1), -0.05), msg="before expansion: IQL's actor")
    module.expanded.fill_(True)
    greedy = module.forward_inference(batch)[Columns.ACTIONS]
    torch.testing.assert_close(greedy, torch.full((100, 1), 0.05), msg="ε = 0 evaluation takes the higher Q")
    explored = module.forward_exploration({Columns.OBS: obs})[Columns.ACTIONS]
    assert (explored < 0).float().mean().item() == pytest.approx(1 / (1 + math.e), abs=0.01)


def test_envrunner_module_holds_both_actors_and_the_critic() -> None:
    module = runner_module()
    assert {k.split(".")[0] for k in module.state_dict()} == {
        "actor",
        "offline_actor",
        "critic",
        "obs_normalizer",
        "expanded",
    }, "EnvRunners score the two candidates with Q; V and the target critic stay on the learner"
    module.train()
    assert module.actor.training and not module.offline_actor.training, "the frozen policy never drops units"


def pex_learner() -> PEXLearner:
    """A learner after 4 offline IQL updates on random Hopper-shaped data."""
    learner = learner_on_random_transitions(PEXConfig().o2o(online_env_steps=100))
    learner.on_phase_start(Phase("offline", 4, "updates"))
    learner.run_updates(4, Sampling("offline"))
    return learner


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_online_start_freezes_the_trained_actor_and_restarts_a_fresh_one() -> None:
    learner = pex_learner()
    net = learner.net
    keys, trained = list(net.state_dict()), state(net.actor)
    assert not net.expanded and learner.optimizer.state, "offline: IQL with its Adam moments"

    learner.on_phase_start(Phase("online", 100, "env_steps"))
    assert net.expanded
    for key, value in state(net.offline_actor).items():
        assert torch.equal(value, trained[key]), f"the frozen policy is the offline actor ({key})"
    assert all(not p.requires_grad for p in net.offline_actor.parameters())
    fresh = state(net.actor)
    for key in trained:
        if key.endswith("weight"):
            assert not torch.equal(fresh[key], trained[key]), f"the new policy is re-initialised ({key})"
    assert torch.equal(fresh["log_std"], torch.zeros(3)), "a fresh GaussianActor's σ is 1"
    assert list(net.state_dict()) == keys, "checkpoints and EnvRunner weight pairs keep one layout"
    assert not learner.optimizer.state, "the authors' online run starts with new optimizers"


def test_frozen_policy_gets_no_gradient_and_the_new_one_learns_online() -> None:
    learner = pex_learner()
    net = learner.net
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    frozen, fresh = state(net.offline_actor), state(net.actor)
    optimized = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in net.offline_actor.parameters()}, "no optimizer holds the frozen policy"

    rows = random_transitions(64)
    learner.add_online({k: getattr(rows, k) for k in COLUMNS})
    metrics = learner.run_updates(4, Sampling("ratio", 0.5))
    assert all(p.grad is None for p in net.offline_actor.parameters()), "the frozen policy gets no gradient"
    for key, value in state(net.offline_actor).items():
        assert torch.equal(value, frozen[key]), f"the frozen policy stays as it was ({key})"
    assert any(not torch.equal(v, fresh[k]) for k, v in state(net.actor).items()), "π_new learns"
    assert "offline_policy_share" in metrics, "online, π_new imitates the composed policy"
    assert learner.hp.awr_actions == "composite" and learner.hp.actor_lr_schedule == "constant"


def linear_critic_(critic: QEnsemble, obs_dim: int, slope: float) -> None:
    """Make every member of a real QEnsemble compute Q(s, a) = slope·Σ_j a_j: one ReLU unit per
    layer carries Σa + 10 (positive for actions in [−1, 1]); the output removes the offset."""
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
        first, *rest = critic.linears
        first.weight[:, obs_dim:, 0] = 1.0
        first.bias[:, :, 0] = 10.0
        for linear in rest:
            linear.weight[:, 0, 0] = 1.0
        critic.out.weight[:, 0, 0] = slope
        critic.out.bias.fill_(-10.0 * slope)


@pytest.mark.parametrize(("slope", "share"), [(1.0, 1.0), (-1.0, 0.0)], ids=["offline-higher", "new-higher"])
def test_offline_policy_share_follows_the_critics(slope: float, share: float) -> None:
    learner = pex_learner()
    net = learner.net
    learner.on_phase_start(Phase("online", 100, "env_steps"))
    constant_actor_(net.offline_actor, 0.5, 0.0)  # π_offline proposes (0.5, 0.5, 0.5): Σa = 1.5
    constant_actor_(net.actor, -0.5, -5.0)  # π_new samples ≈ (−0.5, −0.5, −0.5): Σa ≈ −1.5
    linear_critic_(net.critic, net.observation_space.shape[0], slope)
    # Q(offline) − Q(new) ≈ 3·slope; at α = 10, P(offline) = 1/(1 + e^{−30·slope}): 1 − 1e−13 or 1e−13.
    metrics = learner.run_updates(4, Sampling("offline"))
    assert metrics["offline_policy_share"] == pytest.approx(share, abs=1e-6)


def test_defaults_follow_the_authors_code() -> None:
    config = PEXConfig()
    assert (config.inverse_temperature, config.eval_epsilon) == (10.0, 0.1)
    assert (config.sampling_rule, config.offline_fraction) == ("ratio", 0.5), "half dataset, half online"
    assert (config.learning_starts, config.random_steps) == (5000, 0), "5k steps by the composed policy first"
    assert config.for_phase("offline").awr_actions == "replay", "offline is IQL unchanged"
    assert config.for_phase("online").awr_actions == "composite"


def test_fields_survive_the_config_dict_round_trip_tune_makes() -> None:
    # Tune rebuilds the config with `update_from_dict`, which sends `evaluation_*` keys to
    # `.evaluation()`; PEX's fields must come back as set.
    settings = {"inverse_temperature": 3.0, "eval_epsilon": 0.0, "awr_actions": "composite"}
    config = PEXConfig().training(**settings)
    rebuilt = PEXConfig().update_from_dict(config.to_dict())
    assert {k: getattr(rebuilt, k) for k in settings} == settings


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"phase_overrides": {"online": {"inverse_temperature": 1.0}}}, "inverse_temperature"),
        ({"phase_overrides": {"online": {"awr_actions": "dataset"}}}, "awr_actions"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(setting: dict, message: str) -> None:
    config = PEXConfig().environment("Hopper-v5").o2o(online_env_steps=10, **setting)
    with pytest.raises(ValueError, match=message):
        config.validate()
