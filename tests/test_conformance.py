"""The conformance suite: what every registered algorithm must do on the engine.

An algorithm is done only when it passes here, on real Ray, a real Hopper-v5 and a real
factory dataset: it builds from its config; offline updates change its weights and drive its
critic's TD error (the `critic_loss` metric every learner reports) down; the hand-off gives the
EnvRunner the learner's weights; online steps fill the online buffer; a checkpoint restores the
weights and the buffer exactly and the trial continues as the uninterrupted one does; the same seed reproduces the offline
phase; a NaN loss stops the trial with a clear error (these two on each method's learner built
outside Ray, as the trial builds it, and once through a trial); the EnvRunner's module acts through the
method's `act` and `explore` on the states the learner trained on; two seeds train side by side
in one trial (`seeds_per_trial`) and restore together.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from o2o.algorithms import REGISTRY, config_class
from o2o.platform.data import ResolvedDataset
from o2o.platform.engine import O2OAlgorithm, O2OConfig, Phase
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions, on_dataset

pytestmark = pytest.mark.usefixtures("ray_session")


CONFORMANCE_TRAINING: dict[str, dict] = {
    # Cal-QL's calibrated regularizer pushes dataset Q-values up unopposed while the policy's
    # Q-values sit below their Monte-Carlo floors, so at its default α = 10 its TD error rises
    # over the first few hundred updates on random data by design; α = 1 (the authors' Adroit
    # value) runs the same calibrated code with the TD error falling.
    "calql": {"cql_alpha": 1.0, "num_sampled_actions": 2},
    # CQL's log-sum-exp over 3×10 sampled actions per state is most of its update (~12 s of the
    # case on a CI core); 3×2 actions run the same conservative code.
    "cql": {"num_sampled_actions": 2},
    "famo2o_cql": {"num_sampled_actions": 2},
    # SPOT pre-trains its VAE behaviour model in a phase of its own (100k updates in the paper);
    # 100 updates run that phase here before the offline one.
    "spot": {"vae_pretrain_updates": 100},
    # E2O's 10 critics of 3×256 under CQL's 30 sampled actions per state make an update ~0.3 s
    # on one CI core (the suite would grow by minutes); 3 critics of 2×64 run the same code:
    # the conservative term offline, the weighted min-pair target, the uncertainty weight and
    # UCB exploration online.
    "e2o": {"num_critics": 3, "critic_hidden_sizes": [64, 64]},
    # OPT collects 25k steps and pre-trains Q_on for 50k updates between offline and online;
    # 50 steps and 50 updates run both phases here.
    "opt_td3bc": {"collection_env_steps": 50, "pretraining_updates": 50},
    "opt_spot": {"collection_env_steps": 50, "pretraining_updates": 50, "vae_pretrain_updates": 100},
}
"""Per-algorithm settings for these tiny budgets, each with the reason it is needed."""


def tiny(name: str, dataset: ResolvedDataset, **o2o: Any) -> O2OConfig:
    """Algorithm `name` with budgets small enough for CI: 3 offline iterations of 100 updates,
    then online iterations of 50 env steps from the first step, no evaluation."""
    settings = dict(
        offline_updates=300,
        online_env_steps=150,
        updates_per_iteration=100,
        env_steps_per_iteration=50,
        random_steps=0,
        learning_starts=0,
    )
    settings.update(o2o)
    return (
        on_dataset(config_class(name)(), dataset, **settings)
        .training(train_batch_size_per_learner=64, **CONFORMANCE_TRAINING.get(name, {}))
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )


def weights(algo: O2OAlgorithm) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in algo.learner_group._learner.net.state_dict().items()}


def train_until(algo: O2OAlgorithm, phase: str) -> None:
    """Run the method's own phases (SPOT's VAE pre-training, OPT's online pre-training) until
    `phase` begins; the engine's phases are what the tests below check."""
    while algo.current_phase is not None and algo.current_phase.name != phase:
        algo.train()


def measured(result: dict) -> dict[str, float]:
    """A result's o2o metrics without the timings, which no two runs share."""
    return {k: v for k, v in result["o2o"].items() if not k.startswith("perf/")}


