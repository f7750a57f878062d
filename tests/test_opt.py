"""OPT in a real trial (Ray, Hopper-v5, a factory dataset): its phases run in order with their
budgets — the collection steps the env without updating anything, pre-training moves Q_on and
nothing else, neither is evaluated — and fine-tuning reports κ on its ramp and both critics."""

from __future__ import annotations

import json

import pytest
import torch

from o2o.algorithms import config_class

from helpers import on_dataset

pytestmark = pytest.mark.usefixtures("ray_session")


def networks(algo) -> dict[str, dict[str, torch.Tensor]]:  # noqa: ANN001
    net = algo.learner_group._learner.net
    return {
        name: {k: v.detach().clone() for k, v in getattr(net, name).state_dict().items()}
        for name in ("actor", "critic", "critic_online")
    }


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_phases_run_in_order_and_touch_what_they_should(hopper_random) -> None:
    config = (
        on_dataset(
            config_class("opt_td3bc")(),
            hopper_random,
            offline_updates=100,
            online_env_steps=100,
            updates_per_iteration=100,
            env_steps_per_iteration=50,
        )
        .training(
            train_batch_size_per_learner=64, collection_env_steps=100, pretraining_updates=200,
            kappa_start=0.2, kappa_end=0.6, kappa_env_steps=100,
        )
        .evaluation(evaluation_interval=1, evaluation_duration=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        offline = algo.train()
        assert "eval/return_mean" in offline["o2o"], "the offline end is evaluated"
        assert json.loads(offline["o2o_tags"]["o2o.phases"]) == [
            ["offline", 100, "updates"], ["online_collection", 100, "env_steps"],
            ["online_pretraining", 200, "updates"], ["online", 100, "env_steps"],
        ]
        after_offline = networks(algo)

        collection = [algo.train(), algo.train()]
        for result in collection:
            assert "eval/return_mean" not in result["o2o"], "collection does not change the policy: not scored"
            assert result["o2o"]["counters/updates"] == 100, "collection runs no update"
        assert collection[-1]["o2o"]["counters/env_steps"] == 100
        assert collection[-1]["o2o"]["data/online_transitions"] == 100
        assert all(same(after_offline[k], v) for k, v in networks(algo).items())

        pretraining = [algo.train(), algo.train()]
        assert pretraining[-1]["o2o"]["counters/updates"] == 300 and pretraining[-1]["o2o"]["counters/env_steps"] == 100
        assert all("eval/return_mean" not in r["o2o"] for r in pretraining)
        assert {"online_pretraining/meta_objective", "online_pretraining/online_td_loss"} <= set(pretraining[0]["o2o"])
        after_pretraining = networks(algo)
        assert same(after_offline["actor"], after_pretraining["actor"]) and same(after_offline["critic"], after_pretraining["critic"])
        assert not same(after_offline["critic_online"], after_pretraining["critic_online"]), "Q_on trained"

        first, second = algo.train(), algo.train()
        ran = [r["o2o"]["counters/phase"] for r in (offline, *collection, *pretraining, first, second)]
        assert ran == [0, 1, 1, 2, 2, 3, 3], "each iteration reports the phase it ran (the report's timeline)"
        assert first["o2o"]["counters/updates"] == 300 + 5 * 50, "UTD 5 online"
        assert first["o2o"]["online/kappa"] < second["o2o"]["online/kappa"] <= 0.6
        assert first["o2o"]["online/kappa"] == pytest.approx(0.2 + 0.4 * 25.5 / 100, abs=0.01), "κ from the fine-tuning's own steps"
        assert {"online/online_critic_loss", "online/critic_loss", "eval/return_mean"} <= set(second["o2o"])
        assert second["done"]
    finally:
        algo.stop()
