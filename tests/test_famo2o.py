"""FamO2O in a real trial (Ray, Hopper-v5, a factory dataset): online, every iteration reports
the β its policy chose in the states it visited, as metrics, and as a histogram on the iterations
it evaluates; the run is tagged with the composed algorithm's registry name."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.algorithms import config_class

from helpers import on_dataset

pytestmark = pytest.mark.usefixtures("ray_session")


def _per_seed(result: dict, key: str, k: int) -> list:
    """`key` of each seed's metrics ("o2o", or "o2o_seeds" in a K-seed trial)."""
    return [result["o2o"][key]] if k == 1 else [seed[key] for seed in result["o2o_seeds"]]


def _histograms(result: dict, k: int) -> list[dict] | None:
    """Each seed's histograms, None where the result has none."""
    histograms = result.get("o2o_histograms") if k == 1 else result.get("o2o_histograms_seeds")
    return None if histograms is None else ([histograms] if k == 1 else histograms)


@pytest.mark.parametrize("k", [1, 2])
def test_online_iterations_report_the_chosen_beta(hopper_random, k: int) -> None:
    """With `seeds_per_trial: 2` each seed reports the β of its own policy in its own states."""
    config = (
        on_dataset(
            config_class("famo2o_iql")(),
            hopper_random,
            offline_updates=100,
            online_env_steps=180,
            updates_per_iteration=100,
            env_steps_per_iteration=60,
            seeds_per_trial=k,
        )
        .training(train_batch_size_per_learner=64, beta_range=[2.0, 4.0])
        .evaluation(evaluation_interval=3, evaluation_duration=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        offline = algo.train()
        assert _histograms(offline, k) is None and "online/beta_mean" not in offline["o2o"], "no online states yet"
        assert offline["o2o_tags"]["o2o.algorithm"] == "famo2o_iql"
        assert all(2.0 <= b <= 4.0 for b in _per_seed(offline, "offline/beta_mean", k))
        unevaluated, evaluated = algo.train(), algo.train()  # iterations 2 and 3 (RLlib's interval)
        for result in (unevaluated, evaluated):
            assert all(2.0 <= b <= 4.0 for b in _per_seed(result, "online/beta_mean", k))
            assert all(s > 0.0 for s in _per_seed(result, "online/beta_std", k))
            assert len(_per_seed(result, "online/beta_value_corr", k)) == k, "β against the states' value, every online iteration"
        assert _histograms(unevaluated, k) is None and "eval/return_mean" not in unevaluated["o2o"]
        means = _per_seed(evaluated, "online/beta_mean", k)
        for seed, mean in zip(_histograms(evaluated, k), means, strict=True):
            histogram = seed["online/beta"]
            assert sum(histogram["counts"]) == 60, "one β per online state of the iteration"
            np.testing.assert_allclose([histogram["edges"][0], histogram["edges"][-1]], [2.0, 4.0])
            assert len(histogram["edges"]) == len(histogram["counts"]) + 1 == 21
            centres = (np.array(histogram["edges"][1:]) + histogram["edges"][:-1]) / 2
            assert float(np.dot(centres, histogram["counts"]) / 60) == pytest.approx(mean, abs=0.05), "the same states"
        if k == 2:
            assert means[0] != means[1], "each seed's own policy and states"
    finally:
        algo.stop()