def replay(algo: O2OAlgorithm):  # noqa: ANN201 - ReplayStore
    return algo.learner_group._learner.replay


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_learns_offline_hands_off_and_restores(name: str, hopper_random, tmp_path) -> None:
    algo = tiny(name, hopper_random).build_algo()
    try:
        train_until(algo, "offline")
        before = weights(algo)
        td = [algo.train()["o2o"]["offline/critic_loss"] for _ in range(3)]
        after = weights(algo)
        assert any(not torch.equal(before[k], after[k]) for k in before), "offline updates change weights"
        assert td[-1] < td[0], f"TD error should fall over the offline phase: {td}"

        train_until(algo, "online")
        collected = algo.env_steps  # by a method's own phases before online (OPT's collection)
        assert replay(algo).n_online == collected
        result = algo.train()  # the first online iteration: the hand-off, then 50 env steps
        assert result["o2o"]["counters/env_steps"] == collected + 50
        assert replay(algo).n_online == collected + 50 and replay(algo).n_offline == 3000
        learner_state = algo.learner_group._learner.net.state_dict()
        runner_state = algo.env_runner.module.state_dict()
        assert runner_state, "the EnvRunner holds a module"
        for key, value in runner_state.items():
            assert torch.equal(value, learner_state[key]), f"EnvRunner weight {key} differs from the learner's"

        saved_weights, saved_rows = weights(algo), replay(algo).get_state()["online_rows"]
        algo.save_to_path(tmp_path / "ckpt")
        uninterrupted = measured(algo.train())  # mid-episode: the env's state is in the checkpoint
        uninterrupted_weights = weights(algo)
    finally:
        algo.stop()

    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        for key, value in weights(restored).items():
            assert torch.equal(value, saved_weights[key]), f"restored weight {key} differs"
        np.testing.assert_array_equal(replay(restored).get_state()["online_rows"], saved_rows)
        assert restored.current_phase.name == "online" and restored.env_steps == collected + 50
        result = restored.train()
        assert result["o2o"]["counters/env_steps"] == collected + 100
        assert measured(result) == uninterrupted, "the restored trial continues as the uninterrupted one"
        for key, value in weights(restored).items():
            assert torch.equal(value, uninterrupted_weights[key]), f"weight {key} after the restore differs"
        rows = replay(restored).get_state()["online_rows"]
        assert len(rows) == collected + 100, "the continued trial appends to the restored buffer"
        np.testing.assert_array_equal(rows[: collected + 50], saved_rows)
    finally:
        restored.stop()


def lanes(algo: O2OAlgorithm) -> list:
    return algo.learner_group._learner.lanes


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_two_seeds_in_one_trial_learn_apart_and_restore_together(name: str, hopper_random, tmp_path) -> None:
    """`seeds_per_trial: 2` on every algorithm: it trains two seeds, each with its own networks,
    minibatches, environment and buffer, and a checkpoint brings both back."""
    algo = tiny(name, hopper_random, seeds_per_trial=2).build_algo()
    try:
        train_until(algo, "offline")
        # Every tensor has a seed dimension but a module's trial-wide flags (`seed_shared_buffers`).
        before = {k: v for k, v in weights(algo).items() if v.dim() > 0}
        assert any(not torch.equal(v[0], v[1]) for v in before.values()), "each seed starts from its own weights"
        td = [[r["offline/critic_loss"] for r in algo.train()["o2o_seeds"]] for _ in range(3)]
        after = weights(algo)
        for i in range(2):
            assert any(not torch.equal(before[k][i], after[k][i]) for k in before), f"seed {i}'s weights move"
            assert td[-1][i] < td[0][i], f"seed {i}'s TD error should fall offline: {td}"

        train_until(algo, "online")
        collected = algo.env_steps  # by a method's own phases before online (OPT's collection), per seed
        result = algo.train()
        assert [r["counters/env_steps"] for r in result["o2o_seeds"]] == [collected + 50] * 2
        assert [lane.n_online for lane in lanes(algo)] == [collected + 50] * 2
        rows = [lane.get_state()["online_rows"] for lane in lanes(algo)]
        assert not np.array_equal(rows[0], rows[1]), "each seed steps its own environment"
        saved_weights = weights(algo)
        algo.save_to_path(tmp_path / "ckpt")
        uninterrupted = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in algo.train()["o2o_seeds"]]
        uninterrupted_weights = weights(algo)
    finally:
        algo.stop()

    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        for key, value in weights(restored).items():
            assert torch.equal(value, saved_weights[key]), f"restored weight {key} differs"
        for lane, saved in zip(lanes(restored), rows, strict=True):
            np.testing.assert_array_equal(lane.get_state()["online_rows"], saved)
        continued = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in restored.train()["o2o_seeds"]]
        assert continued == uninterrupted, "each restored seed continues as the uninterrupted one"
        for key, value in weights(restored).items():
            assert torch.equal(value, uninterrupted_weights[key]), f"weight {key} after the restore differs"
    finally:
        restored.stop()


