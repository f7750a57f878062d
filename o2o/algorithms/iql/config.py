"""IQL's hyperparameters, with the paper's locomotion defaults."""

from __future__ import annotations

from typing import Any

from o2o.platform.engine import O2OConfig


class IQLConfig(O2OConfig):
    """Implicit Q-Learning (Kostrikov, Nair, Levine; ICLR 2022, arXiv:2110.06169).

    Defaults follow the authors' released code (ikostrikov/implicit_q_learning,
    `configs/mujoco_config.py`) and CORL's `algorithms/offline/iql.py` for fine-tuning.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.iql.algorithm import IQLAlgorithm

        super().__init__(algo_class=algo_class or IQLAlgorithm)
        self.expectile: float = 0.7
        """τ of the expectile loss on Q − V (paper eq. 5); 0.9 on AntMaze."""
        self.temperature: float = 3.0
        """β in the AWR weight exp(β·(Q − V)) (paper eq. 7); 10 on AntMaze, 0.5 on Adroit."""
        self.max_weight: float = 100.0
        """Clip of the AWR weight exp(β·(Q − V)) (authors' code)."""
        self.actor_lr_schedule: str = "cosine"
        """"cosine" decays the actor's learning rate to 0 over the phase; "constant" keeps it."""
        self.actor_dropout: float = 0.0
        """Dropout in the actor's hidden layers (0.1 on Adroit)."""
        self.phase_overrides = {"online": {"actor_lr_schedule": "constant"}}
        # Locomotion rewards × 1000 / (max − min episode return) (authors' `train_offline.py`,
        # `normalize(dataset)`; CORL `modify_reward`).
        self.reward_normalization = "return_range"

    @property
    def module_class(self) -> type:
        from o2o.algorithms.iql.module import IQLModule

        return IQLModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.iql.learner import IQLLearner

        return IQLLearner

    def network_config(self) -> dict[str, Any]:
        return {**super().network_config(), "actor_dropout": self.actor_dropout}

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.expectile < 1.0:
            self._value_error(f"expectile must lie in (0, 1), got {self.expectile}")
        schedules = [self.actor_lr_schedule] + [
            o["actor_lr_schedule"] for o in self.phase_overrides.values() if "actor_lr_schedule" in o
        ]
        if any(s not in ("cosine", "constant") for s in schedules):
            self._value_error(f"actor_lr_schedule must be 'cosine' or 'constant', got {schedules}")
