"""BAQ in a real trial (Ray, Hopper-v5, a factory dataset): π_β fits the dataset offline and stays
put online, fine-tuning draws by behaviour divergence, and the documented metrics — λ's
distribution, u, the confident share, the priorities' spread — reach the results."""

from __future__ import annotations

import pytest
import torch

from o2o.algorithms import config_class

from helpers import on_dataset

pytestmark = pytest.mark.usefixtures("ray_session")


def behaviour(algo) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {k: v.detach().clone() for k, v in algo.learner_group._learner.net.behaviour.state_dict().items()}


def test_behaviour_model_fits_offline_and_fine_tuning_reports_baq_metrics(hopper_random) -> None:
    config = (
        on_dataset(
            config_class("baq_td3bc")(),
            hopper_random,
            offline_updates=200,
            online_env_steps=100,
            updates_per_iteration=100,
            env_steps_per_iteration=50,
        )
        .training(train_batch_size_per_learner=64, confidence_scale=20.0)
        .evaluation(evaluation_interval=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        first = algo.train()["o2o"]
        second = algo.train()["o2o"]
        assert second["offline/behaviour_nll"] < first["offline/behaviour_nll"], "π_β's likelihood of the data rises"
        after_offline = behaviour(algo)

        online = [algo.train()["o2o"], algo.train()["o2o"]]
        assert all(torch.equal(v, behaviour(algo)[k]) for k, v in after_offline.items()), "π_β is frozen online"
        learner = algo.learner_group._learner
        assert learner.replay.priorities is not None, "fine-tuning draws by behaviour divergence"
        for result in online:
            for key in (
                "online/lambda_mean", "online/lambda_std", "online/policy_uncertainty", "online/uncertainty_ref",
                "online/confident_share", "online/priority_spread", "online/priority_online_mass",
                "online/td_weight_min", "online/consistency_loss", "online/online_share",
            ):
                assert key in result, key
        assert 0 < online[-1]["online/confident_share"] <= 1
        assert online[-1]["online/confident_share"] == pytest.approx(learner.confident[0] / 100), "n_confident over the phase's steps"
        assert online[-1]["online/confidence_decay"] < online[0]["online/confidence_decay"], "λ relaxes with confident steps"
        final_decay = torch.exp(torch.tensor(-learner.confident[0] / 20.0)).item()
        assert final_decay <= online[-1]["online/confidence_decay"] < 1, "the iteration's mean c(t), down to its end's"
    finally:
        algo.stop()
