"""PEX's hyperparameters: IQL's, plus the policy composition and the online replay."""

from __future__ import annotations

from typing import Any

from o2o.algorithms.iql.config import IQLConfig

AWR_ACTIONS = ("replay", "composite")


class PEXConfig(IQLConfig):
    """Policy Expansion (Zhang, Xu, Yu. "Policy Expansion for Bridging Offline-to-Online
    Reinforcement Learning"; ICLR 2023, arXiv:2302.00935).

    Defaults follow the authors' code Haichao-Zhang/PEX (`main_online.py` arguments,
    `pex/algorithms/pex.py`, `pex/utils/util.py`). The offline phase is IQL unchanged, with
    IQL's locomotion settings (`IQLConfig`), so a PEX trial and an IQL trial of the same seed
    differ only online. (The authors' scripts train their offline IQL on raw locomotion rewards
    — the return-range scaling is commented out in `get_env_and_dataset` — and default β to 10;
    `reward_normalization="none"` and `temperature` reproduce that where wanted.)

    Online: the policy set {π_offline (frozen), π_new (fresh)}; each step both propose an action,
    one is picked with probability softmax(α·Q) (`PEX.select_action`); V and Q keep training
    with IQL's losses on half-dataset, half-online minibatches (`get_batch_from_dataset_and_buffer`);
    updates begin after 5k steps collected by the composed policy (`initial_collection_steps`;
    no uniform-random phase); the authors' online run builds new Adam optimizers.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.pex.algorithm import PEXAlgorithm

        super().__init__(algo_class=algo_class or PEXAlgorithm)
        self.inverse_temperature: float = 10.0
        """α of the policy selection P[i] ∝ exp(α·Q(s, a_i)) (paper §4; `inv_temperature`, 10 on
        every task). Q is the min over the current critics, as the authors' `critic.min`."""
        self.eval_epsilon: float = 0.1
        """Evaluation acts ε-greedily twice, as the authors' `select_action(evaluate=True)`: the new
        policy's mean (its sample with probability ε) and the higher-Q candidate (a softmax draw
        with probability ε). 0 gives the greedy composed policy; exploration samples both. (Not
        `evaluation_…`: RLlib's `update_from_dict` hands every such key to `.evaluation()`.)"""
        self.awr_actions: str = "replay"
        """Actions the AWR loss (IQL eq. 7) imitates: "replay" — the minibatch's own actions (IQL,
        the offline phase); "composite" — an action of the composed policy drawn at each minibatch
        state, weighted by exp(β(Q̂(s, a) − V(s))) (the authors' `PEX.policy_update`; online)."""
        self.phase_overrides = {"online": {"awr_actions": "composite"}}
        self.sampling_rule = "ratio"
        self.offline_fraction = 0.5  # half of each online minibatch from the dataset (`double_buffer`)
        self.learning_starts = 5000  # `initial_collection_steps`, collected by the composed policy

    @property
    def module_class(self) -> type:
        from o2o.algorithms.pex.module import PEXModule

        return PEXModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.pex.learner import PEXLearner

        return PEXLearner

    def network_config(self) -> dict[str, Any]:
        return {
            **super().network_config(),
            "inverse_temperature": self.inverse_temperature,
            "eval_epsilon": self.eval_epsilon,
        }

    def validate(self) -> None:
        super().validate()
        if self.inverse_temperature < 0 or not 0.0 <= self.eval_epsilon <= 1.0:
            self._value_error(
                f"inverse_temperature must be >= 0 and eval_epsilon in [0, 1], got "
                f"{self.inverse_temperature} and {self.eval_epsilon}"
            )
        choices = [self.awr_actions] + [o["awr_actions"] for o in self.phase_overrides.values() if "awr_actions" in o]
        if any(c not in AWR_ACTIONS for c in choices):
            self._value_error(f"awr_actions must be one of {AWR_ACTIONS}, got {choices}")
