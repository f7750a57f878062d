"""AWAC's hyperparameters, with CORL's defaults."""

from __future__ import annotations

from o2o.platform.engine import O2OConfig


class AWACConfig(O2OConfig):
    """Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal, Levine. "AWAC: Accelerating Online
    Reinforcement Learning with Offline Datasets"; arXiv:2006.09359).

    Defaults follow CORL `algorithms/offline/awac.py` and `algorithms/finetune/awac.py` (one
    script, one set of losses for both phases): twin critics trained to a SAC-style backup with
    no entropy term, a Gaussian actor trained by advantage-weighted maximum likelihood of the
    dataset's actions with weights exp(A/λ) clipped at 100, λ = 1, Adam 3e-4 for actor and
    critics, 3 hidden layers of 256, τ = 0.005. The authors' code (rail-berkeley/rlkit,
    `rlkit/torch/sac/awac_trainer.py` run by `examples/awac/mujoco/awac1.py`) agrees on the
    backup (α = 0) and the one-sample value estimate; it normalises the weights by a softmax over
    the batch instead of clipping them, which is not ported.

    Online, AWAC keeps the same losses and draws its minibatches uniformly from one buffer that
    holds the dataset and every online transition (CORL's fine-tuning script appends online rows
    to the dataset's buffer; the paper's Algorithm 1 does the same) — the engine's `union` rule,
    one update per environment step, no random or warm-up steps.

    State normalization is the engine's `normalize_observations`, off by default here. Not
    ported: CORL's reward rescaling (`normalize_reward`,
    which is off in its locomotion configs and subtracts 1 from AntMaze rewards), and its actor's
    details — an unsquashed mean and log σ clamped to [−20, 2]; o2o's `GaussianActor`, shared
    with IQL, squashes the mean with tanh and clamps log σ to [−5, 2].
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.awac.algorithm import AWACAlgorithm

        super().__init__(algo_class=algo_class or AWACAlgorithm)
        self.awac_lambda: float = 1.0
        """λ, the temperature of the advantage weight exp(A(s, a)/λ) — the Lagrange multiplier of
        the KL constraint to the behaviour policy in the paper's policy improvement step; smaller
        λ stays closer to the data. CORL `awac_lambda`: 1.0 by default; its D4RL configs use
        1/3 on locomotion and 0.1 on AntMaze and Adroit (offline and fine-tuning)."""
        self.max_weight: float = 100.0
        """Clip of the advantage weight exp(A/λ), so a few large advantages cannot dominate a
        batch (CORL `exp_adv_max`)."""
        self.hidden_sizes = [256, 256, 256]  # CORL's AWAC: 3 hidden layers of 256 (actor and critics)
        self.sampling_rule = "union"  # online: the dataset and online rows in one uniform buffer (CORL)

    @property
    def module_class(self) -> type:
        from o2o.algorithms.awac.module import AWACModule

        return AWACModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.awac.learner import AWACLearner

        return AWACLearner

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.awac_lambda <= 0 or config.max_weight <= 0:
                self._value_error(
                    f"awac_lambda and max_weight must be > 0{where}, got {config.awac_lambda} and {config.max_weight}"
                )
