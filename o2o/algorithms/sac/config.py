"""SAC's hyperparameters: the online learner o2o trains behaviour policies with."""

from __future__ import annotations

from o2o.platform.engine import O2OConfig


class SACConfig(O2OConfig):
    """Soft Actor-Critic (Haarnoja et al.; ICML 2018, arXiv:1801.01290; automatic temperature
    from arXiv:1812.05905). Defaults checked against CleanRL's `sac_continuous_action.py`."""

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.sac.algorithm import SACAlgorithm

        super().__init__(algo_class=algo_class or SACAlgorithm)
        self.initial_temperature: float = 1.0
        """α at the start; tuned automatically towards the target entropy."""
        self.target_entropy_per_dim: float = -1.0
        """The entropy H̄ the temperature aims for, per action dimension: H̄ = this × |A| (SAC's
        heuristic −1; RLPD −0.5, `sac_learner.py`: `target_entropy = -action_dim / 2`)."""
        self.policy_update_per_env_step: bool = False
        """Online, step the actor and the temperature once per env step, on the last of that
        step's `utd_ratio` critic updates (RLPD's `SACLearner.update`), instead of on every
        critic update (SAC). Offline phases step them on every update either way."""
        self.alpha_lr: float = 3e-4
        """Learning rate of log α."""
        self.actor_q_reduction: str = "min"
        """How the actor loss reads the ensemble: "min" over the critics (SAC's twin critics) or
        their "mean" (RLPD, whose 10 critics make a min too pessimistic)."""
        self.random_steps = 5000
        self.learning_starts = 5000
        self.sampling_rule = "online"

    @property
    def module_class(self) -> type:
        from o2o.algorithms.sac.module import SACModule

        return SACModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.sac.learner import SACLearner

        return SACLearner

    def network_config(self) -> dict:
        return {**super().network_config(), "initial_temperature": self.initial_temperature}

    def validate(self) -> None:
        super().validate()
        if self.actor_q_reduction not in ("min", "mean"):
            self._value_error(f"actor_q_reduction must be 'min' or 'mean', got {self.actor_q_reduction!r}")
        if self.initial_temperature <= 0:
            self._value_error(f"initial_temperature must be > 0, got {self.initial_temperature}")
