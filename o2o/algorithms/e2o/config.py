"""E2O's hyperparameters: CQL's with an N-critic ensemble offline, SAC-N with E2O's target,
uncertainty weight and optimistic exploration online."""

from __future__ import annotations

from o2o.algorithms.cql.config import CQLConfig

TARGET_Q = ("min", "weighted_min_pair")
"""How the TD target reduces the N target critics: the minimum (CQL, SAC-N) or E2O's mean over
all C(N, 2) pairs of the pair's minimum."""
UNCERTAINTY_WEIGHTS = ("none", "batch", "sample")
"""Scale of the critic loss by sigmoid(−c·σ) + 0.5: off, σ one scalar per minibatch (the
authors' code), or σ per transition."""


class E2OConfig(CQLConfig):
    """E2O, "Ensemble-based Offline-to-Online Reinforcement Learning: From Pessimistic Learning to
    Optimistic Exploration" (Zhao, Jiang, Hao, et al.; arXiv:2306.06871).

    Offline: CQL with N = 10 critics of 3×256 (the actor stays 2×256), conservative weight 5,
    actor lr 3e-5. Online (`phase_overrides["online"]`): the conservative term is dropped, the
    TD target takes the weighted min-pair of the target critics, the critic loss is scaled by
    the batch's uncertainty weight, and the EnvRunner explores by UCB over `ucb_actions`
    sampled actions. Online data goes to a fresh buffer that alone is replayed (`sampling_rule:
    online`), updates start after `learning_starts` = 1000 env steps, and the paper's budget is
    250k env steps. Defaults from METHODS.md, which records the authors' code
    (TJU-DRL-LAB/AI-Optimizer, `offline-rl-algorithms/E2O`, a d3rlpy v1 fork: `e2o_impl.py`).
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.e2o.algorithm import E2OAlgorithm

        super().__init__(algo_class=algo_class or E2OAlgorithm)
        self.num_critics = 10
        self.hidden_sizes = [256, 256]
        self.critic_hidden_sizes = [256, 256, 256]
        self.cql_alpha = 5.0
        self.conservative: bool = True
        """Whether the critic loss carries CQL's conservative term (offline); E2O drops it online,
        which makes the online update SAC-N's."""
        self.target_q: str = "min"
        """The TD target's reduction of the N target critics, one of TARGET_Q: "min" offline (CQL
        on the ensemble), "weighted_min_pair" online (E2O's target)."""
        self.uncertainty_weight: str = "none"
        """The critic loss's scale sigmoid(−`uncertainty_scale`·σ) + 0.5, one of
        UNCERTAINTY_WEIGHTS: "batch" online (the authors': σ is the spread across critics of each
        critic's minibatch-mean target Q), "sample" (σ per transition), "none" offline."""
        self.uncertainty_scale: float = 10.0
        """c in sigmoid(−c·σ) + 0.5."""
        self.ucb_actions: int = 10
        """K, actions sampled from π(·|s) when exploring; the EnvRunner executes the one of highest
        mean + `ucb_coefficient`·std over the N critics (SUNRISE's UCB; E2O: K = N)."""
        self.ucb_coefficient: float = 10.0
        """λ of the UCB score mean_i Q_i + λ·std_i Q_i."""
        self.sampling_rule = "online"
        self.learning_starts = 1000
        self.phase_overrides = {
            "online": {"conservative": False, "target_q": "weighted_min_pair", "uncertainty_weight": "batch"}
        }

    @property
    def module_class(self) -> type:
        from o2o.algorithms.e2o.module import E2OModule

        return E2OModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.e2o.learner import E2OLearner

        return E2OLearner

    def network_config(self) -> dict:
        return {**super().network_config(), "ucb_actions": self.ucb_actions, "ucb_coefficient": self.ucb_coefficient}

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.target_q not in TARGET_Q:
                self._value_error(f"target_q must be one of {', '.join(TARGET_Q)}{where}, got {config.target_q!r}")
            if config.uncertainty_weight not in UNCERTAINTY_WEIGHTS:
                self._value_error(
                    f"uncertainty_weight must be one of {', '.join(UNCERTAINTY_WEIGHTS)}{where}, "
                    f"got {config.uncertainty_weight!r}"
                )
            if config.conservative and config.uncertainty_weight != "none":
                self._value_error(
                    f"uncertainty_weight {config.uncertainty_weight!r}{where} weighs the online (SAC-N) "
                    "critic loss, which runs only with conservative off"
                )
            if config.target_q == "weighted_min_pair" and config.conservative and config.max_target_backup:
                self._value_error(f"target_q weighted_min_pair{where} does not combine with CQL's max_target_backup")
            if config.target_q == "weighted_min_pair" and config.num_critics < 2:
                self._value_error(f"target_q weighted_min_pair{where} needs num_critics >= 2, got {config.num_critics}")
        if self.ucb_actions < 1:
            self._value_error(f"ucb_actions must be >= 1, got {self.ucb_actions}")
