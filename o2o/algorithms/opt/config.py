"""OPT's settings, shared by every base it composes with."""

from __future__ import annotations

from o2o.platform.engine import O2OConfig

COLLECTION = "online_collection"
"""The phase that only collects: N_τ env steps with the frozen offline policy, no update."""
PRETRAINING = "online_pretraining"
"""The phase that trains the new critic Q_on alone, by the meta-adaptation objective."""
BUDGET_FIELDS = ("collection_env_steps", "pretraining_updates")
"""OPT's phase budgets: the phases are laid out once, so they cannot be phase overrides."""


class OPTConfig(O2OConfig):
    """Online Pre-Training for offline-to-online RL (Shin, Kim, Jung, et al.; ICML 2025), as a
    mixin over a base's config (`o2o.algorithms.opt.td3bc`, `.spot`).

    Two phases go between the base's offline and online phases: `online_collection`
    (`collection_env_steps` env steps with the offline policy, no update) and
    `online_pretraining` (`pretraining_updates` updates of a new twin critic Q_on by the
    meta-adaptation objective, the actor and Q_off untouched). Fine-tuning (`online`) then updates
    both critics on balanced replay and the actor ascends (1 − κ)·Q_off + κ·Q_on, κ rising
    linearly over the phase's env steps. The released code is not reachable; defaults are those
    two public ports agree on (METHODS.md), κ's per-dataset ramps belong in `dataset_overrides`.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self.collection_env_steps: int = 25_000
        """N_τ: env steps the offline policy collects before Q_on trains (its budget counts
        toward the paper's 300k online steps: fine-tuning is the other 275k)."""
        self.pretraining_updates: int = 50_000
        """Updates of Q_on in `online_pretraining`."""
        self.meta_lr: float = 3e-4
        """η of the inner step θ' = θ − η∇L_off(θ), plain SGD."""
        self.kappa_start: float = 0.1
        """κ at the start of fine-tuning (locomotion medium: 0.3, medium-replay and AntMaze,
        Adroit: 0.1, random: 1)."""
        self.kappa_end: float = 0.9
        """κ once `kappa_env_steps` fine-tuning steps have passed (random: 1)."""
        self.kappa_env_steps: int = 150_000
        """Fine-tuning env steps over which κ rises linearly (AntMaze 100k, large-diverse 200k,
        Adroit 250k)."""
        self.sampling_rule = "balanced"
        self.balanced_temperature = 5.0

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if not (0.0 <= config.kappa_start <= 1.0 and 0.0 <= config.kappa_end <= 1.0):
                self._value_error(
                    f"kappa_start and kappa_end must lie in [0, 1]{where}, got {config.kappa_start} and {config.kappa_end}"
                )
            if config.kappa_env_steps < 1 or config.meta_lr <= 0:
                self._value_error(
                    f"kappa_env_steps must be >= 1 and meta_lr > 0{where}, got {config.kappa_env_steps} and {config.meta_lr}"
                )
        if self.collection_env_steps < 0 or self.pretraining_updates < 0:
            self._value_error(
                f"collection_env_steps and pretraining_updates must be >= 0, got "
                f"{self.collection_env_steps} and {self.pretraining_updates}"
            )
        if self.pretraining_updates > 0 and not self.has_dataset:
            self._value_error(
                "online_pretraining trains Q_on on dataset minibatches as well as online ones: it needs a "
                "dataset (config.offline_data(input_=...))"
            )
        if self.pretraining_updates > 0 and self.collection_env_steps < 1:
            self._value_error(
                "online_pretraining trains Q_on on online minibatches: it needs collection_env_steps >= 1"
            )
        fixed = sorted({k for overrides in self.phase_overrides.values() for k in overrides} & set(BUDGET_FIELDS))
        if fixed:
            self._value_error(
                f"{', '.join(fixed)} cannot be phase overrides: they are budgets of OPT's phases, laid out "
                "once per trial; set them in hyperparameters"
            )
