"""CQL's hyperparameters: SAC's, plus the conservative regularizer's, with CORL's locomotion defaults."""

from __future__ import annotations

import math
from typing import Any

from o2o.algorithms.sac.config import SACConfig


class CQLConfig(SACConfig):
    """Conservative Q-Learning, the CQL(H) variant with importance-sampled actions (Kumar, Zhou,
    Tucker, Levine. "Conservative Q-Learning for Offline Reinforcement Learning"; NeurIPS 2020,
    arXiv:2006.04779).

    Defaults follow CORL `algorithms/offline/cql.py` and its locomotion configs
    (`configs/offline/cql/{hopper,halfcheetah,walker2d}/*.yaml`, all of which set α 10, policy
    lr 3e-5, critic lr 3e-4, 10 sampled actions, no Lagrange, no entropy in the backup, 3 hidden
    layers), which port the authors' code via young-geng/CQL. CORL's AntMaze configs use α 5 with
    the Lagrange variant at gap 0.8, max-target backup and a lower clip of −200; its fine-tuning
    script `algorithms/finetune/cql.py` replays the dataset and online data from one buffer (our
    `union` rule) and keeps α online unless `cql_alpha_online` differs, i.e.
    `phase_overrides={"online": {"cql_alpha": ...}}` here.

    State normalization is the engine's `normalize_observations`, off by default here. Not
    ported: CORL's reward rescaling, its actor's log-std
    offset −1 and orthogonal initialisation (o2o's `TanhGaussianActor` is shared by SAC, CQL and
    Cal-QL), and `bc_steps` (0 in every locomotion config).
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.cql.algorithm import CQLAlgorithm

        super().__init__(algo_class=algo_class or CQLAlgorithm)
        self.cql_alpha: float = 10.0
        """α, the weight of the conservative term α·E_s[log Σ_a exp Q(s, a) − Q(s, a_D)] in the
        critic loss (paper eq. 4; CORL `cql_alpha`: 10 on every locomotion config, 5 on AntMaze)."""
        self.num_sampled_actions: int = 10
        """Actions per state drawn from each proposal of the importance-sampled log-sum-exp —
        uniform, π(·|s) and π(·|s') — so 3× this many terms per state (paper App. F; CORL
        `cql_n_actions`)."""
        self.cql_temperature: float = 1.0
        """τ in τ·log Σ exp(Q/τ), the soft maximum of the regularizer (CORL `cql_temp`)."""
        self.cql_clip_diff_min: float = -math.inf
        """Lower clip of log Σ exp Q − Q(s, a_D) per state before averaging (CORL
        `cql_clip_diff_min`: −∞ on locomotion, −200 in its AntMaze configs and its Adroit
        fine-tuning configs)."""
        self.cql_lagrange: bool = False
        """Tune the conservative weight as α·α', α' ≥ 0 a Lagrange multiplier raised while the
        gap E[log Σ exp Q − Q(s, a_D)] exceeds `cql_target_action_gap` (paper App. F; CORL
        `cql_lagrange`: off on locomotion, on for AntMaze)."""
        self.cql_target_action_gap: float = 0.8
        """τ_gap, the gap the Lagrange variant holds (CORL's AntMaze configs and Cal-QL's
        `run_antmaze.sh`: 0.8); unused without `cql_lagrange`."""
        self.initial_cql_multiplier: float = math.e
        """α' at the start of the Lagrange variant (CORL and nakamotoo/Cal-QL initialise log α'
        at 1.0)."""
        self.backup_entropy: bool = False
        """Subtract α log π(a'|s') in the TD target as SAC does (CORL `backup_entropy`: off)."""
        self.max_target_backup: bool = False
        """Back up the largest of `num_sampled_actions` target values at s' instead of one
        sample's (CORL `cql_max_target_backup`: off on locomotion, on in its AntMaze configs and its Adroit
        fine-tuning configs; nakamotoo/Cal-QL's default: on)."""
        self.actor_lr: float = 3e-5
        """Learning rate of the actor (CORL `policy_lr`); the critics use `lr` (3e-4, `qf_lr`)."""
        self.alpha_lr = 3e-5  # CORL tunes log α with the policy's learning rate
        self.hidden_sizes = [256, 256, 256]  # CORL's locomotion configs: 3 hidden layers (actor and critics)
        self.random_steps = 0
        self.learning_starts = 0
        self.sampling_rule = "union"

    @property
    def module_class(self) -> type:
        from o2o.algorithms.cql.module import CQLModule

        return CQLModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.cql.learner import CQLLearner

        return CQLLearner

    def network_config(self) -> dict[str, Any]:
        return {**super().network_config(), "initial_cql_multiplier": self.initial_cql_multiplier}

    def validate(self) -> None:
        super().validate()
        if self.policy_update_per_env_step:
            self._value_error(
                "policy_update_per_env_step is RLPD's SAC schedule; CQL steps its actor and "
                "temperature with every critic update"
            )
        if self.initial_cql_multiplier <= 0:
            self._value_error(f"initial_cql_multiplier must be > 0, got {self.initial_cql_multiplier}")
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.cql_alpha < 0 or config.num_sampled_actions < 1 or config.cql_temperature <= 0:
                self._value_error(
                    f"cql_alpha must be >= 0, num_sampled_actions >= 1 and cql_temperature > 0{where}, got "
                    f"{config.cql_alpha}, {config.num_sampled_actions} and {config.cql_temperature}"
                )
            if config.actor_lr <= 0 or config.alpha_lr <= 0:
                self._value_error(f"actor_lr and alpha_lr must be > 0{where}")
