"""Generators as a plug-in to any base (`generator: edis | cfdg`): the replay's generated region
and its mixing, the settings refused before a trial is built, the authors' per-base settings,
and the generator conformance suite — on real Ray, a real Hopper-v5 and a real factory dataset,
each generator on several bases retrains on the online clock, fills the generated region, feeds
its rows to updates by its schedule, reports its metrics, and restores from a checkpoint to
continue exactly as the uninterrupted trial (a second retrain included)."""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest
import torch

from o2o.algorithms import config_class
from o2o.platform.data import ResolvedDataset
from o2o.platform.engine import O2OAlgorithm, O2OConfig
from o2o.platform.replay import ReplayStore, Sampling, transition_columns

from helpers import on_dataset


def store(n_offline: int = 100, n_online: int = 50, generated: int = 40) -> ReplayStore:
    """A store of obs 2, act 1 with `n_offline` dataset rows (obs = row index), `n_online` online
    rows (obs = 1000 + index) and room for `generated` generated rows."""
    columns = transition_columns(2, 1)

    def rows(values: np.ndarray) -> dict[str, np.ndarray]:
        n = len(values)
        return {
            "obs": np.stack([values, values], 1).astype(np.float32),
            "actions": np.zeros((n, 1), np.float32),
            "rewards": values.astype(np.float32),
            "new_obs": np.zeros((n, 2), np.float32),
            "terminateds": np.zeros(n, np.float32),
        }

    replay = ReplayStore(columns, rows(np.arange(n_offline)), 1000, torch.device("cpu"), seed=0, generated_capacity=generated)
    if n_online:
        replay.add_online(rows(1000 + np.arange(n_online)))
    return replay


def generated_rows(n: int, start: float = 5000.0) -> dict[str, torch.Tensor]:
    values = start + torch.arange(n, dtype=torch.float32)
    return {
        "obs": torch.stack([values, values], 1),
        "actions": torch.zeros(n, 1),
        "rewards": values,
        "new_obs": torch.zeros(n, 2),
        "terminateds": torch.zeros(n),
    }


def test_generated_fraction_draws_that_share_from_the_generated_rows_and_the_rest_by_the_rule() -> None:
    replay = store()
    replay.set_generated(generated_rows(40))
    batch = replay.sample(64, Sampling("online", generated_fraction=0.25))
    rewards = batch["rewards"]
    assert bool((rewards[:16] >= 5000).all()) and bool((rewards[:16] < 5040).all()), "16 of 64 generated rows"
    assert bool((rewards[16:] >= 1000).all()) and bool((rewards[16:] < 1050).all()), "the rest online rows only"
    union = replay.sample(4000, Sampling("union", generated_fraction=0.5))["rewards"]
    assert int((union >= 5000).sum()) == 2000 and bool((union[2000:] < 1050).all())


def test_weighted_generated_rows_are_drawn_in_proportion_to_their_weights() -> None:
    replay = store()
    replay.set_generated(generated_rows(2), weights=torch.tensor([1.0, 3.0]))
    rewards = replay.sample(20_000, Sampling("online", generated_fraction=1.0))["rewards"]
    share = float((rewards == 5001).float().mean())
    assert abs(share - 0.75) < 0.015, share


def test_a_retrain_replaces_the_generated_rows_whole() -> None:
    replay = store()
    replay.set_generated(generated_rows(40))
    replay.set_generated(generated_rows(10, start=7000.0))
    assert replay.n_generated == 10
    rewards = replay.sample(2000, Sampling("online", generated_fraction=1.0))["rewards"]
    assert bool((rewards >= 7000).all()) and bool((rewards < 7010).all())


