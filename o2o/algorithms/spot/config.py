"""SPOT's hyperparameters: TD3's, plus the VAE behaviour model, the support weight λ and its cooling."""

from __future__ import annotations

from typing import Any

from o2o.algorithms.td3.config import TD3Config


class SPOTConfig(TD3Config):
    """Supported Policy Optimization (Wu, Wu, Qiu, Wang, Long. "Supported Policy Optimization for
    Offline Reinforcement Learning"; NeurIPS 2022, arXiv:2202.06239).

    Defaults follow the authors' released code, thuml/SPOT: `main.py` (offline), `main_finetune.py`
    (online fine-tuning), `SPOT.py` (`SPOT_TD3`), `vae.py` and `train_vae.py` (the behaviour VAE),
    and its per-dataset `configs/`; checked against CORL `algorithms/finetune/spot.py`, which runs
    the three stages in one script. The TD3 fields keep TD3's defaults, which all three share.

    Stages. The authors train the VAE first (`train_vae.py`, 100k updates) and load it frozen
    into the policy's training; here that is a phase of its own, `vae_pretraining`, of
    `vae_pretrain_updates` updates before `offline`. Online, CORL resets the actor's and critics'
    Adam state ("Resetting optimizers") and cools λ (`lambd_cool`, on in every fine-tuning config
    of both codes): this config sets `cool_support_weight` in `phase_overrides["online"]`.

    Per-suite settings (authors' `configs/`): λ = `support_weight` per dataset (hopper-medium 0.1,
    halfcheetah-medium 0.05, walker2d-medium 0.2, …; AntMaze 0.025–0.25); AntMaze also takes
    `actor_lr` 1e-4, `actor_dropout` 0, `actor_init_w` 1e-3, `critic_init_w` 3e-3 and no state
    normalization; online γ is 0.995 on the large mazes (the authors' fine-tuning configs; CORL's
    `online_discount` on every maze), i.e. `phase_overrides={"online": {"gamma": 0.995, ...}}`.

    State normalization (`normalize=True` in `main.py` and `train_vae.py`: states standardized by
    the dataset's mean and std + 1e-3, for the VAE and the policy alike) is on: the engine's
    `normalize_observations`. Rewards are the environment's (the authors' locomotion runs do not
    rescale them; CORL's `normalize_reward` is the engine's `reward_normalization="return_range"`).
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.spot.algorithm import SPOTAlgorithm

        super().__init__(algo_class=algo_class or SPOTAlgorithm)
        self.normalize_observations = True
        self.support_weight: float = 1.0
        """λ, the weight of the density term of the actor loss −Q(s, π(s))/mean|Q| + λ·(−log
        π̂_β(π(s)|s)) (`lambd`; the code's default 1.0; the paper's configs set it per dataset,
        e.g. 0.1 on hopper-medium)."""
        self.normalize_q: bool = True
        """Divide the actor's Q term by the batch's mean |Q| (detached), so λ weighs the density
        term against a unit-scale Q whatever the rewards (`without_Q_norm=False`)."""
        self.cool_support_weight: bool = False
        """Cool λ linearly with the online env steps: λ_t = λ·max(`support_weight_floor`, 1 − t/T)
        (`SPOT_TD3.train_online`, `lambd_cool`). Off offline; on online through this config's
        `phase_overrides` (every fine-tuning config of both codes sets it)."""
        self.support_weight_floor: float = 0.2
        """The floor of the cooling factor, a fraction of λ: λ ends at 0.2·λ (`lambd_end`)."""
        self.cooling_env_steps: int | None = None
        """T, the online env steps over which λ cools to its floor (reached at (1 − floor)·T);
        None: the online phase's budget (CORL: `online_iterations`; the authors hard-code 1M,
        their online budget)."""
        self.reset_optimizers_online: bool = True
        """At the online phase start, begin the actor's and critics' Adam moments afresh (CORL's
        fine-tuning loop re-creates their optimizers; the authors' `main_finetune.py` loads the
        offline optimizer states instead, i.e. False)."""
        self.actor_lr: float | None = None
        """Learning rate of the actor; None: `lr` (`actor_lr`, None in `main.py`; 1e-4 in the
        AntMaze configs and in CORL)."""
        self.actor_dropout: float = 0.1
        """Dropout after each hidden layer of the actor while it trains; acting uses the mean
        network (`actor_dropout`: 0.1 in `main.py`, 0 in the AntMaze configs; CORL has none).
        Read when the module is built, so it cannot be a phase override."""
        self.actor_init_w: float | None = None
        """Initialise the actor's output layer uniformly in ±w (`actor_init_w`: None; 1e-3 on
        AntMaze). Read when the module is built."""
        self.critic_init_w: float | None = None
        """Initialise the critics' output layer uniformly in ±w (`critic_init_w`: None; 3e-3 on
        AntMaze). Read when the module is built."""
        self.vae_pretrain_updates: int = 100_000
        """Updates of the `vae_pretraining` phase, which trains only the VAE on the dataset
        (`train_vae.py` `num_iters` 1e5; CORL `vae_iterations`)."""
        self.vae_lr: float = 1e-3
        """Adam learning rate of the VAE (`train_vae.py` `lr`; CORL `vae_lr`)."""
        self.vae_hidden_sizes: list[int] = [750, 750]
        """Hidden layers of the VAE's encoder and of its decoder (`hidden_dim` 750, two layers
        each). Read when the module is built."""
        self.vae_latent_dim: int | None = None
        """Dimension of the VAE's latent z; None: 2·|A| (`latent_dim`). Read when the module is built."""
        self.vae_beta: float = 0.5
        """β, the weight of the KL term of the VAE loss and of the density estimate; also sets
        the decoder's std √(β/4) of the importance-weighted estimate (`beta`)."""
        self.density_samples: int = 1
        """Latent samples per (s, π(s)) in the actor's density estimate (`num_samples`)."""
        self.importance_weighted: bool = False
        """Estimate −log π_β(π(s)|s) with the importance-weighted bound over `density_samples`
        latents instead of the β-weighted −ELBO (`iwae`)."""
        self.phase_overrides = {"online": {"cool_support_weight": True}}

    @property
    def module_class(self) -> type:
        from o2o.algorithms.spot.module import SPOTModule

        return SPOTModule

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.spot.learner import SPOTLearner

        return SPOTLearner

    def network_config(self) -> dict[str, Any]:
        return {
            **super().network_config(),
            "actor_dropout": self.actor_dropout,
            "actor_init_w": self.actor_init_w,
            "critic_init_w": self.critic_init_w,
            "vae_hidden_sizes": list(self.vae_hidden_sizes),
            "vae_latent_dim": self.vae_latent_dim,
        }

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.actor_dropout < 1.0:
            self._value_error(f"actor_dropout must lie in [0, 1), got {self.actor_dropout}")
        if self.vae_latent_dim is not None and self.vae_latent_dim < 1:
            self._value_error(f"vae_latent_dim must be >= 1, got {self.vae_latent_dim}")
        if self.vae_pretrain_updates < 0:
            self._value_error(f"vae_pretrain_updates must be >= 0, got {self.vae_pretrain_updates}")
        if self.vae_pretrain_updates > 0 and not self.input_:
            self._value_error("VAE pretraining needs a dataset (config.offline_data(input_=...))")
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if config.support_weight < 0 or not 0.0 <= config.support_weight_floor <= 1.0:
                self._value_error(f"support_weight must be >= 0 and support_weight_floor in [0, 1]{where}")
            if config.vae_beta <= 0 or config.vae_lr <= 0 or (config.actor_lr is not None and config.actor_lr <= 0):
                self._value_error(f"vae_beta, vae_lr and actor_lr must be > 0{where}")
            if config.density_samples < 1 or (config.cooling_env_steps is not None and config.cooling_env_steps < 1):
                self._value_error(f"density_samples and cooling_env_steps must be >= 1{where}")
