"""BAQ's settings, shared by every base it composes with."""

from __future__ import annotations

from typing import ClassVar

from o2o.platform.engine import O2OConfig

FINE_TUNING = "online"
"""The phase BAQ's pieces act in; before it, π_β is fitted beside the base's offline training."""
UNCERTAINTY_SOURCES = ("bc_divergence", "ensemble_std")
"""Where u(s, a) comes from (`BAQConfig.uncertainty`)."""
ONLINE_FIELDS = (
    "constraint_weight",
    "uncertainty_sharpness",
    "confidence_scale",
    "uncertainty_gate",
    "confidence_decay",
    "uncertainty_weighted_q",
)
"""BAQ's fields that act in fine-tuning only: the only phase they may be overridden for."""
SWITCHED_FIELDS = {"uncertainty_gate": "uncertainty_sharpness", "confidence_decay": "confidence_scale"}
"""Ablation switch → the field that shapes only the piece it turns off."""


class BAQConfig(O2OConfig):
    """Behaviour-Adaptive Q-Learning (Zu, Zhou, Zhang; arXiv:2511.03695), as a mixin over a
    base's config (`o2o.algorithms.baq.td3bc`).

    No code is public and the abstract gives no formulas; this is the formulation METHODS.md
    records. Offline, the base trains as it does and an implicit behaviour model π_β (a Gaussian
    policy) is fitted to the dataset by maximum likelihood beside it. In fine-tuning (`online`),
    π_β is frozen and four pieces act, each with its ablation switch:

    - the behaviour-consistency term λ(s, t)·‖π(s) − μ_β(s)‖² in the actor's loss, with
      λ(s, t) = λ₀ · sigmoid(k·(u(s, π(s))/ū − 1)) · c(t): strong where the policy's action is
      uncertain (`uncertainty_gate`), relaxed as confident online experience accumulates,
      c(t) = exp(−n_confident/τ_c) (`confidence_decay`);
    - the TD error weighted by 1/(1 + u(s', ã')/ū) at the target's action, so backups through
      out-of-distribution actions count less (`uncertainty_weighted_q`);
    - replay ∝ behaviour divergence −log π_β(a|s) (`sampling_rule: prioritized`; `union` is the
      ablation).

    u is the policy's divergence from π_β (`bc_divergence`) or the critics' spread
    (`ensemble_std`); ū is its running mean over the minibatches' own state–action pairs, and a
    new online transition is confident when its u is below ū.
    """

    has_priority_source: ClassVar[bool] = True

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self.uncertainty: str = "bc_divergence"
        """Source of u(s, a): "bc_divergence", the squared distance of a from π_β(·|s) in units
        of π_β's spread, averaged over the action dimensions (−log π_β(a|s) up to terms free of
        a; 1 on average at the behaviour's own actions), or "ensemble_std", the standard
        deviation of the critics' Q(s, a) (METHODS.md: N = 5 — set `num_critics`)."""
        self.constraint_weight: float = 2.0
        """λ₀: the most weight the behaviour-consistency term takes. The gate is 1/2 at the
        typical uncertainty, so 2 starts fine-tuning at TD3+BC's BC weight of 1."""
        self.uncertainty_sharpness: float = 5.0
        """k: how sharply the gate sigmoid(k·(u/ū − 1)) turns from letting go to holding on."""
        self.confidence_scale: float = 100_000.0
        """τ_c: confident online transitions over which c(t) = exp(−n_confident/τ_c) falls by e."""
        self.uncertainty_gate: bool = True
        """Ablation switch: False replaces the gate by 1/2, its value at the typical uncertainty,
        so λ no longer depends on the state."""
        self.confidence_decay: bool = True
        """Ablation switch: False holds c(t) at 1, so λ never relaxes with experience."""
        self.uncertainty_weighted_q: bool = True
        """Ablation switch: False gives every backup the same weight (the base's critic loss)."""
        self.sampling_rule = "prioritized"

    def validate(self) -> None:
        super().validate()
        if self.uncertainty not in UNCERTAINTY_SOURCES:
            self._value_error(f"uncertainty {self.uncertainty!r} is not one of {UNCERTAINTY_SOURCES}")
        if self.uncertainty == "ensemble_std" and self.num_critics < 2:
            self._value_error("uncertainty ensemble_std is the critics' spread: it needs num_critics >= 2")
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.constraint_weight < 0 or config.uncertainty_sharpness < 0 or config.confidence_scale <= 0:
                self._value_error(
                    f"constraint_weight and uncertainty_sharpness must be >= 0 and confidence_scale > 0{where}, got "
                    f"{config.constraint_weight}, {config.uncertainty_sharpness} and {config.confidence_scale}"
                )
        if not self.has_dataset or self.offline_updates < 1:
            self._value_error(
                "BAQ's behaviour model π_β is fitted to the dataset during the offline phase: it needs a dataset "
                "and offline_updates >= 1"
            )
        online, defaults = self.for_phase(FINE_TUNING), BAQConfig()
        for switch, field in SWITCHED_FIELDS.items():
            if not getattr(online, switch) and (
                getattr(self, field) != getattr(defaults, field) or any(field in o for o in self.phase_overrides.values())
            ):
                self._value_error(
                    f"{field} cannot take effect with {switch} false: it shapes the piece that switch turns off; "
                    f"leave it unset"
                )
        for phase, overrides in self.phase_overrides.items():
            if "uncertainty" in overrides:
                self._value_error(
                    f"phase_overrides[{phase!r}] sets uncertainty: its running mean ū is kept across phases, so "
                    "its source is set once, in hyperparameters"
                )
            misplaced = sorted(set(overrides) & set(ONLINE_FIELDS)) if phase != FINE_TUNING else []
            if misplaced:
                self._value_error(
                    f"phase_overrides[{phase!r}] sets {', '.join(misplaced)}: BAQ's pieces act in the "
                    f"{FINE_TUNING!r} phase only, so they could not take effect there"
                )
