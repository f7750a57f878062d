"""TD3's hyperparameters, with the authors' defaults."""

from __future__ import annotations

from typing import Any

from o2o.platform.engine import O2OConfig


class TD3Config(O2OConfig):
    """Twin Delayed DDPG (Fujimoto, van Hoof, Meger. "Addressing Function Approximation Error in
    Actor-Critic Methods"; ICML 2018, arXiv:1802.09477).

    Defaults follow the authors' released code (sfujim/TD3, `main.py` and `TD3.py`): twin
    critics, target smoothing noise 0.2 clipped at 0.5, actor and targets updated every 2nd
    critic update, exploration noise 0.1. Actions live in [−1, 1] here (the EnvRunner rescales
    them to the env's bounds), so every noise is in units of half the action range, as
    `main.py` scales them. The engine's defaults hold otherwise (union replay online, no random
    steps); TD3 from scratch takes 25k uniform-random steps first (`start_timesteps`), which is
    `random_steps=25_000` and `learning_starts=25_000` here.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.td3.algorithm import TD3Algorithm

        super().__init__(algo_class=algo_class or TD3Algorithm)
        self.policy_delay: int = 2
        """d: the actor and all target networks move on every d-th critic update (paper §5.2;
        `policy_freq`)."""
        self.target_noise: float = 0.2
        """σ̃ of the target policy smoothing noise ε ~ clip(N(0, σ̃²), −c, c) added to π'(s')
        (paper §5.3, eq. 15; `policy_noise`)."""
        self.target_noise_clip: float = 0.5
        """c, the clip of the target policy smoothing noise (paper §5.3; `noise_clip`)."""
        self.exploration_noise: float = 0.1
        """Std of the Gaussian noise on the EnvRunner's actions (`expl_noise`). Read when the
        EnvRunner's module is built, so it cannot be a phase override."""

    @property
    def module_class(self) -> type:
        from o2o.algorithms.td3.module import TD3Module

        return TD3Module

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.td3.learner import TD3Learner

        return TD3Learner

    def network_config(self) -> dict[str, Any]:
        return {**super().network_config(), "exploration_noise": self.exploration_noise}

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.policy_delay < 1:
                self._value_error(f"policy_delay must be >= 1{where}, got {config.policy_delay}")
            if config.target_noise < 0 or config.target_noise_clip < 0:
                self._value_error(f"target_noise and target_noise_clip must be >= 0{where}")
        if self.exploration_noise < 0:
            self._value_error(f"exploration_noise must be >= 0, got {self.exploration_noise}")
        if any("exploration_noise" in o for o in self.phase_overrides.values()):
            self._value_error("exploration_noise is fixed when the EnvRunner is built; it cannot be a phase override")
