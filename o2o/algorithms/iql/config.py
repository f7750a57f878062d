"""IQL's hyperparameters, with the paper's locomotion defaults."""

from __future__ import annotations

from typing import Any

from o2o.platform.engine import O2OConfig


class IQLConfig(O2OConfig):
    """Implicit Q-Learning (Kostrikov, Nair, Levine; ICLR 2022, arXiv:2110.06169).

    Defaults follow the authors' released code (ikostrikov/implicit_q_learning,
    `configs/mujoco_config.py`) and CORL's `algorithms/offline/iql.py` for fine-tuning. The
    actor's learning rate is constant through both phases, as in the authors' offline-to-online
    runs (`train_finetune.py` with `configs/antmaze_finetune_config.py`, `opt_decay_schedule =
    None`: one Adam per network carried from pre-training into fine-tuning). Their offline-only
    runs decay it by cosine over 1M updates (`actor_lr_schedule="cosine"`), which in a trial with
    an online phase would leave the actor at a rate near 0 at the hand-off and then jump back to
    `lr` (measured on the quickstart: README.md, "What the quickstart shows").
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
        self.actor_lr_schedule: str = "constant"
        """"constant" keeps the actor's learning rate at `lr` (the authors' fine-tuning);
        "cosine" decays it to 0 over each phase counted in updates (their offline-only runs)."""
        self.actor_dropout: float = 0.0
        """Dropout in the actor's hidden layers (0.1 on Adroit)."""
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