def test_the_generated_region_round_trips_through_a_checkpoint() -> None:
    replay = store()
    replay.set_generated(generated_rows(30), weights=torch.linspace(1, 2, 30))
    state = replay.get_state()
    restored = store(n_online=0)
    restored.set_state(state)
    sampling = Sampling("ratio", offline_fraction=0.5, generated_fraction=0.5)
    torch.testing.assert_close(restored.sample(256, sampling), replay.sample(256, sampling), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("act", "error", "message"),
    [
        (lambda r: r.sample(8, Sampling("online", generated_fraction=0.5)), RuntimeError, "needs generated rows"),
        (lambda r: r.set_generated(generated_rows(41)), ValueError, "41 generated rows do not fit the store's 40"),
        (lambda r: r.set_generated({"obs": torch.zeros(3, 2)}), KeyError, "generated rows lack columns"),
        (lambda r: r.set_generated(generated_rows(3), weights=torch.tensor([1.0, 0.0, 1.0])), ValueError, "3 positive values"),
        (lambda r: Sampling("balanced", generated_fraction=0.2), ValueError, "generated rows carry no priorities"),
        (lambda r: Sampling("union", generated_fraction=1.5), ValueError, "generated_fraction must lie in [0, 1]"),
    ],
)
def test_the_generated_region_refuses_what_it_cannot_do(act: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        act(store())


def configured(name: str, **fields: Any) -> O2OConfig:
    return config_class(name)().environment("Hopper-v5").offline_data(input_=["unread.parquet"]).o2o(offline_updates=10, **fields)


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("iql", {"energy_negatives": 5}, "energy_negatives cannot take effect: no generator runs"),
        ("iql", {"generated_samples": 5}, "generated_samples cannot take effect: no generator runs"),
        ("iql", {"generator": "edis", "guidance_weight": 3.0}, "guidance_weight cannot take effect: the generator is edis (they are cfdg's)"),
        ("iql", {"generator": "cfdg", "energy_scales": {"state": 1.0, "policy": 0.0, "transition": 0.0}}, "energy_scales cannot take effect: the generator is cfdg"),
        ("calql", {"generator": "edis", "burst_updates": 5}, "burst_updates cannot take effect with generator_schedule mix"),
        ("iql", {"generator": "synther"}, "generator 'synther' is not one of ('edis', 'cfdg')"),
        ("iql", {"generator": "edis", "sampling_rule": "balanced"}, "a generator cannot run beside sampling_rule balanced"),
        ("iql", {"generator": "edis", "phase_overrides": {"online": {"generated_fraction": 0.5}}}, "phase_overrides cannot set generated_fraction"),
        ("iql", {"generator": "edis", "generator_schedule": "always"}, "generator_schedule 'always' is not one of ('mix', 'burst')"),
        ("iql", {"generator": "edis", "generated_fraction": 0.0}, "generated_fraction must lie in (0, 1], got 0.0"),
        ("iql", {"generator": "edis", "energy_scales": {"state": 1.0}}, "energy_scales must give state, policy and transition"),
        ("iql", {"generator": "cfdg", "ratio_clip": 0.5}, "ratio_clip be >= 1"),
        ("iql", {"generator": "cfdg", "generator_landing_iterations": 0}, "generator_landing_iterations must be None or an integer >= 1, got 0"),
        ("iql", {"generator_landing_iterations": 2}, "generator_landing_iterations cannot take effect: no generator runs"),
        ("iql", {"generator": "edis", "online_env_steps": 1000, "env_steps_per_iteration": 300, "generator_retrain_env_steps": 1000},
         "the generator cannot take effect: its first retrain starts with the online iteration at 1200 env steps"),
        ("iql", {"generator": "cfdg", "online_env_steps": 1000, "env_steps_per_iteration": 200, "generator_retrain_env_steps": 500,
                 "generator_landing_iterations": 3}, "its rows land 2 iteration(s) later, past online_env_steps 1000"),
    ],
)
def test_generator_settings_that_cannot_take_effect_are_refused(name: str, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        configured(name, **fields).validate()


def test_a_generator_takes_its_authors_settings_for_the_base_unless_set() -> None:
    iql = configured("iql", generator="edis").generator_settings()
    calql = configured("calql", generator="edis").generator_settings()
    pex = configured("pex", generator="cfdg").generator_settings()
    assert (iql["generator_schedule"], iql["generated_fraction"], iql["generator_train_steps"]) == ("burst", 0.2, 30_000)
    assert (calql["generator_schedule"], calql["generated_fraction"], calql["generator_train_steps"]) == ("mix", 0.5, 10_000)
    assert (pex["generator_schedule"], pex["generated_fraction"]) == ("mix", 1 / 3)
    chosen = configured("iql", generator="edis", generator_schedule="mix", generated_fraction=0.4).generator_settings()
    assert (chosen["generator_schedule"], chosen["generated_fraction"]) == ("mix", 0.4)
    assert configured("iql").generator_settings() == {} and configured("iql", generator="cfdg").algorithm_label == "iql+cfdg"


# --- the generator conformance suite, on real Ray ------------------------------------------------

TINY_GENERATOR = dict(
    generator_retrain_env_steps=50,
    generator_train_steps=40,
    generated_samples=300,
    generator_sample_steps=8,
    generator_width=32,
    generator_depth=1,
    generator_batch_size=32,
    generator_landing_iterations=1,
)
"""A generator small enough for CI: a retrain beside each online iteration of 50 env steps after
the first (one is due when an iteration begins at or past each 50 env steps), its rows landing at
that iteration's end."""
OWN_FIELDS = {"edis": dict(energy_train_steps=3, energy_negatives=4), "cfdg": dict(guidance_weight=2.0)}
BASE_TRAINING = {"calql": {"cql_alpha": 1.0}}
"""As test_conformance.py: Cal-QL's TD error falls at α = 1 on random data."""

PAIRS = [("iql", "edis"), ("calql", "edis"), ("iql", "cfdg"), ("pex", "cfdg"), ("apl", "cfdg")]


def tiny(name: str, generator: str, dataset: ResolvedDataset, **fields: Any) -> O2OConfig:
    """`name` + `generator` at CI size; `fields` replace any of its settings."""
    settings = dict(
        offline_updates=100,
        online_env_steps=150,
        updates_per_iteration=100,
        env_steps_per_iteration=50,
        learning_starts=0,
        random_steps=0,
        generator=generator,
        **TINY_GENERATOR,
        **OWN_FIELDS[generator],
    )
    return (
        on_dataset(config_class(name)(), dataset, **{**settings, **fields})
        .training(train_batch_size_per_learner=32, **BASE_TRAINING.get(name, {}))
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )


def measured(result: dict) -> dict[str, float]:
    return {k: v for k, v in result["o2o"].items() if not k.startswith("perf/")}


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(("name", "generator"), PAIRS)
def test_a_generator_on_a_base_retrains_feeds_updates_and_restores(name: str, generator: str, hopper_random, tmp_path) -> None:
    algo: O2OAlgorithm = tiny(name, generator, hopper_random).build_algo()
    learner = algo.learner_group._learner
    settings = algo.config.generator_settings()
    online_updates = int(50 * algo.config.utd_ratio)  # APL: UTD 10 (its authors')
    try:
        algo.train()  # the offline phase: no retrain, nothing generated
        algo.train()  # online env steps 0-50: no retrain is due as they begin
        assert learner.replay.n_generated == 0 and learner.generator.retrains == 0
        energies = None if generator != "edis" else {k: v.clone() for k, v in learner.generator.guide.nets.state_dict().items()}
        first = algo.train()  # steps 50-100 beside a retrain, whose rows land at the end
        assert learner.generator.retrains == 1 and learner.replay.n_generated == 300
        metrics = first["o2o"]
        for key in ("generator/diffusion_loss", "generator/frechet_online", "generator/reference_frechet_online",
                    "generator/generated_dynamics_mse", "generator/reference_dynamics_mse",
                    "perf/generator/samples_per_s", "perf/generator/wait_s"):
            assert np.isfinite(metrics[key]), key
        if generator == "edis":
            trained = learner.generator.guide.nets.state_dict()
            for energy in ("state", "policy", "transition"):
                moved = [k for k in trained if k.startswith(f"{energy}.") and not torch.equal(trained[k], energies[k])]
                assert moved, f"EDIS trained its {energy} energy in the retrain"
                assert np.isfinite(metrics[f"generator/energy_{energy}_loss"])
        else:
            weights = learner.replay.generated_weights
            assert weights is not None and not torch.allclose(weights, weights[0]), "CFDG weighs its rows by density ratio"
        burst = settings["burst_updates"] if settings["generator_schedule"] == "burst" else 0
        assert ("burst/critic_loss" in metrics) == bool(burst), "IQL-EDIS's burst of updates right after the retrain"
        assert metrics["counters/updates"] == 100 + 2 * online_updates + burst
        if "mc_returns" in learner.replay.columns:
            assert bool(torch.isinf(learner.replay.generated_rows()[:, -1]).all()), "Cal-QL: no return known"
        assert first["o2o_tags"]["o2o.algorithm"] == f"{name}+{generator}"
        assert '"generator_schedule"' in first["o2o_tags"]["o2o.generator"]

        saved = learner.replay.get_state()
        algo.save_to_path(tmp_path / "ckpt")
        uninterrupted = measured(algo.train())  # steps 100-150 on the generated rows, beside a second retrain
        assert learner.generator.retrains == 2
        if not burst:
            assert learner.samplings[0].generated_fraction == pytest.approx(settings["generated_fraction"]), (
                "under mix every online update draws the generated share"
            )
        uninterrupted_rows = learner.replay.generated_rows().clone()
    finally:
        algo.stop()

    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        again = restored.learner_group._learner
        np.testing.assert_array_equal(again.replay.get_state()["generated_rows"], saved["generated_rows"])
        assert again.generator.retrains == 1
        assert measured(restored.train()) == uninterrupted, "the restored trial retrains and continues as the uninterrupted one"
        assert torch.equal(again.replay.generated_rows(), uninterrupted_rows)
    finally:
        restored.stop()


@pytest.mark.usefixtures("ray_session")
def test_a_generator_leaves_its_base_offline_phase_as_it_was(hopper_random) -> None:
    """The same seed gives the same offline weights with and without EDIS, whose energies are
    built before the offline phase (Cal-QL's actor draws from torch's global RNG)."""

    def offline_weights(config: O2OConfig) -> dict[str, torch.Tensor]:
        algo = config.build_algo()
        try:
            algo.train()
            return {k: v.detach().clone() for k, v in algo.learner_group._learner.net.state_dict().items()}
        finally:
            algo.stop()

    base = (
        on_dataset(config_class("calql")(), hopper_random, offline_updates=100, online_env_steps=150,
                   updates_per_iteration=100, env_steps_per_iteration=50)
        .training(train_batch_size_per_learner=32, **BASE_TRAINING["calql"])
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    without, with_edis = offline_weights(base), offline_weights(tiny("calql", "edis", hopper_random))
    for key, value in without.items():
        assert torch.equal(value, with_edis[key]), key


@pytest.mark.usefixtures("ray_session")
def test_rows_land_k_iterations_on_and_a_checkpoint_between_keeps_them(hopper_random, tmp_path) -> None:
    """With `generator_landing_iterations` 3, a retrain started with the iteration at 50 env steps
    lands at the end of the one at 150; a checkpoint taken at 150 holds its finished rows, and
    the restored trial lands them as the uninterrupted one does."""
    algo: O2OAlgorithm = tiny("iql", "cfdg", hopper_random, online_env_steps=250, generator_landing_iterations=3).build_algo()
    learner = algo.learner_group._learner
    try:
        algo.train()  # offline
        algo.train()  # env steps 0-50
        for _ in range(2):  # 50-100 starts the retrain; 100-150 runs beside it
            result = algo.train()
            assert learner.generator.retrains == 1 and learner.replay.n_generated == 0
            assert "generator/diffusion_loss" not in result["o2o"], "no rows landed yet"
        algo.save_to_path(tmp_path / "ckpt")
        landed = algo.train()  # 150-200: the rows land at its end
        assert learner.replay.n_generated == 300 and landed["o2o"]["generator/landing_iterations"] == 3
        uninterrupted = measured(landed)
        uninterrupted_rows = learner.replay.generated_rows().clone()
        algo.train()  # 200-250: the second retrain starts; the trial ends before it lands
        assert learner.generator.retrains == 2
    finally:
        algo.stop()
    assert not learner.generator.retraining, "stopping the trial ends a retrain still running"

    restored = type(algo).from_checkpoint(tmp_path / "ckpt")
    try:
        again = restored.learner_group._learner
        assert again.replay.n_generated == 0 and again.generator.retraining
        assert measured(restored.train()) == uninterrupted, "the restored trial lands the pending rows as the uninterrupted one"
        assert torch.equal(again.replay.generated_rows(), uninterrupted_rows)
    finally:
        restored.stop()


@pytest.mark.usefixtures("ray_session")
def test_by_default_rows_land_once_ready_and_the_trial_never_waits(hopper_random) -> None:
    """With `generator_landing_iterations` None (the default), iterations of 10 env steps go on
    while a retrain of 2000 diffusion steps runs; its rows land at the end of the first iteration
    by which it has finished, so the trial waits for nothing."""
    config = tiny("iql", "cfdg", hopper_random, online_env_steps=5000, env_steps_per_iteration=10,
                  generator_retrain_env_steps=10, generator_train_steps=2000, generator_landing_iterations=None)
    algo: O2OAlgorithm = config.build_algo()
    learner = algo.learner_group._learner
    try:
        algo.train()  # offline
        for _ in range(500):
            result = algo.train()
            if learner.replay.n_generated:
                break
        metrics = result["o2o"]
        assert learner.replay.n_generated == 300
        assert metrics["generator/landing_iterations"] >= 2, "iterations went on beside the retrain"
        assert metrics["perf/generator/wait_s"] < 0.05, "its rows were ready when they landed"
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_stopping_a_trial_ends_its_running_retrain(hopper_random) -> None:
    """A trial stopped while its generator retrains (a million diffusion steps, many minutes here)
    stops in seconds: the retrain ends at its next step."""
    config = tiny("iql", "cfdg", hopper_random, generator_train_steps=1_000_000, generator_landing_iterations=None)
    algo: O2OAlgorithm = config.build_algo()
    learner = algo.learner_group._learner
    try:
        for _ in range(3):  # offline, 0-50, 50-100: the retrain starts
            algo.train()
        assert learner.generator.retraining and not learner.generator.retrain_done()
    finally:
        start = time.perf_counter()
        algo.stop()
        stopped_in = time.perf_counter() - start
    assert stopped_in < 30.0 and not learner.generator.retraining