def offline_learner(name: str, **training: Any):  # noqa: ANN201 - the method's O2OLearner
    """Method `name`'s learner as its trial builds it (seed 0), outside Ray, on random
    transitions, in its offline phase."""
    learner = learner_on_random_transitions(config_class(name)().training(**{**CONFORMANCE_TRAINING.get(name, {}), **training}))
    learner.on_phase_start(Phase("offline", 300, "updates"))
    return learner


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_same_seed_same_offline_result(name: str) -> None:
    runs = []
    for _ in range(2):
        learner = offline_learner(name)
        learner.run_updates(100, Sampling("offline"))
        runs.append({k: v.detach().clone() for k, v in learner.net.state_dict().items()})
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_nan_loss_stops_with_a_clear_error(name: str) -> None:
    learner = offline_learner(name, lr=1e30)
    with pytest.raises(FloatingPointError, match="non-finite .* in the offline phase before update"):
        for _ in range(5):
            learner.run_updates(100, Sampling("offline"))


def test_a_trial_repeats_its_offline_phase_and_stops_at_a_nan_loss(hopper_random) -> None:
    """The two above through a trial: RLlib's seeding of the trial's process, and the learner's
    error reaching the caller of `train()`."""
    runs = []
    for _ in range(2):
        algo = tiny("iql", hopper_random, offline_updates=100, online_env_steps=0).build_algo()
        try:
            algo.train()
            runs.append(weights(algo))
        finally:
            algo.stop()
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    algo = tiny("iql", hopper_random).training(lr=1e30).build_algo()
    try:
        with pytest.raises(FloatingPointError, match="non-finite .* in the offline phase"):
            for _ in range(5):
                algo.train()
    finally:
        algo.stop()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_env_runner_module_acts_through_act_and_explore_on_standardized_states(name: str) -> None:
    """RLlib's forwards of the EnvRunner's (inference-only) module are the method's `act` and
    `explore` applied to states standardized by the statistics the learner gave the module."""
    spec = config_class(name)().get_default_rl_module_spec()
    env = gym.make("Hopper-v5")
    module = spec.module_class(
        observation_space=env.observation_space, action_space=env.action_space,
        inference_only=True, model_config=spec.model_config,
    )
    generator = torch.Generator().manual_seed(0)
    mean, std = torch.randn(11, generator=generator), torch.rand(11, generator=generator) + 0.5
    module.obs_normalizer.set(mean.numpy(), std.numpy())
    batch = {Columns.OBS: mean + std * 3 * torch.randn(64, 11, generator=generator)}

    greedy = module.forward_inference(batch)[Columns.ACTIONS]
    with torch.no_grad():  # in eval mode, as RLlib runs the forwards (SPOT's dropout is off)
        expected = module.eval().act((batch[Columns.OBS] - mean) / std)
    torch.testing.assert_close(greedy, expected)
    assert torch.equal(greedy, module.forward_inference(batch)[Columns.ACTIONS]), "evaluation acts deterministically"
    explored = module.forward_exploration(batch)[Columns.ACTIONS]
    assert explored.shape == (64, 3) and explored.abs().max() <= 1.0, "actions lie in Hopper's bounds"
    assert not torch.equal(explored, greedy), "online collection explores around the greedy action"
