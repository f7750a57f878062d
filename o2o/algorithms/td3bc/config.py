"""TD3+BC's hyperparameters: TD3's, plus the weights of the behaviour-cloning actor loss."""

from __future__ import annotations

from o2o.algorithms.td3.config import TD3Config


class TD3BCConfig(TD3Config):
    """TD3+BC (Fujimoto, Gu. "A Minimalist Approach to Offline Reinforcement Learning";
    NeurIPS 2021, arXiv:2106.06860).

    Defaults follow the authors' released code (sfujim/TD3_BC, `main.py` and `TD3_BC.py`) and
    CORL `algorithms/offline/td3_bc.py`; the TD3 fields keep TD3's defaults, which both share.

    Fine-tuning. The paper trains offline only, and CORL ships no TD3+BC fine-tuning script
    (its `td3_bc.py` leaves `add_transition` unimplemented). Its fine-tuning script for SPOT, the
    TD3 variant with a behaviour regularizer, keeps the regularized actor loss online (cooling
    its weight is off by default), so no `phase_overrides` are set here: the online phase runs
    the same loss. Pure TD3 fine-tuning is `phase_overrides={"online": {"bc_weight": 0.0}}`.

    State normalization (paper §5, `normalize=True` in both codes: states standardized by the
    dataset's mean and std + 1e-3) is on: the engine's `normalize_observations`.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.td3bc.algorithm import TD3BCAlgorithm

        super().__init__(algo_class=algo_class or TD3BCAlgorithm)
        self.normalize_observations = True
        self.alpha: float = 2.5
        """α in λ = α / mean|Q|, the weight of the normalized Q term of the actor loss (paper
        eq. 4; `alpha`)."""
        self.bc_weight: float = 1.0
        """Weight of the behaviour-cloning term E[(π(s) − a)²] of the actor loss (paper eq. 3
        has 1; 0 turns the actor loss into TD3's with Q scaled by λ)."""

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.td3bc.learner import TD3BCLearner

        return TD3BCLearner

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            if config.alpha <= 0 or config.bc_weight < 0:
                where = f" in phase_overrides[{phase!r}]" if phase else ""
                self._value_error(
                    f"alpha must be > 0 and bc_weight >= 0{where}, got {config.alpha} and {config.bc_weight}"
                )
