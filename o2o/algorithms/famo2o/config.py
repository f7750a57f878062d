"""FamO2O's settings, shared by every base it composes with."""

from __future__ import annotations

from typing import Any

from o2o.platform.engine import O2OConfig

BETA_SOURCES = ("uniform", "balance")
"""Where the β the universal policy trains with comes from: U[β_lo, β_hi] per transition
(offline: the whole family is trained) or the balance model π_b(β|s) (online)."""

TEMPERATURE_DEFAULTS = {"balance_temperature_lr": 3e-4, "initial_balance_temperature": 1.0}
"""The balance temperature α_b's settings and their defaults (the authors'), refused where the
balance loss has no entropy term for α_b to weigh."""


class FamO2OConfig(O2OConfig):
    """Family Offline-to-Online RL (Wang et al. "Train Once, Get a Family: State-Adaptive
    Balances for Offline-to-Online Reinforcement Learning", NeurIPS 2023), as a mixin over a
    base's config (`o2o.algorithms.famo2o.iql`, `.cql`).

    The base's policy becomes a universal policy π_u(a | s, enc β) over a family of
    improvement/constraint balances β ∈ [β_lo, β_hi], and a balance model π_b(β | s) picks each
    state's member. Offline the universal policy trains on β ~ U[β_lo, β_hi]; online
    (`phase_overrides["online"]`) on β ~ π_b(·|s), and it acts with π_b's mode. The balance
    model trains in both phases. Defaults from the released code (LeapLabTHU/FamO2O), facts in
    METHODS.md.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self.beta_range: list[float] = [1.0, 5.0]
        """[β_lo, β_hi], the family's balances (each base sets its own: IQL's AWR temperature on
        locomotion [1, 5], on AntMaze [8, 14]; CQL's weight of Q in the actor loss [0.5, 1.5])."""
        self.beta_encoding_dim: int = 6
        """d of the sinusoidal encoding of β appended to the policy's input (authors: 6)."""
        self.beta_encoding_base: float = 10000.0
        """n of the encoding's frequencies 1 / n^(2i/d) (authors: 10000, the transformer's)."""
        self.beta_source: str = "uniform"
        """One of BETA_SOURCES: "uniform" offline, "balance" online (`phase_overrides`)."""
        self.balance_lr: float = 3e-4
        """Adam step size of the balance model π_b (authors: the actor's, 3e-4)."""
        self.balance_target_entropy: float | None = -0.5
        """H̄ of π_b's automatic temperature α_b (IQL variant: −0.5, in the units of π_b's
        tanh-Gaussian on (−1, 1)); None: the balance loss has no entropy term and there is no α_b
        (the CQL variant)."""
        self.balance_temperature_lr: float = TEMPERATURE_DEFAULTS["balance_temperature_lr"]
        """Adam step size of log α_b (authors: 3e-4)."""
        self.initial_balance_temperature: float = TEMPERATURE_DEFAULTS["initial_balance_temperature"]
        """α_b at the start (authors: 1.0)."""
        self.phase_overrides = {
            **self.phase_overrides,
            "online": {**self.phase_overrides.get("online", {}), "beta_source": "balance"},
        }

    def network_config(self) -> dict[str, Any]:
        return {
            **super().network_config(),
            "beta_range": [float(b) for b in self.beta_range],
            "beta_encoding_dim": self.beta_encoding_dim,
            "beta_encoding_base": float(self.beta_encoding_base),
            "initial_balance_temperature": self.initial_balance_temperature,
        }

    def validate(self) -> None:
        super().validate()
        low_high = self.beta_range
        if (
            not isinstance(low_high, (list, tuple))
            or len(low_high) != 2
            or not all(isinstance(b, (int, float)) for b in low_high)
            or not 0 <= low_high[0] < low_high[1]
        ):
            self._value_error(f"beta_range must be [low, high] with 0 <= low < high, got {low_high!r}")
        if self.beta_encoding_dim < 2 or self.beta_encoding_dim % 2:
            self._value_error(f"beta_encoding_dim must be an even number >= 2, got {self.beta_encoding_dim}")
        if self.beta_encoding_base <= 1:
            self._value_error(f"beta_encoding_base must be > 1, got {self.beta_encoding_base}")
        if self.initial_balance_temperature <= 0:
            self._value_error(f"initial_balance_temperature must be > 0, got {self.initial_balance_temperature}")
        if self.balance_target_entropy is None:
            unused = [
                field
                for field, default in TEMPERATURE_DEFAULTS.items()
                if getattr(self, field) != default or any(field in o for o in self.phase_overrides.values())
            ]
            if unused:
                self._value_error(
                    f"{', '.join(unused)} cannot take effect with balance_target_entropy None: the balance "
                    "loss has no entropy term and no temperature α_b (the CQL variant's); set a target entropy"
                )
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.beta_source not in BETA_SOURCES:
                self._value_error(f"beta_source must be one of {', '.join(BETA_SOURCES)}{where}, got {config.beta_source!r}")
            if config.balance_lr <= 0 or config.balance_temperature_lr <= 0:
                self._value_error(f"balance_lr and balance_temperature_lr must be > 0{where}")
