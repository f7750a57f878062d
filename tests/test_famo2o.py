"""FamO2O in a real trial (Ray, Hopper-v5, a factory dataset): online, every iteration reports
the β its policy chose in the states it visited, as metrics, and as a histogram on the iterations
it evaluates; the run is tagged with the composed algorithm's registry name."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.algorithms import config_class

from helpers import on_dataset

pytestmark = pytest.mark.usefixtures("ray_session")


def test_online_iterations_report_the_chosen_beta(hopper_random) -> None:
    config = (
        on_dataset(
            config_class("famo2o_iql")(),
            hopper_random,
            offline_updates=100,
            online_env_steps=180,
            updates_per_iteration=100,
            env_steps_per_iteration=60,
        )
        .training(train_batch_size_per_learner=64, beta_range=[2.0, 4.0])
        .evaluation(evaluation_interval=3, evaluation_duration=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        offline = algo.train()
        assert "o2o_histograms" not in offline and "online/beta_mean" not in offline["o2o"], "no online states yet"
        assert offline["o2o_tags"]["o2o.algorithm"] == "famo2o_iql"
        assert 2.0 <= offline["o2o"]["offline/beta_mean"] <= 4.0
        unevaluated, evaluated = algo.train(), algo.train()  # iterations 2 and 3 (RLlib's interval)
        for result in (unevaluated, evaluated):
            assert 2.0 <= result["o2o"]["online/beta_mean"] <= 4.0 and result["o2o"]["online/beta_std"] > 0.0
            assert "online/beta_value_corr" in result["o2o"], "β against the states' value, every online iteration"
        assert "o2o_histograms" not in unevaluated and "eval/return_mean" not in unevaluated["o2o"]
        histogram = evaluated["o2o_histograms"]["online/beta"]
        assert sum(histogram["counts"]) == 60, "one β per online state of the iteration"
        np.testing.assert_allclose([histogram["edges"][0], histogram["edges"][-1]], [2.0, 4.0])
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1 == 21
        centres = (np.array(histogram["edges"][1:]) + histogram["edges"][:-1]) / 2
        mean_of_bins = float(np.dot(centres, histogram["counts"]) / 60)
        assert mean_of_bins == pytest.approx(evaluated["o2o"]["online/beta_mean"], abs=0.05), "the same states"
    finally:
        algo.stop()
