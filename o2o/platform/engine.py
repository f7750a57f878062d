"""The O2O engine: one RLlib Algorithm, config and Learner that every o2o method extends.

A trial runs an explicit list of phases, each with a budget in its own unit:

    offline  (N gradient updates on the dataset)
    → method phases, if any
    → online (M environment steps, `utd_ratio` updates per step)

`O2OAlgorithm.on_phase_start(phase)` is the one place a phase begins: it applies the phase's
hyperparameter overrides (`config.phase_overrides[phase]`) on the learner, sets every
optimizer's learning rates from them (`O2OLearner.learning_rates`), calls the learner's own
`on_phase_start`, and at the online phase hands the learner's weights to the EnvRunners. A phase
override of a field fixed when the trial is built (a network's shape, the replay's capacity, the
dataset's transforms) is refused at validation. No loss ever tests a step counter to find out
which phase it is in.

Data path. The dataset is read once through RLlib's offline input reader
(`config.offline_data(input_=[parquet])`, Ray Data, materialized) and copied into a
`ReplayStore` on the learner's device. Online episodes from the EnvRunner are appended to the
same store. Rows enter the store as the networks see them: states standardized by the dataset's
statistics where `normalize_observations` is set (the module carries the same statistics, so the
EnvRunners' forwards standardize what the environment returns), rewards rescaled where
`reward_normalization` says so, actions mapped from the env's bounds into [−1, 1]
(`o2o.platform.actions`). Without a dataset the first two are the identity.

A learner call runs K updates (`updates_per_iteration` offline, `utd_ratio` × new steps
online, the fraction carried to the next step), each sampling a minibatch by index under the
phase's sampling rule (or the rule the learner's `update_sampling` hook picks for that update),
and reduces its metrics once per call.
This bypasses RLlib's per-batch offline pipeline and per-minibatch
`Learner.update` bookkeeping, which DESIGN.md measured at 0.1× and 0.9× of a plain loop.

Checkpoints hold the module and optimizer state (RLlib's), and o2o's own: phase and counters,
the online replay rows, the sampler's and torch's random generators, the online episode in
progress (a MuJoCo env's full state, `O2OEnvRunner.collect_state`) and, under balanced replay,
the row priorities and the density-ratio network. A restored trial continues with every
transition it had collected, and takes the steps and updates the uninterrupted trial would.

K seeds in one trial (`seeds_per_trial`: K > 1; `o2o.platform.seeds`). The learner builds the
method's module once per seed (seed i's from the trial's seed + i, seed 0's as a one-seed trial
builds it) and stacks them in place: every parameter and buffer gets a leading seed dimension,
so one optimizer (element-wise Adam: K independent moment estimates), the Polyak updates, the
weight sync and RLlib's checkpoints handle all K. A method's update computes its losses through
`O2OLearner.seed_losses(losses, batch)`, which runs them once per seed under `vmap`, each seed on
its own slices and its own minibatch, and sums them (seeds share no parameter, so each gets its
own loss's gradient); its metrics come back per seed. The store holds the dataset once, with an
online ring and a minibatch sampler per seed (`ReplayStore.lane`, the sampler seeded from the
seed). The EnvRunner steps K environments, env i with seed i's policy (reset and random actions
from seed i), and each seed is evaluated on its own evaluation seeds, as its one-seed trial would
be. A result carries each seed's metrics (`o2o_seeds`, one MLflow run per seed) and their mean
(`o2o`, for Tune's progress). Under balanced replay each seed's lane keeps its own priorities
and density-ratio network. A learner class says it can (`O2OLearner.seeds_batched`); a method
that does not, a generator, or a random subset of target critics is refused with its reason:
each keeps state or draws that belong to one seed.

How each registered method maps onto this engine (no special case lives in shared code):

- IQL, AWAC, TD3+BC, CQL, SAC: a module (`RLModule`) and a learner whose `update_step` is the
  paper's losses; the phases and replay are the defaults.
- Cal-QL: its learner sets `needs_returns_to_go`; the engine adds a Monte-Carlo return column
  (`mc_returns`) to the store; its config's `phase_overrides["online"]` sets `calibrate: False`.
- SPOT: its VAE behaviour model is part of its module, pretrained in a phase of its own that
  does not train the policy (so it is not evaluated: any phase counted in updates runs
  `update_iteration` on dataset minibatches); `on_phase_start("online")` resets the optimizers,
  and λ cools on the learner's env-step clock (`O2OLearner.phase_env_steps`).
- Balanced replay: the `balanced` sampling rule, usable by any learner. The store keeps a
  priority per row in a sum tree and draws ∝ priority; the learner owns a
  `o2o.platform.balanced.BalancedReplay` per seed (density-ratio network w(s, a) and its Adam,
  created at the first balanced update, checkpointed with the learner), which after every balanced update
  takes one step on an offline and an online minibatch and rewrites the drawn rows' priorities
  w^(1/T); new online rows get theirs in `add_online`. Fields: `balanced_temperature`,
  `density_ratio_lr`, `density_ratio_batch_size`. The density ratio is one `PrioritySource`
  (`O2OLearner.priority_source`); the `prioritized` rule draws the same way by a method's own
  source (BAQ's behaviour divergence).
- APL: the learner hook `update_sampling(sampling, lane)` chooses each update's rule per seed —
  the phase's rule (`union`: the dataset and every online row, TD3+BC's loss) or, with
  probability 0.5 once more than 10k online rows are held, `Sampling("online",
  online_window=20_000)` (the newest rows only, TD3's loss); `update_step` reads the choices in
  `self.samplings`.
- PEX, RLPD: an extra frozen policy in the module (PEX); `sampling_rule: ratio` with
  `offline_fraction: 0.5`, a high `utd_ratio` and SAC's `policy_update_per_env_step` (RLPD).
- E2O: CQL's learner on an N-critic ensemble whose online phase (`phase_overrides`) switches to
  SAC's update through SAC's `reduce_target` and `critic_objective` hooks; `sampling_rule:
  online` and `learning_starts` from the engine; UCB exploration in its module's `explore`.
- FamO2O on IQL and CQL: a method on a base (`o2o.algorithms`), mixins over the base's module and
  learner. The policy reads [s, enc β] through `O2OModule.policy_input_dim` and
  `O2OLearner.policy_obs`; its balance model takes its own step before the base's update; β's
  source is a phase override (uniform offline, the balance model online); the β chosen online
  reaches MLflow through `O2OLearner.drain_distributions` as metrics and histograms.
- OPT on TD3+BC and SPOT: a method on a base whose two phases between offline and online do
  not train the policy: `online_collection` runs the engine's `collect_online` (env steps into
  the replay, no update), `online_pretraining` is an update phase whose learner draws an online
  minibatch beside the phase's dataset one. Fine-tuning reads κ's ramp off the learner's clock
  and steers the base's actor through TD3's `actor_q` hook; Q_on joins the base's Adam through
  `parameter_groups`.
- BAQ on TD3+BC: a method on a base with no phase of its own. Its behaviour model joins the
  base's module and Adam and takes its own step beside each offline update; in fine-tuning the
  base's TD error is weighted through TD3's `td_weights` hook, its actor loss extended, and the
  replay drawn by the `prioritized` rule from BAQ's `PrioritySource` (behaviour divergence).

- EDIS and CFDG: generators, not methods — `generator: edis | cfdg` on any base (`o2o.generators`).
  The store gains a generated region (`ReplayStore.set_generated`) that a rule's
  `generated_fraction` draws from; the learner owns the generator (`start_generator`,
  `finish_generator`); `online_iteration` starts a retrain when one is due (`generator_due`, on
  the learner's env-step clock), lets it run in its thread beside the iterations' steps and
  updates, lands its rows at an iteration's end (`generator_lands`: the first by which it has
  finished, or a fixed count of iterations on), and runs the `burst` schedule's extra updates
  there; `online_sampling` adds the generated share to every update under `mix`. The generator's
  settings left unset take the authors' values for the base (`generator_settings`).

Every iteration reports the phase it ran (`counters/phase`, indexing the `o2o.phases` tag) and
its wall time (`perf/iteration_s`), from which `o2o report` lays out each trial's phases.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.util.debug import log_once

from o2o.platform.actions import action_bounds, from_env, to_env
from o2o.platform.balanced import BalancedReplay
from o2o.platform.data import Transitions, normalized_score
from o2o.platform.evaluation import EVAL_SEEDS_PER_TRIAL, evaluate_policy, evaluation_seeds
from o2o.platform.replay import PrioritySource, SAMPLING_RULES, ReplayStore, Sampling, transition_columns
from o2o.platform.rollout import O2OEnvRunner
from o2o.platform.seeds import PerSeed, SeedView, seeded, stack_seeds


REWARD_NORMALIZATIONS = ("none", "return_range")

DISTRIBUTION_BINS = 20
"""Bins of each histogram a trial reports (`O2OAlgorithm._record_distributions`)."""

BUILD_TIME_FIELDS: dict[str, str] = {
    "online_buffer_capacity": "the replay store is allocated once per trial",
    "normalize_observations": "the dataset is standardized once, when it is copied into the replay store",
    "reward_normalization": "the dataset's rewards are rescaled once, when it is copied into the replay store",
}
"""Engine fields a phase cannot override, with the reason; every field of a method's
`network_config()` is refused as well (its networks are built once, before the first phase)."""


GENERATOR_FIELDS: dict[str | None, tuple[str, ...]] = {
    None: (
        "generator_schedule", "generated_fraction", "burst_updates", "generator_retrain_env_steps",
        "generator_train_steps", "generated_samples", "generator_sample_steps", "generator_width",
        "generator_depth", "generator_batch_size", "generator_landing_iterations",
    ),
    "edis": ("energy_scales", "energy_train_steps", "energy_negatives"),
    "cfdg": ("guidance_weight", "online_share", "ratio_clip"),
}
"""The generator fields: those of every generator (under None) and each generator's own. One
set where no generator, or another generator, runs is refused: it could not take effect."""


GENERATOR_TIMINGS = ("train_s", "sample_s", "samples_per_s", "retrain_s", "wait_s")
"""A retrain's timings, reported as `perf/generator/<name>`: the wall time of the diffusion
training, of the sampling, generated rows per second, the whole retrain in its thread, and how
long the trial waited for it at the end of its iteration."""
GENERATION_POLICY_CHUNK = 65_536
"""States per forward when a retrain takes the policy's actions in every online state."""


@dataclass(frozen=True)
class Phase:
    """One stage of a trial: a name, a budget, the unit the budget counts, and whether it
    changes the policy. A phase that does not (SPOT's VAE pretraining) is not evaluated, neither
    at RLlib's interval nor at its end: its score would be that of a policy no phase has trained."""

    name: str
    budget: int
    unit: str  # "updates" or "env_steps"
    trains_policy: bool = True


class O2OConfig(AlgorithmConfig):
    """Settings every O2O method shares; methods subclass it and add their hyperparameters.

    Each field below is set with `.o2o(...)`; a method's own fields with `.training(...)`.
    """

    algorithm_name: ClassVar[str] = ""
    """The name the registry (`o2o.algorithms`) knows this config's algorithm by, set there:
    the `o2o.algorithm` tag of every run."""
    has_priority_source: ClassVar[bool] = False
    """Whether the method's learner sets row priorities of its own (`O2OLearner.priority_source`
    under `prioritized`): the `prioritized` rule is refused where it does not."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or O2OAlgorithm)
        self.dataset_id: str | None = None
        """Name of the dataset as the user gave it (tags and reports)."""
        self.dataset_hash: str | None = None
        """Content hash of the canonical table, checked again when a checkpoint is restored."""
        self.offline_updates: int = 0
        """Gradient updates of the offline phase (paper protocol: 1M)."""
        self.online_env_steps: int = 0
        """Environment steps of the online phase."""
        self.seeds_per_trial: int = 1
        """Seeds this trial trains side by side: `seed`, `seed` + 1, …, each with its own
        networks, optimizer state, minibatches, environment and evaluation (the spec's
        `seeds_per_trial`; see "K seeds in one trial" in the module docstring)."""
        self.updates_per_iteration: int = 1000
        """Offline updates per `train()` call; one learner call runs them all."""
        self.env_steps_per_iteration: int = 1000
        """Online environment steps per `train()` call."""
        self.utd_ratio: float = 1.0
        """Online gradient updates per environment step (RLPD: 20); a fractional part carries
        over from step to step, so 0.5 is one update every other step."""
        self.sampling_rule: str = "union"
        """Online minibatch rule: offline | union | ratio | online | prioritized | balanced (see
        `o2o.platform.replay`)."""
        self.offline_fraction: float = 0.5
        """Dataset share of each online minibatch under the `ratio` rule."""
        self.offline_fraction_end: float | None = None
        """Under `ratio`: anneal the dataset share linearly from `offline_fraction` to this over
        `anneal_env_steps` online steps (None keeps it fixed)."""
        self.anneal_env_steps: int = 0
        """Online steps over which `offline_fraction` anneals to `offline_fraction_end`."""
        self.balanced_temperature: float = 5.0
        """Under `balanced`: T in the priorities w(s, a)^(1/T) (Lee et al. 2021, Off2OnRL
        `--temperature`; OPT uses 5 too)."""
        self.density_ratio_lr: float = 3e-4
        """Under `balanced`: Adam step size of the density-ratio network (Off2OnRL `--weight_net_lr`)."""
        self.density_ratio_batch_size: int = 256
        """Under `balanced`: size of each of the offline and online minibatches the density-ratio
        network trains on per update (Off2OnRL `--weight_net_batch_size`)."""
        self.online_buffer_capacity: int = 1_000_000
        """Online rows kept; the oldest are overwritten beyond it."""
        self.random_steps: int = 0
        """Online steps taken with uniform random actions first (RLPD/SAC from scratch: 5k)."""
        self.learning_starts: int = 0
        """Online transitions collected before online updates begin (E2O: 1000)."""
        self.weight_sync_interval: int = 1
        """Environment steps between learner → EnvRunner weight syncs (1: act on fresh weights)."""
        self.tau: float = 0.005
        """Polyak coefficient of the target networks."""
        self.hidden_sizes: list[int] = [256, 256]
        """Hidden layer widths of every network of the method (papers: 256×2)."""
        self.critic_hidden_sizes: list[int] | None = None
        """Hidden layer widths of the value networks (the Q-ensemble, and V where the method has
        one) when they differ from the actor's (E2O: 3×256 critics); None: `hidden_sizes`."""
        self.num_critics: int = 2
        """Critics in the method's Q-ensemble, one batched module (RLPD: 10)."""
        self.critic_layer_norm: bool = False
        """LayerNorm after each hidden layer of the critics (RLPD)."""
        self.target_critic_subset: int | None = None
        """TD targets take the min over this many randomly chosen target critics per update
        (RLPD: 2 of 10); None takes the min over all of them."""
        self.phase_overrides: dict[str, dict[str, Any]] = {}
        """Per-phase hyperparameter values, e.g. {"online": {"actor_lr_schedule": "constant"}}."""
        self.normalize_observations: bool = False
        """Standardize states by the dataset's per-dimension mean and std + 1e-3, in the replay
        and in the EnvRunners' forwards alike (TD3+BC §5, SPOT)."""
        self.reward_normalization: str = "none"
        """"return_range" multiplies every reward by 1000 / (max − min episode return of the
        dataset), offline and online (IQL's locomotion setting); "none" keeps raw rewards."""

        # A generator on any base (`o2o.generators`): None leaves the replay to real rows. A
        # generator field left None takes its authors' value for this base (`authors_settings`).
        self.generator: str | None = None
        """"edis" (energy-guided diffusion sampling) or "cfdg" (classifier-free diffusion
        generation): a diffusion model, retrained online, writing rows into the replay."""
        self.generator_schedule: str | None = None
        """"mix" (every online update takes `generated_fraction` generated rows) or "burst"
        (`burst_updates` extra updates after each retrain take them); None: the authors' choice
        for the base (IQL-EDIS burst, Cal-QL-EDIS and CFDG mix)."""
        self.generated_fraction: float | None = None
        """Share of a generated minibatch drawn from the generated rows (EDIS's
        `offline_mixing_ratio`: IQL 0.2, Cal-QL 0.5; CFDG one third); None: the authors'."""
        self.burst_updates: int = 20
        """Under "burst": the extra updates right after each retrain (IQL-EDIS's `utd_ratio`)."""
        self.generator_retrain_env_steps: int = 10_000
        """Online env steps between retrains, the first after this many (EDIS: 10k). A retrain
        starts only once the last one's rows have landed."""
        self.generator_landing_iterations: int | None = None
        """Where a retrain's rows land. None: at the end of the first online iteration by which
        it has finished, so the trial never waits for it (where they land depends on how fast
        this machine trains). k: at the end of the k-th online iteration counted from the one it
        started in (1: that iteration's), waiting there if it is still running, so a seed repeats
        exactly on any machine. The authors' code retrains between env steps, which waits."""
        self.generator_train_steps: int | None = None
        """Diffusion training steps per retrain, from scratch (EDIS: IQL 30k, Cal-QL 10k); None:
        the authors'."""
        self.generated_samples: int = 100_000
        """Rows generated per retrain, replacing the last retrain's (EDIS: 100k)."""
        self.generator_sample_steps: int = 128
        """Sampler steps per generated row (EDIS, SynthER: 128)."""
        self.generator_width: int = 1024
        """Width of the residual MLP denoiser (EDIS: 1024; SynthER: 2048)."""
        self.generator_depth: int = 6
        """Residual blocks of the denoiser (EDIS: 6)."""
        self.generator_batch_size: int = 256
        """Minibatch of the diffusion model's and the energies' training steps (EDIS: 256)."""
        self.energy_scales: dict[str, float] = {"state": 2.0, "policy": 0.1, "transition": 0.1}
        """EDIS: scale of each energy's gradient in the guidance (the code's `ope_clip`,
        `pe_clip`, `te_clip`); 0 turns an energy off, all 0 samples unguided (SynthER)."""
        self.energy_train_steps: int = 20
        """EDIS: contrastive steps of each energy per retrain (the code's `energy_train_epoch`)."""
        self.energy_negatives: int = 10
        """EDIS: unguided negatives per positive in the InfoNCE loss (the code's `num_negative_sample`)."""
        self.guidance_weight: float = 2.0
        """CFDG: w in D̃ = D(x; ∅) + w·(D(x; c) − D(x; ∅)); the reviews' w′ in
        ε̃ = (1 + w′)·ε(x, c) − w′·ε(x, ∅) is w − 1. 1 samples the plain conditional model."""
        self.online_share: float = 0.8
        """CFDG: share of generated rows labelled online (the paper's 8:2)."""
        self.ratio_clip: float = 10.0
        """CFDG: the generated rows' density-ratio weights are clipped to [1/c, c]."""

        # RLlib settings that suit O2O: one local EnvRunner stepping one env. Evaluation is o2o's
        # own (`O2OAlgorithm.evaluate`): `evaluation_duration` whole episodes of the deterministic
        # policy every `evaluation_interval` iterations, on no EnvRunner of RLlib's, so the
        # settings of RLlib's evaluation runners stay unset (`_validate_evaluation`).
        self.num_env_runners = 0
        self.rollout_fragment_length = 1
        self.train_batch_size_per_learner = 256
        self.lr = 3e-4
        self.gamma = 0.99
        self.evaluation_interval = 10
        self.evaluation_duration = 10
        self.evaluation_duration_unit = "episodes"
        self.evaluation_num_env_runners = 0
        self.env_runner_cls = O2OEnvRunner
        self.materialize_data = True
        # Ray Data's read tasks ask for a sliver of a CPU: asking for whole ones beside the trials'
        # deadlocks a small machine (DESIGN.md).
        self.input_read_method_kwargs = {"num_cpus": 0.01}

    def o2o(
        self,
        *,
        dataset_id: str | None = NotProvided,
        dataset_hash: str | None = NotProvided,
        offline_updates: int = NotProvided,
        online_env_steps: int = NotProvided,
        seeds_per_trial: int = NotProvided,
        updates_per_iteration: int = NotProvided,
        env_steps_per_iteration: int = NotProvided,
        utd_ratio: float = NotProvided,
        sampling_rule: str = NotProvided,
        balanced_temperature: float = NotProvided,
        density_ratio_lr: float = NotProvided,
        density_ratio_batch_size: int = NotProvided,
        offline_fraction: float = NotProvided,
        offline_fraction_end: float | None = NotProvided,
        anneal_env_steps: int = NotProvided,
        online_buffer_capacity: int = NotProvided,
        random_steps: int = NotProvided,
        learning_starts: int = NotProvided,
        weight_sync_interval: int = NotProvided,
        tau: float = NotProvided,
        hidden_sizes: list[int] = NotProvided,
        critic_hidden_sizes: list[int] | None = NotProvided,
        num_critics: int = NotProvided,
        critic_layer_norm: bool = NotProvided,
        target_critic_subset: int | None = NotProvided,
        phase_overrides: dict[str, dict[str, Any]] = NotProvided,
        normalize_observations: bool = NotProvided,
        reward_normalization: str = NotProvided,
        generator: str | None = NotProvided,
        generator_schedule: str | None = NotProvided,
        generated_fraction: float | None = NotProvided,
        burst_updates: int = NotProvided,
        generator_retrain_env_steps: int = NotProvided,
        generator_train_steps: int | None = NotProvided,
        generated_samples: int = NotProvided,
        generator_sample_steps: int = NotProvided,
        generator_width: int = NotProvided,
        generator_depth: int = NotProvided,
        generator_batch_size: int = NotProvided,
        generator_landing_iterations: int | None = NotProvided,
        energy_scales: dict[str, float] = NotProvided,
        energy_train_steps: int = NotProvided,
        energy_negatives: int = NotProvided,
        guidance_weight: float = NotProvided,
        online_share: float = NotProvided,
        ratio_clip: float = NotProvided,
    ) -> O2OConfig:
        """Set the engine's fields (budgets, replay, sync); see each field's docstring."""
        for key, value in dict(locals()).items():
            if key != "self" and value is not NotProvided:
                setattr(self, key, value)
        return self

    def training(self, **kwargs: Any) -> O2OConfig:
        """Set RLlib's training settings and the method's hyperparameters by name."""
        own = {k: v for k, v in kwargs.items() if k in self.hyperparameter_names()}
        super().training(**{k: v for k, v in kwargs.items() if k not in own})
        for key, value in own.items():
            setattr(self, key, value)
        return self

    @classmethod
    def hyperparameter_names(cls) -> set[str]:
        """Fields a tune spec may set: the engine's and the method's documented fields."""
        base = set(vars(AlgorithmConfig()))
        engine = set(inspect.signature(O2OConfig.o2o).parameters) - {"self"}
        own = {k for k in vars(cls()) if k not in base} | engine
        # The budgets are the spec's `budgets` section; the dataset fields are set per trial.
        return (own | {"lr", "gamma", "train_batch_size_per_learner"}) - {
            "dataset_id",
            "dataset_hash",
            "offline_updates",
            "online_env_steps",
            "seeds_per_trial",
        }

    @property
    def algorithm_label(self) -> str:
        """The algorithm as runs and reports name it: the registry's name, with "+<generator>"
        where a generator runs (`iql+edis`)."""
        return f"{self.algorithm_name}+{self.generator}" if self.generator else self.algorithm_name

    def generator_settings(self) -> dict[str, Any]:
        """The generator fields in force: each one set, or the authors' value for this base."""
        from o2o.generators import authors_settings

        if self.generator is None:
            return {}
        fields = [f for group in GENERATOR_FIELDS.values() for f in group]
        settings = {f: getattr(self, f) for f in fields}
        for key, value in authors_settings(self.generator, self.algorithm_name).items():
            if settings[key] is None:
                settings[key] = value
        return settings

    def for_phase(self, phase: str) -> O2OConfig:
        """A copy of this config with `phase_overrides[phase]` applied: the settings in force
        during that phase, for the learner's losses and the algorithm's loop alike."""
        config = self.copy(copy_frozen=False)
        for key, value in self.phase_overrides.get(phase, {}).items():
            setattr(config, key, value)
        return config

    @property
    def has_dataset(self) -> bool:
        """Whether a trial of this config reads a dataset: RLlib's `input_` names one (its
        default, "sampler", means none)."""
        return bool(self.input_) and self.input_ != "sampler"

    @property
    def module_class(self) -> type:
        """The method's RLModule class."""
        raise NotImplementedError

    def network_config(self) -> dict[str, Any]:
        """What the method's RLModule needs to build its networks."""
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "critic_hidden_sizes": list(self.critic_hidden_sizes or self.hidden_sizes),
            "num_critics": self.num_critics,
            "critic_layer_norm": self.critic_layer_norm,
        }

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=self.module_class, model_config=self.network_config())

    def validate(self) -> None:
        # o2o runs only on RLlib's new API stack; RLlib's once-per-process notice that it is
        # the default says nothing to our users, so it is marked as already shown.
        log_once(f"{self.algo_class.__name__}_on_new_api_stack")
        super().validate()
        if self.num_learners > 0 or self.num_env_runners > 0:
            # A remote learner fails in `O2OAlgorithm._learner`; remote EnvRunners would sit idle.
            self._value_error(
                f"num_learners ({self.num_learners}) and num_env_runners ({self.num_env_runners}) must be 0: "
                "o2o runs its learner, collects and evaluates in the trial's own process"
            )
        self._validate_evaluation()
        if self.offline_updates < 0 or self.online_env_steps < 0:
            self._value_error("budgets must be >= 0")
        if self.offline_updates > 0 and not self.has_dataset:
            self._value_error("an offline phase needs a dataset (config.offline_data(input_=...))")
        if self.reward_normalization not in REWARD_NORMALIZATIONS:
            self._value_error(
                f"reward_normalization {self.reward_normalization!r} is not one of {REWARD_NORMALIZATIONS}"
            )
        if self.sampling_rule not in SAMPLING_RULES:
            self._value_error(f"sampling_rule {self.sampling_rule!r} is not one of {SAMPLING_RULES}")
        rules = [self.sampling_rule, *(o.get("sampling_rule") for o in self.phase_overrides.values())]
        if "balanced" in rules and not self.has_dataset:
            self._value_error(
                "sampling_rule balanced weighs each row by how online it looks against the dataset: "
                "it needs a dataset (config.offline_data(input_=...))"
            )
        if "prioritized" in rules and not self.has_priority_source:
            self._value_error(
                f"sampling_rule prioritized draws rows by priorities the method sets, and "
                f"{self.algorithm_name or type(self).__name__} sets none; balanced replay's priorities are "
                "sampling_rule balanced"
            )
        self._validate_generator(rules)
        self._validate_seeds()
        for field in ("hidden_sizes", "critic_hidden_sizes"):
            widths = getattr(self, field)
            if field == "critic_hidden_sizes" and widths is None:
                continue
            if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
                self._value_error(f"{field} must be a non-empty list of positive layer widths, got {widths!r}")
        if self.num_critics < 1 or not 1 <= (self.target_critic_subset or 1) <= self.num_critics:
            self._value_error(
                f"num_critics ({self.num_critics}) must be >= 1 and target_critic_subset "
                f"({self.target_critic_subset}) between 1 and num_critics"
            )
        fractions = [self.offline_fraction] + ([] if self.offline_fraction_end is None else [self.offline_fraction_end])
        if any(not 0.0 <= f <= 1.0 for f in fractions):
            self._value_error(f"offline_fraction and offline_fraction_end must lie in [0, 1], got {fractions}")
        if self.offline_fraction_end is not None and self.anneal_env_steps < 1:
            self._value_error("offline_fraction_end needs anneal_env_steps >= 1")
        if self.balanced_temperature <= 0 or self.density_ratio_lr <= 0 or self.density_ratio_batch_size < 1:
            self._value_error("balanced_temperature, density_ratio_lr and density_ratio_batch_size must be positive")
        if self.utd_ratio <= 0 or self.weight_sync_interval < 1 or self.updates_per_iteration < 1:
            self._value_error("utd_ratio, weight_sync_interval and updates_per_iteration must be positive")
        known = self.hyperparameter_names()
        routed = sorted(k for k in known if k.startswith("evaluation_"))
        if routed:
            self._value_error(
                f"{type(self).__name__} fields {routed}: RLlib passes every config key starting with "
                "'evaluation_' to .evaluation(), so a trial's config rebuilt by Tune would lose them; rename them"
            )
        phases = [p.name for p in self.algo_class.phases(self)]
        for phase, overrides in self.phase_overrides.items():
            if phase not in phases:
                self._value_error(f"phase_overrides[{phase!r}]: {self.algo_class.__name__} has no such phase (its phases: {', '.join(phases)})")
            unknown = sorted(set(overrides) - known)
            if unknown:
                self._value_error(f"phase_overrides[{phase!r}] sets unknown fields {unknown}")
            fixed = self.fixed_at_build(overrides)
            if fixed:
                reasons = "; ".join(f"{k}: {why}" for k, why in fixed.items())
                self._value_error(
                    f"phase_overrides[{phase!r}] cannot change {', '.join(fixed)} ({reasons}); "
                    "set it in hyperparameters for the whole trial"
                )

    def _validate_seeds(self) -> None:
        """Refuse a K-seed trial its method or settings cannot run per seed, with the reason."""
        k = self.seeds_per_trial
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            self._value_error(f"seeds_per_trial must be an integer >= 1, got {k!r}")
        if k == 1:
            return
        refusals = {
            "generator": self.generator is not None
            and "a generator trains one diffusion model on one seed's replay; run one seed per trial",
            "target_critic_subset": self.target_critic_subset is not None
            and "the random subset of target critics is drawn once per update, for one seed",
        }
        for name, reason in refusals.items():
            if reason:
                self._value_error(f"seeds_per_trial {k} with {name}: {reason}")
        learner = self.get_default_learner_class()
        if not learner.__dict__.get("seeds_batched", False):
            self._value_error(
                f"seeds_per_trial {k}: {self.algorithm_label} trains one seed per trial: "
                f"{learner.seeds_refused_because} ({learner.__name__}). Set seeds_per_trial: 1"
            )

    def _validate_generator(self, rules: list[str | None]) -> None:
        """Refuse generator settings that could not take effect, before any trial is built."""
        from o2o.generators import GENERATOR_SCHEDULES, GENERATORS

        defaults = O2OConfig()
        if self.generator is not None and self.generator not in GENERATORS:
            self._value_error(f"generator {self.generator!r} is not one of {GENERATORS}")
        for owner, fields in GENERATOR_FIELDS.items():
            if self.generator is not None and owner in (None, self.generator):
                continue
            stray = [f for f in fields if getattr(self, f) != getattr(defaults, f)]
            if stray:
                where = "no generator runs" if self.generator is None else f"the generator is {self.generator}"
                self._value_error(f"{', '.join(stray)} cannot take effect: {where} (they are {owner or 'a generator'}'s)")
        in_phases = sorted({k for o in self.phase_overrides.values() for k in o} & {"generator", *GENERATOR_FIELDS[None], *GENERATOR_FIELDS["edis"], *GENERATOR_FIELDS["cfdg"]})
        if in_phases:
            self._value_error(f"phase_overrides cannot set {', '.join(in_phases)}: a generator runs in the online phase, set for the whole trial")
        if self.generator is None:
            return
        settings = self.generator_settings()
        if settings["generator_schedule"] not in GENERATOR_SCHEDULES:
            self._value_error(f"generator_schedule {settings['generator_schedule']!r} is not one of {GENERATOR_SCHEDULES}")
        if settings["generator_schedule"] == "mix" and self.burst_updates != defaults.burst_updates:
            self._value_error("burst_updates cannot take effect with generator_schedule mix: there are no bursts")
        if not 0.0 < settings["generated_fraction"] <= 1.0:
            self._value_error(f"generated_fraction must lie in (0, 1], got {settings['generated_fraction']}")
        prioritized = sorted({r for r in rules if r in ("prioritized", "balanced")})
        if prioritized:
            self._value_error(
                f"a generator cannot run beside sampling_rule {prioritized[0]}: generated rows carry no priorities"
            )
        counts = ("burst_updates", "generator_retrain_env_steps", "generator_train_steps", "generated_samples",
                  "generator_width", "generator_depth", "generator_batch_size", "energy_train_steps", "energy_negatives")
        bad = [f for f in counts if settings[f] < 1]
        landing = settings["generator_landing_iterations"]
        if landing is not None and (isinstance(landing, bool) or not isinstance(landing, int) or landing < 1):
            self._value_error(f"generator_landing_iterations must be None or an integer >= 1, got {landing!r}")
        if bad or settings["generator_sample_steps"] < 2:
            self._value_error(f"{', '.join(bad) or 'generator_sample_steps'} must be positive (generator_sample_steps >= 2)")
        scales = settings["energy_scales"]
        if not isinstance(scales, dict) or set(scales) != {"state", "policy", "transition"} or any(v < 0 for v in scales.values()):
            self._value_error(f"energy_scales must give state, policy and transition a scale >= 0, got {scales!r}")
        if not 0.0 <= settings["online_share"] <= 1.0 or settings["ratio_clip"] < 1.0:
            self._value_error("online_share must lie in [0, 1] and ratio_clip be >= 1")
        # The first retrain starts with the online iteration at `first` env steps; its rows land
        # at the end of the iteration `landing` − 1 iterations later (the same one, at best).
        per_iteration = self.for_phase("online").env_steps_per_iteration
        first = -(-settings["generator_retrain_env_steps"] // per_iteration) * per_iteration
        lands_after = (landing or 1) - 1
        if first + lands_after * per_iteration >= self.online_env_steps:
            self._value_error(
                f"the generator cannot take effect: its first retrain starts with the online iteration at {first} "
                f"env steps (generator_retrain_env_steps {settings['generator_retrain_env_steps']}, "
                f"env_steps_per_iteration {per_iteration}) and its rows land {lands_after} iteration(s) later, "
                f"past online_env_steps {self.online_env_steps}"
            )

    def _validate_evaluation(self) -> None:
        """Refuse evaluation settings o2o's evaluation (`O2OAlgorithm.evaluate`) cannot honour:
        it runs `evaluation_duration` whole episodes of the deterministic policy in the trial's
        process, after the iteration, on seeds derived from the trial's seed."""
        duration = self.evaluation_duration  # RLlib's validation has made it "auto" or an int > 0
        if not isinstance(duration, int) or duration > EVAL_SEEDS_PER_TRIAL:
            self._value_error(
                f"evaluation_duration is the number of evaluation episodes, at most {EVAL_SEEDS_PER_TRIAL}; got {duration!r}"
            )
        if self.seed is not None and self.seed < 0:
            self._value_error(f"seed must be >= 0 (the evaluation seeds derive from it), got {self.seed}")
        unsupported = {
            "evaluation_duration_unit": self.evaluation_duration_unit != "episodes",
            "evaluation_num_env_runners": self.evaluation_num_env_runners != 0,
            "evaluation_parallel_to_training": bool(self.evaluation_parallel_to_training),
            "custom_evaluation_function": self.custom_evaluation_function is not None,
            "evaluation_config": bool(self.evaluation_config),
        }
        refused = [name for name, set_ in unsupported.items() if set_]
        if refused:
            self._value_error(
                f"{', '.join(refused)}: o2o's evaluation runs whole episodes of the deterministic policy "
                "in the trial's process, on seeds derived from the trial's seed, without RLlib's "
                "evaluation EnvRunners, so these settings would not take effect; leave them unset"
            )

    def fixed_at_build(self, overrides: Mapping[str, Any]) -> dict[str, str]:
        """Those of `overrides` that would change something built once per trial — a field of
        `network_config()` or of `BUILD_TIME_FIELDS` — with the reason each cannot take effect."""
        fixed = {}
        built = self.network_config()
        for key, value in overrides.items():
            if key in BUILD_TIME_FIELDS:
                if value != getattr(self, key):
                    fixed[key] = BUILD_TIME_FIELDS[key]
                continue
            changed = self.copy(copy_frozen=False)
            setattr(changed, key, value)
            if changed.network_config() != built:
                fixed[key] = "the networks are built once, before the first phase"
        return fixed


class O2OLearner(TorchLearner):
    """A TorchLearner that owns the replay store and runs many updates per call.

    A method implements `update_step(batch)`: its losses, in the paper's order, and the
    optimizer and target updates. `self.hp` is the config with the current phase's overrides.
    """

    seeds_refused_because: ClassVar[str] = "its update does not run per seed yet"
    """Why a trial of this learner trains one seed (while `seeds_batched` is not set): the
    reason `seeds_per_trial` > 1 is refused with."""

    seeds_batched: ClassVar[bool] = False
    """Whether a trial may train several seeds of this learner at once (`seeds_per_trial`): its
    update computes its losses through `seed_losses`, and everything its hooks read per update is
    a function of the minibatch and the networks. Read from the class itself, not inherited: a
    method on a base confirms its own hooks before it says True."""

    needs_returns_to_go: bool = False
    """Set by methods that read Monte-Carlo returns (Cal-QL): the store then has an
    `mc_returns` column, computed from the dataset's episodes with the config's γ. Online rows
    hold −inf there (no lower bound is known before an episode ends)."""

    def build(self) -> None:
        super().build()
        self.hp: O2OConfig = self.config
        self.phase: Phase | None = None
        self.num_updates = 0
        self.phase_updates = 0
        self.phase_start_env_steps = 0
        """The env-step clock (`env_steps`) when the current phase began."""
        self.replay: ReplayStore | None = None
        self.samplings: list[Sampling] = [Sampling("offline")]
        """The rule each seed's minibatch of the current update was drawn by (set by
        `run_updates`)."""
        self.balancers: list[BalancedReplay] = []
        """The `balanced` rule's density-ratio network of each seed's lane, from the first
        balanced update on."""
        self.row_priorities: list[PrioritySource] = []
        """Per seed's lane, the source that gives its new online rows their priorities: the last
        one a prioritized rule drew by (none while the store keeps no priorities)."""
        self.obs_mean: np.ndarray | None = None
        self.obs_std: np.ndarray | None = None
        self.reward_scale = 1.0
        self.generator: Any = None
        """The trial's generator (`o2o.generators`), a `TransitionGenerator`; None without one."""
        self.retrain_iterations = 0
        """Online iterations ended since the running retrain started (`generator_lands`)."""
        self.lanes: list[ReplayStore] = []
        """Each seed's store, seed 0's (`replay`) first: one dataset, a ring and a sampler each."""
        self._per_seed: PerSeed | None = None
        """The stacked module's per-seed call, made at the first update of a K-seed trial."""

    @property
    def num_seeds(self) -> int:
        """The seeds this learner trains side by side (`seeds_per_trial`)."""
        return self.config.seeds_per_trial

    def _make_module(self) -> Any:
        """RLlib's module; for K seeds, with every tensor stacked over K networks, seed i's
        initialized from the trial's seed + i (seed 0's as a one-seed trial builds it)."""
        module = super()._make_module()
        if self.num_seeds > 1:
            spec = self._module_spec or self.config.get_multi_rl_module_spec()
            copies = []
            for i in range(1, self.num_seeds):
                with seeded(int(self.config.seed or 0) + i):
                    copies.append(spec.build().as_multi_rl_module()[DEFAULT_MODULE_ID])
            stack_seeds(module[DEFAULT_MODULE_ID], copies)
        return module

    def seed_losses(
        self, losses: Any, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`losses(net, batch)` → (the loss to minimize, metrics as 0-d tensors), for every seed
        of the trial: once on the module, or batched over K seeds (`o2o.platform.seeds.PerSeed`),
        the K losses summed (each seed's parameters get their own loss's gradient) and each
        metric (K,). A method whose update a K-seed trial runs computes its losses through this."""
        if self.num_seeds == 1:
            return losses(self.net, batch)
        loss, metrics = self.per_seed(losses, batch)
        return loss.sum(), metrics

    def per_seed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(net, *args)` for every seed: once on the module in a one-seed trial; in a K-seed
        trial batched, seed i's networks and the slices [i] of `args` (each (K, …)), what `fn`
        returns with a leading K (`o2o.platform.seeds.PerSeed`)."""
        if self.num_seeds == 1:
            return fn(self.net, *args)
        if self._per_seed is None:
            self._per_seed = PerSeed(self.net)
        return self._per_seed(fn, *args)

    @property
    def net(self) -> torch.nn.Module:
        """The method's RLModule (single-agent)."""
        return self.module[DEFAULT_MODULE_ID]

    def replay_columns(self, obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
        """Columns the store keeps per transition; methods needing more columns extend this."""
        columns = transition_columns(obs_dim, act_dim)
        if self.needs_returns_to_go:
            columns["mc_returns"] = ()
        return columns

    def offline_columns(self, data: Transitions) -> dict[str, np.ndarray]:
        """The dataset's values for each replay column, actions mapped into [−1, 1] from the
        environment's bounds (`o2o.platform.actions`)."""
        columns = {
            "obs": data.obs,
            "actions": from_env(data.actions, *action_bounds(self.net.action_space)),
            "rewards": data.rewards,
            "new_obs": data.new_obs,
            "terminateds": data.terminateds,
        }
        if self.needs_returns_to_go:
            columns["mc_returns"] = data.returns_to_go(self.config.gamma)
        return columns

    def build_replay(self, data: Transitions | None, obs_dim: int, act_dim: int) -> int:
        """Copy the dataset into device tensors (once per trial) and make room for online rows."""
        columns = self.replay_columns(obs_dim, act_dim)
        offline = None
        if data is not None:
            self._fit_transforms(data)
            offline = self.transform(self.offline_columns(data))
        seed = int(self.config.seed or 0)
        generating = self.config.generator is not None
        self.replay = ReplayStore(
            columns,
            offline,
            self.config.online_buffer_capacity,
            self._device,
            seed,
            generated_capacity=self.config.generated_samples if generating else 0,
            lanes=self.num_seeds,
        )
        self.lanes = [self.replay, *(self.replay.lane(i, seed + i) for i in range(1, self.num_seeds))]
        if generating:
            from o2o.generators import generator_class
            from o2o.generators.diffusion import TransitionLayout

            settings = self.config.copy(copy_frozen=False)
            for key, value in self.config.generator_settings().items():
                setattr(settings, key, value)
            self.generator = generator_class(self.config.generator)(settings, TransitionLayout(obs_dim, act_dim), self._device, seed)
        return self.replay.n_offline

    def _fit_transforms(self, data: Transitions) -> None:
        """Take the state statistics and the reward scale from the dataset, as configured; a
        dataset whose episode returns do not vary has no return range to scale by (the driver
        refuses it first, this guards learners built elsewhere)."""
        from o2o.platform.data import return_range

        if self.config.normalize_observations:
            self.obs_mean = data.obs.mean(0)
            self.obs_std = data.obs.std(0) + 1e-3
            self.net.obs_normalizer.set(self.obs_mean, self.obs_std)
        if self.config.reward_normalization == "return_range":
            self.reward_scale = 1000.0 / return_range(data, self.config.dataset_id or "offline data")

    def transform(self, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows as the networks see them: standardized states, rescaled rewards and returns."""
        rows = dict(rows)
        if self.obs_mean is not None:
            for key in ("obs", "new_obs"):
                rows[key] = (rows[key] - self.obs_mean) / self.obs_std
        if self.reward_scale != 1.0:
            for key in ("rewards", "mc_returns"):
                if key in rows:
                    rows[key] = rows[key] * self.reward_scale
        return rows

    def on_phase_start(self, phase: Phase) -> None:
        """Enter a phase: the config with its overrides becomes `self.hp`. Methods extend this
        hook (a restore re-applies the hyperparameters only, not the method's hook)."""
        self._apply_phase(phase)

    def _apply_phase(self, phase: Phase) -> None:
        self.hp = self.config.for_phase(phase.name)
        self.phase = phase
        self.phase_updates = 0
        self.phase_start_env_steps = self.env_steps
        self._apply_learning_rates()

    def learning_rates(self) -> dict[str, float]:
        """Each parameter group's step size (by the group's name) under the current phase's
        settings: `lr` for every group here. A method with rates of its own (an actor's, a
        temperature's) maps its groups to those fields."""
        return {g["name"]: self.hp.lr for opt in self._named_optimizers.values() for g in opt.param_groups}

    def _apply_learning_rates(self) -> None:
        """Set every optimizer's rates from `learning_rates()` (and the balanced rule's from its
        fields). Optimizers keep the rates they were built with, so this runs at every phase start
        and after a restore: a phase override of any rate takes effect."""
        rates = self.learning_rates()
        for optimizer in self._named_optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rates[group["name"]]
        for balancer in self.balancers:
            balancer.configure(self.hp.density_ratio_lr, self.hp.density_ratio_batch_size, self.hp.balanced_temperature)

    def add_online(self, data: Mapping[str, np.ndarray]) -> None:
        """Append the EnvRunner's rows to the store (methods with extra columns fill them here)."""
        assert self.replay is not None
        if self.needs_returns_to_go and "mc_returns" not in data:
            data = {**data, "mc_returns": np.full(np.shape(data["rewards"]), -np.inf, np.float32)}
        per_lane = [data] if self.num_seeds == 1 else [{k: v[i] for k, v in data.items()} for i in range(self.num_seeds)]
        for i, (lane, lane_data) in enumerate(zip(self.lanes, per_lane)):  # K > 1: (K, n, …), seed i's rows to lane i
            rows = self.transform(lane_data)
            lane.add_online(rows, self.row_priorities[i].priorities_for(rows) if self.row_priorities else None)

    @property
    def env_steps(self) -> int:
        """The learner's env-step clock: online env steps whose rows it has received, over every
        phase (a ring that overwrites old rows keeps counting); restored with the replay."""
        return 0 if self.replay is None else self.replay.total_added

    @property
    def phase_env_steps(self) -> int:
        """Env steps received since the current phase began: the clock of a schedule that runs
        over a phase (SPOT's λ cooling, OPT's κ ramp)."""
        return self.env_steps - self.phase_start_env_steps

    def online_transitions(self) -> int:
        """Online rows the store holds now (at most `online_buffer_capacity`): the engine reports
        it as `data/online_transitions`, so a restored trial shows its buffer came back."""
        assert self.replay is not None
        return self.replay.n_online

    # --- a generator (`o2o.generators`) ---------------------------------------------------------

    def generator_due(self) -> bool:
        """Whether the generator starts a retrain now (asked as an online iteration begins): once
        every `generator_retrain_env_steps` env steps of the online phase, on the learner's
        env-step clock, once the last retrain's rows have landed."""
        if self.generator is None or self.phase is None or self.phase.unit != "env_steps" or self.generator.retraining:
            return False
        return self.phase_env_steps >= (self.generator.retrains + 1) * self.config.generator_retrain_env_steps

    def start_generator(self) -> None:
        """Start the generator's retrain on a snapshot of the store's offline and online rows
        (and, for EDIS, the current policy's actions in the online states); it runs in the
        generator's thread while collection and updates go on (`o2o.generators.base`)."""
        assert self.replay is not None and self.generator is not None
        replay, width = self.replay, self.generator.layout.width
        offline = replay.table[: replay.n_offline, :width]  # never written after the build
        online = replay.table[replay.n_offline : replay.n_offline + replay.n_online, :width].clone()
        actions = None
        if self.generator.needs_policy:
            with torch.no_grad():
                obs = online[:, self.generator.layout.slices["obs"]]
                actions = torch.cat([self.net.act(chunk) for chunk in obs.split(GENERATION_POLICY_CHUNK)])
        self.generator.start_retrain(offline, online, actions)
        self.retrain_iterations = 0

    def stop_generator(self) -> None:
        """End a retrain still running as the trial stops (its rows would never land)."""
        if self.generator is not None:
            self.generator.stop_retrain()

    def generator_lands(self) -> bool:
        """Asked as each online iteration ends: whether the started retrain's rows land now — at
        the `generator_landing_iterations`-th iteration's end since it started, or, where that is
        None, at the first by which it has finished."""
        if self.generator is None or not self.generator.retraining:
            return False
        self.retrain_iterations += 1
        landing = self.config.generator_landing_iterations
        return self.generator.retrain_done() if landing is None else self.retrain_iterations >= landing

    def finish_generator(self) -> dict[str, Any]:
        """Replace the generated region with the started retrain's rows, waiting for them if they
        are not ready (extra columns as online rows have them: Cal-QL's Monte-Carlo return
        unknown, −inf). Returns its metrics with `wait_s` (how long the trial waited for it) and
        `landing_iterations` (the online iterations it ran beside), and `quality`: a sample of
        the generated and of the reference (unguided) rows in the environment's units."""
        assert self.replay is not None and self.generator is not None
        generation, waited = self.generator.finish_retrain()
        layout = self.generator.layout
        rows = layout.unpack(generation.rows)
        for name in self.replay.columns:
            if name not in rows:
                rows[name] = torch.full((len(generation.rows),), -torch.inf, device=generation.rows.device)
        self.replay.set_generated(rows, generation.weights)
        return {
            "metrics": {**generation.metrics, "wait_s": waited, "landing_iterations": self.retrain_iterations},
            "quality": {
                "generated": self.environment_units(layout.unpack(generation.rows[: len(generation.reference)])),
                "reference": self.environment_units(layout.unpack(generation.reference)),
            },
        }

    def environment_units(self, rows: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Store rows back in the environment's units: states unstandardized, rewards unscaled,
        actions mapped back to the env's bounds (the inverse of `transform` and `offline_columns`)."""
        out = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in rows.items()}
        if self.obs_mean is not None:
            for key in ("obs", "new_obs"):
                out[key] = out[key] * self.obs_std + self.obs_mean
        out["rewards"] = out["rewards"] / self.reward_scale
        out["actions"] = to_env(out["actions"], *action_bounds(self.net.action_space))
        return out

    def generated_rows(self) -> int:
        """Generated rows the store holds now (0 before the first retrain)."""
        return 0 if self.replay is None else self.replay.n_generated

    def update_sampling(self, sampling: Sampling, lane: int) -> Sampling:
        """Hook: the rule seed `lane`'s minibatch of this update is drawn by (lane 0 in a one-seed
        trial), given the rule of the learner call (the phase's). The identity here; a method
        that picks a buffer per update overrides it (APL). `run_updates` keeps the answers in
        `self.samplings` for `update_step` to read."""
        return sampling

    def _balancer(self, lane: int) -> BalancedReplay:
        """Lane `lane`'s density-ratio network under the `balanced` rule; every lane's is
        created at the first use."""
        if not self.balancers:
            hp = self.hp
            self.balancers = [
                BalancedReplay(store, hp.hidden_sizes, hp.density_ratio_lr, hp.density_ratio_batch_size, hp.balanced_temperature)
                for store in self.lanes
            ]
        return self.balancers[lane]

    def priority_source(self, rule: str, lane: int) -> PrioritySource | None:
        """The source of the priorities of seed `lane`'s store under `rule`: balanced replay's
        density-ratio network (created on first use) under `balanced`, none under the uniform
        rules. A method whose config sets `has_priority_source` returns its own under
        `prioritized` (BAQ)."""
        return self._balancer(lane) if rule == "balanced" else None

    def minibatch_indices(self, batch_size: int, samplings: Sequence[Sampling]) -> torch.Tensor:
        """Rows of one minibatch, seed i's drawn by `samplings[i]` from its own lane: (B,), or
        (K, B) in a K-seed trial."""
        if self.num_seeds == 1:
            return self.replay.sample_indices(batch_size, samplings[0])
        return torch.stack([lane.sample_indices(batch_size, s) for lane, s in zip(self.lanes, samplings, strict=True)])

    def _update_priorities(
        self, sources: list[PrioritySource], indices: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Each lane's priority source after an update on its rows; metrics (K,) for K seeds."""
        if self.num_seeds == 1:
            return sources[0].update(self.replay, indices, batch)
        per_lane = [
            source.update(lane, indices[i], {k: v[i] for k, v in batch.items()})
            for i, (source, lane) in enumerate(zip(sources, self.lanes))
        ]
        return {k: torch.stack([m[k] for m in per_lane]) for k in per_lane[0]}

    def run_updates(self, num_updates: int, sampling: Sampling) -> dict[str, float | np.ndarray]:
        """K gradient updates, each on minibatches drawn by `update_sampling(sampling, lane)`; under a
        prioritized rule each is followed by its `priority_source`'s update (balanced replay: the
        density-ratio step and the drawn rows' new priorities). Each metric is averaged once, over
        the updates that reported it; in a K-seed trial, per seed: (K,) arrays."""
        assert self.replay is not None
        batch_size = self.hp.train_batch_size_per_learner
        totals: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        with torch.enable_grad():
            for _ in range(num_updates):
                self.samplings = [self.update_sampling(sampling, i) for i in range(self.num_seeds)]
                if sampling.generated_fraction and not self.samplings[0].generated_fraction:
                    # A method that picks its rule per update (APL) keeps the generated share (one seed).
                    self.samplings = [replace(self.samplings[0], generated_fraction=sampling.generated_fraction)]
                sources = [self.priority_source(s.rule, i) for i, s in enumerate(self.samplings)]
                if sources[0] is not None:
                    self.row_priorities = sources
                indices = self.minibatch_indices(batch_size, self.samplings)
                batch = self.replay.gather(indices)
                metrics = self.update_step(batch)
                if sources[0] is not None:
                    metrics = {**metrics, **self._update_priorities(sources, indices, batch)}
                for key, value in metrics.items():
                    totals[key] = totals[key] + value if key in totals else value.detach().clone()
                    counts[key] = counts.get(key, 0) + 1
                self.num_updates += 1
                self.phase_updates += 1
        # Per key: a loss computed on some updates only (a delayed actor step) averages over those.
        means: dict[str, float | np.ndarray] = {
            k: float(v) / counts[k] if v.dim() == 0 else v.cpu().numpy() / counts[k] for k, v in totals.items()
        }
        bad = [k for k, v in means.items() if not np.isfinite(v).all()]
        if bad:
            raise FloatingPointError(
                f"non-finite {', '.join(bad)} in the {self.phase.name} phase before update "
                f"{self.num_updates}; lower the learning rate or check the dataset's rewards"
            )
        return means

    def grouped_adam(self, module_id: str, name: str, groups: list[dict[str, Any]]) -> torch.optim.Adam:
        """One Adam with a parameter group per network, registered with RLlib (so it is
        checkpointed). Methods whose losses touch disjoint parameters sum them and take one step.
        Fused: one kernel steps every tensor (on one CPU thread 0.6 ms against torch's default
        2.1 ms for IQL's 19 tensors, ~10% of its update; benchmarks/README.md); the same
        arithmetic, rounded in another order (|Δθ| ≤ 1e-7 after 20 IQL updates)."""
        optimizer = torch.optim.Adam(groups, lr=self.config.lr, fused=True)
        params = [p for g in groups for p in g["params"]]
        self.register_optimizer(module_id=module_id, optimizer_name=name, optimizer=optimizer, params=params)
        return optimizer

    def target_min(self, q_target: torch.Tensor) -> torch.Tensor:
        """min over the target critics (N, B) → (B,): all of them, or RLPD's random subset of
        `target_critic_subset`, drawn per update from the store's generator (reproducible)."""
        k = self.hp.target_critic_subset
        if k is None or k >= q_target.shape[0]:
            return q_target.min(0).values
        assert self.replay is not None
        chosen = torch.randperm(q_target.shape[0], generator=self.replay.generator, device=q_target.device)[:k]
        return q_target.index_select(0, chosen).min(0).values

    def update_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient update of the method; returns its metrics as 0-d tensors."""
        raise NotImplementedError

    def policy_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy's input for states of the current minibatch, (B, …, obs) with the batch's
        rows first: the states themselves here. The bases a method composes with (IQL, SAC, CQL,
        Cal-QL) pass every actor input through it, so a method that conditions the policy on
        more than the state (FamO2O: the encoded balance coefficient) wraps the base unchanged."""
        return obs

    def drain_distributions(self) -> dict[str, tuple[np.ndarray, tuple[float, float]]]:
        """Values a method recorded since the last call, by name, each with the range a histogram
        of them spans (FamO2O: the balance coefficient chosen in each online state). The engine
        asks after every iteration and reports each one's mean and spread, and its histogram
        where the iteration was evaluated; in a K-seed trial each seed's values are a row of a
        (K, n) array. None here."""
        return {}

    def drain_summaries(self) -> dict[str, float | np.ndarray]:
        """Scalars a method computed over what it recorded since the last call, by metric name
        (FamO2O: how the β chosen in the online states correlates with their value), (K,) in a
        K-seed trial (NaN where a seed has none); the engine asks after every iteration and
        reports them as they are. None here."""
        return {}

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict, fwd_out: dict) -> Any:
        raise NotImplementedError("o2o learners update through run_updates(), not Learner.update()")

    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component("o2o", components, not_components):
            state["o2o"] = {
                "replay": None if self.replay is None else self.replay.get_state(),
                "lanes": [lane.get_state() for lane in self.lanes[1:]],
                "num_updates": self.num_updates,
                "phase": None if self.phase is None else vars(self.phase),
                "phase_updates": self.phase_updates,
                "phase_start_env_steps": self.phase_start_env_steps,
                "torch_rng": torch.get_rng_state().numpy(),
                "balanced": [balancer.get_state() for balancer in self.balancers] or None,
                "generator": None if self.generator is None else self.generator.get_state(),
                "retrain_iterations": self.retrain_iterations,
            }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        own = state.get("o2o")
        if own is None:
            return
        if own["replay"] is not None:
            assert self.replay is not None, "build_replay() runs before a checkpoint is restored"
            self.replay.set_state(own["replay"])
            for lane, lane_state in zip(self.lanes[1:], own.get("lanes", []), strict=True):
                lane.set_state(lane_state)
        if own["phase"] is not None:
            self._apply_phase(Phase(**own["phase"]))
        balanced = own.get("balanced")
        if balanced is not None:  # one state per lane (one, not in a list, before K-seed trials)
            for lane, lane_state in enumerate([balanced] if isinstance(balanced, Mapping) else balanced):
                self._balancer(lane).set_state(lane_state)
            self.row_priorities = list(self.balancers)
        if own.get("generator") is not None:
            assert self.generator is not None, "the checkpoint's trial ran a generator; this config runs none"
            self.generator.set_state(own["generator"])
            self.retrain_iterations = own.get("retrain_iterations", 0)
        self.num_updates = own["num_updates"]
        self.phase_updates = own["phase_updates"]
        self.phase_start_env_steps = own["phase_start_env_steps"]
        torch.set_rng_state(torch.from_numpy(np.asarray(own["torch_rng"], dtype=np.uint8)))


def _mean(values: list[float | np.ndarray]) -> float | np.ndarray:
    """The mean of an iteration's values of one metric: a float, or per seed (K,)."""
    mean = np.mean(values, axis=0)
    return float(mean) if np.ndim(mean) == 0 else mean


def _per_seed(metrics: Mapping[str, float | np.ndarray], k: int) -> list[dict[str, float]]:
    """A K-seed iteration's metrics as K flat dicts: seed i's value of each per-seed metric, the
    shared ones (counters, timings) in every dict; a seed's NaN (nothing measured yet) left out."""
    out: list[dict[str, float]] = [{} for _ in range(k)]
    for key, value in metrics.items():
        for i in range(k):
            v = float(value[i]) if isinstance(value, np.ndarray) else value
            if not (isinstance(value, np.ndarray) and np.isnan(v)):
                out[i][key] = v
    return out


class O2OAlgorithm(Algorithm):
    """Runs the phases of an O2O trial; see the module docstring."""

    config: O2OConfig

    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        self.hp: O2OConfig = self.config
        """The config with the current phase's overrides (set by `on_phase_start`)."""
        self.phase_index = 0
        self.phase_progress = 0
        self.env_steps = 0
        self.updates = 0
        self.completed_returns: list[float] | list[list[float]] = (
            [] if config.seeds_per_trial == 1 else [[] for _ in range(config.seeds_per_trial)]
        )
        """Returns of the online episodes finished so far (a list per seed in a K-seed trial)."""
        self.update_credit = 0.0
        """Online updates owed but not yet run: the fractional part of utd_ratio × env steps."""
        self._weight_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._metrics: dict[str, float | np.ndarray] = {}
        """This iteration's metrics; in a K-seed trial a value measured per seed is a (K,) array."""
        self._scoring = True  # False while step() runs a phase that does not train the policy
        obs_space, act_space = self.env_runner.env.single_observation_space, self.env_runner.env.single_action_space
        data = self._read_offline_data(obs_space, act_space) if self.offline_data is not None else None
        n = self._learner("build_replay", data, int(np.prod(obs_space.shape)), int(np.prod(act_space.shape)))
        self._metrics["data/offline_transitions"] = float(n)
        if self.current_phase is not None:
            self.on_phase_start(self.current_phase)

    def cleanup(self) -> None:
        """Stop the trial: a generator's retrain still running is ended first (its rows would
        never land, and its thread would hold the process up)."""
        try:
            if getattr(self, "learner_group", None) is not None and self.config.generator is not None:
                self._learner("stop_generator")
        finally:
            super().cleanup()

    def _read_offline_data(self, obs_space: Any, act_space: Any) -> Transitions:
        """Materialize RLlib's offline reader once and check it against the env's spaces."""
        from o2o.platform.data import validate

        tables = ray.get(self.offline_data.data.to_arrow_refs())
        source = self.config.dataset_id or str(self.config.input_)
        data = Transitions.from_table(pa.concat_tables(tables), source)
        validate(data, obs_space, act_space, source)
        return data

    # --- the learner, local or remote -------------------------------------------------------

    def _learner(self, method: str, *args: Any) -> Any:
        """Call a method on the (first) learner, in-process when it is local."""
        if self.learner_group.is_local:
            return getattr(self.learner_group._learner, method)(*args)
        results = self.learner_group.foreach_learner(lambda lrn: getattr(lrn, method)(*args))
        return results[0].get() if hasattr(results[0], "get") else results[0]

    # --- phases -------------------------------------------------------------------------------

    @classmethod
    def phases(cls, config: O2OConfig) -> list[Phase]:
        """The phases a trial of `config` runs, in order (one with budget 0 is skipped); methods
        with more stages override this. A class method, so a config can check its
        `phase_overrides` names against it before any trial is built."""
        return [
            Phase("offline", config.offline_updates, "updates"),
            Phase("online", config.online_env_steps, "env_steps"),
        ]

    @property
    def current_phase(self) -> Phase | None:
        active = [p for p in self.phases(self.config) if p.budget > 0]
        return active[self.phase_index] if self.phase_index < len(active) else None

    def on_phase_start(self, phase: Phase) -> None:
        """Begin a phase: the learner takes the phase's overrides; online, EnvRunners take its weights."""
        self.hp = self.config.for_phase(phase.name)
        self._learner("on_phase_start", phase)
        if phase.unit == "env_steps":
            self._sync_weights()

    def _sync_weights(self) -> None:
        """Learner → EnvRunner weights. In one process this is a fused tensor copy (measured:
        RLlib's state round trip took longer than an env step); otherwise RLlib's sync."""
        if self.learner_group.is_local and self.config.num_env_runners == 0:
            if self._weight_pairs is None:
                source = self.learner_group._learner.module[DEFAULT_MODULE_ID].state_dict(keep_vars=True)
                target = self.env_runner.module.state_dict(keep_vars=True)
                self._weight_pairs = ([target[k].data for k in target], [source[k].data for k in target])
            with torch.no_grad():
                torch._foreach_copy_(*self._weight_pairs)
        else:
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

    def training_step(self) -> None:
        phase = self.current_phase
        if phase is None:
            return
        start = time.perf_counter()
        done = self.iterate(phase, phase.budget - self.phase_progress)
        elapsed = time.perf_counter() - start
        self.phase_progress += done
        rate_key = "perf/updates_per_s" if phase.unit == "updates" else "perf/env_steps_per_s"
        self._metrics[rate_key] = done / max(elapsed, 1e-9)
        if self.phase_progress >= phase.budget:
            self.phase_index += 1
            self.phase_progress = 0
            self._phase_ended = True  # the next phase starts in step(), after the evaluation

    def iterate(self, phase: Phase, remaining: int) -> int:
        """One iteration of `phase`, at most `remaining` units; returns the units done. A phase
        counted in updates trains on dataset minibatches (`update_iteration`); one counted in env
        steps collects and trains (`online_iteration`). A method whose phase does otherwise
        overrides this for that phase: OPT's collection runs `collect_online` alone."""
        if phase.unit == "updates":
            return self.update_iteration(phase, min(self.hp.updates_per_iteration, remaining))
        return self.online_iteration(min(self.hp.env_steps_per_iteration, remaining))

    def update_iteration(self, phase: Phase, updates: int, sampling: Sampling = Sampling("offline")) -> int:
        """`updates` learner updates on minibatches drawn by `sampling`, no env step; their
        metrics go under the phase's name."""
        self._record(phase.name, self._learner("run_updates", updates, sampling))
        self.updates += updates
        return updates

    def collect_online(self, steps: int) -> int:
        """`steps` env steps with the EnvRunner's current policy (exploring, or uniform actions
        within `random_steps`), their rows into the replay, and no update: the loop of a phase
        that only collects (OPT's `online_collection`), and the collection half of every online
        iteration."""
        collected = self.env_runner.collect(steps, random_actions=self.env_steps < self.hp.random_steps)
        self._learner("add_online", collected.rows)
        self.env_steps += steps
        if self.config.seeds_per_trial == 1:
            self.completed_returns.extend(collected.episode_returns)
            if self.completed_returns:
                self._metrics["online/episode_return_mean"] = float(np.mean(self.completed_returns[-10:]))
            return steps
        for done, new in zip(self.completed_returns, collected.episode_returns, strict=True):
            done.extend(new)
        if any(self.completed_returns):  # NaN: a seed with no finished episode yet reports none
            self._metrics["online/episode_return_mean"] = np.array(
                [np.mean(r[-10:]) if r else np.nan for r in self.completed_returns]
            )
        return steps

    def online_sampling(self) -> Sampling:
        """The online minibatch rule now: the phase's rule, its dataset share annealed by env steps;
        under a generator's "mix" schedule, once it has generated rows, its generated share."""
        cfg = self.hp
        fraction = cfg.offline_fraction
        if cfg.offline_fraction_end is not None:
            progress = min(self.env_steps / cfg.anneal_env_steps, 1.0)
            fraction += (cfg.offline_fraction_end - fraction) * progress
        sampling = Sampling(cfg.sampling_rule, fraction)
        settings = self.config.generator_settings()
        if settings and settings["generator_schedule"] == "mix" and self._learner("generated_rows"):
            return self.generated_sampling(sampling)
        return sampling

    def generated_sampling(self, sampling: Sampling) -> Sampling:
        """`sampling` with the generator's generated share; the rest by the generator's
        `rest_rule` (EDIS: online rows only) or, where it has none, by `sampling`'s rule."""
        from o2o.generators import generator_class

        fraction = self.config.generator_settings()["generated_fraction"]
        if generator_class(self.config.generator).rest_rule == "online":
            return Sampling("online", generated_fraction=fraction)
        return replace(sampling, generated_fraction=fraction)

    def finish_generator(self) -> None:
        """Land the rows of the learner's generator's retrain (waiting for them if they are not
        ready); its metrics go under `generator/`, its timings under `perf/generator/`, and on MuJoCo tasks
        whose state the observation determines, the dynamics error of its generated rows and of
        the unguided reference rows (`o2o.generators.quality`)."""
        from o2o.generators.quality import VELOCITY_CLIP, dynamics_error

        out = self._learner("finish_generator")
        timings = {k: v for k, v in out["metrics"].items() if k in GENERATOR_TIMINGS}
        self._record("perf/generator", timings)
        self._record("generator", {k: v for k, v in out["metrics"].items() if k not in timings})
        env_id = self.config.env if isinstance(self.config.env, str) else ""
        if env_id in VELOCITY_CLIP:
            for name, rows in out["quality"].items():
                error = dynamics_error(env_id, rows["obs"], rows["actions"], rows["rewards"], rows["new_obs"])
                self._metrics[f"generator/{name}_dynamics_mse"] = error.next_obs_mse
                self._metrics[f"generator/{name}_within_tolerance"] = error.within_tolerance

    def online_iteration(self, steps: int) -> int:
        """`steps` env steps, `utd_ratio` updates per step once `learning_starts` rows are held,
        the EnvRunner's weights synced every `weight_sync_interval` steps."""
        cfg = self.hp
        done = 0
        metrics: list[dict[str, float]] = []
        settings = self.config.generator_settings()
        # A retrain due now runs beside this and later iterations' steps and updates; its rows
        # land at an iteration's end (`generator_landing_iterations`), never in mid-iteration.
        if settings and self._learner("generator_due"):
            self._learner("start_generator")
        while done < steps:
            n = self.collect_online(min(cfg.weight_sync_interval, steps - done))
            done += n
            if self.env_steps >= cfg.learning_starts:
                # The fraction carries over, so a trial runs exactly utd_ratio updates per
                # training env step (UTD 0.5: one update every other step; 2.5: 2, 3, 2, 3, …).
                self.update_credit += cfg.utd_ratio * n
                updates = int(self.update_credit + 1e-9)
                self.update_credit -= updates
                if updates:
                    sampling = self.online_sampling()
                    metrics.append(self._learner("run_updates", updates, sampling))
                    self.updates += updates
                    self._sync_weights()
        if settings and self._learner("generator_lands"):
            self.finish_generator()
            if settings["generator_schedule"] == "burst":
                # IQL-EDIS: right after a retrain, extra updates with the generated share.
                burst = settings["burst_updates"]
                self._record("burst", self._learner("run_updates", burst, self.generated_sampling(self.online_sampling())))
                self.updates += burst
                self._sync_weights()
        if metrics:
            keys = dict.fromkeys(k for m in metrics for k in m)  # a delayed actor's loss is not in every call
            self._record("online", {k: _mean([m[k] for m in metrics if k in m]) for k in keys})
            if sampling.rule == "ratio":
                self._metrics["online/offline_fraction"] = sampling.offline_fraction
        return done

    def _record(self, prefix: str, metrics: Mapping[str, float | np.ndarray]) -> None:
        self._metrics.update({f"{prefix}/{k}": v for k, v in metrics.items()})

    # --- results --------------------------------------------------------------------------------

    def step(self) -> dict:
        started = time.perf_counter()
        self._phase_ended = False
        # A result carries what its own iteration measured: an evaluation's score, or a phase's
        # losses, would otherwise repeat as flat lines through the iterations after. The
        # dataset's size, set once, stays.
        self._metrics = {k: v for k, v in self._metrics.items() if k.startswith("data/")}
        interval = self.config.evaluation_interval
        # RLlib evaluates on its own every `interval` iterations (and then keeps repeating that
        # stale result under "evaluation"); o2o adds one at each phase's end.
        rllib_evaluates = bool(interval) and (self.iteration + 1) % interval == 0
        running = self.current_phase
        running_index = self.phase_index
        self._scoring = running is None or running.trains_policy
        try:
            result = super().step()
            evaluation = result.get("evaluation") if rllib_evaluates else None
            if evaluation is None and self._phase_ended and interval:
                evaluation = self.evaluate()
        finally:
            self._scoring = True  # also after a failed iteration, for the caller's own evaluate()
        finished = self.current_phase is None
        if evaluation:
            self._record_evaluation(evaluation)
        histograms = self._record_distributions(with_histograms=bool(evaluation))
        if self._phase_ended and self.current_phase is not None:
            # After the evaluation, so that a phase's last score is that phase's policy (PEX
            # expands its policy, SPOT resets its optimizers when the online phase starts).
            self.on_phase_start(self.current_phase)
        phase = self.current_phase
        self._metrics["counters/updates"] = float(self.updates)
        self._metrics["counters/env_steps"] = float(self.env_steps)
        # Which phase this iteration ran and how long it took, evaluation included: the report's
        # phase timeline, with the `o2o.phases` tag that names the indices.
        self._metrics["counters/phase"] = float(running_index)
        self._metrics["perf/iteration_s"] = time.perf_counter() - started
        # Asked of the learner after every iteration, whichever phase added the rows.
        self._metrics["data/online_transitions"] = float(self._learner("online_transitions"))
        if self.config.seeds_per_trial == 1:
            result["o2o"] = dict(self._metrics)
        else:
            result["o2o_seeds"] = _per_seed(self._metrics, self.config.seeds_per_trial)
            # The seeds' mean, for Tune's progress; MLflow takes each seed's own (`o2o_seeds`).
            result["o2o"] = {k: float(np.nanmean(v)) if isinstance(v, np.ndarray) else v for k, v in self._metrics.items()}
        result["o2o_step"] = self.updates + self.env_steps
        if any(histograms):
            if self.config.seeds_per_trial == 1:
                result["o2o_histograms"] = histograms[0]
            else:
                result["o2o_histograms_seeds"] = histograms
        result["o2o_tags"] = {
            "dataset_id": str(self.config.dataset_id),
            "dataset_hash": str(self.config.dataset_hash),
            "o2o.algorithm": self.config.algorithm_label,
            "phase": phase.name if phase else "done",
            "o2o.phases": json.dumps([[p.name, p.budget, p.unit] for p in self.phases(self.config) if p.budget > 0]),
        }
        if self.config.generator:
            # Which schedule ran, the authors' per-base default or a spec's choice, for the report.
            result["o2o_tags"]["o2o.generator"] = json.dumps({"generator": self.config.generator, **self.config.generator_settings()})
        result["done"] = finished
        return result

    @classmethod
    def _should_create_evaluation_env_runners(cls, eval_config: AlgorithmConfig) -> bool:
        """Never: o2o evaluates on envs of its own (`evaluate`), so an evaluation EnvRunner of
        RLlib's, and its envs, would only sit idle."""
        return False

    def evaluate(self, *args: Any, **kwargs: Any) -> dict:
        """o2o's evaluation (`o2o.platform.evaluation`): `evaluation_duration` whole episodes of the
        deterministic policy with the learner's current weights, on the trial's evaluation seeds.
        It answers in RLlib's result shape, so RLlib's `step()` files it under "evaluation" every
        `evaluation_interval` iterations, and o2o's `step()` calls it at each phase's end. Within
        `step()` of a phase that does not train the policy (see `Phase.trains_policy`) it is
        skipped and returns no result. RLlib's argument (a parallel training's future) is unused:
        the config refuses parallel evaluation."""
        if not self._scoring:
            return {}
        # The local EnvRunner's module acts, given the learner's weights by a sync (online it holds
        # them already; offline it is otherwise unused).
        self._sync_weights()
        context = EnvContext(self.config.env_config, worker_index=0)
        k = self.config.seeds_per_trial
        if k == 1:
            seeds = evaluation_seeds(self.config.seed, self.config.evaluation_duration)
            return evaluate_policy(self.env_runner.module, lambda: self.env_creator(context), seeds).result()
        # K seeds: each scored on its own evaluation seeds, as its one-seed trial would be.
        first = int(self.config.seed or 0)
        lanes = [
            evaluate_policy(
                SeedView(self.env_runner.module, i),
                lambda: self.env_creator(context),
                evaluation_seeds(first + i, self.config.evaluation_duration),
            ).result()
            for i in range(k)
        ]
        return {
            "env_runners": {
                "episode_return_mean": float(np.mean([r["env_runners"]["episode_return_mean"] for r in lanes])),
                "num_episodes": lanes[0]["env_runners"]["num_episodes"],
            },
            "seed_first": lanes[0]["seed_first"],
            "seeds": lanes,
        }

    def _record_distributions(self, with_histograms: bool) -> list[dict[str, dict[str, list]]]:
        """The learner's recorded distributions (`O2OLearner.drain_distributions`): each one's
        mean and standard deviation as metrics, and on an evaluated iteration its histogram
        (`DISTRIBUTION_BINS` bins over its range), which the tracking callback files as an
        artifact of the run. One histogram dict per seed; in a K-seed trial a distribution's
        values are (K, n), seed i's in row i, and its metrics (K,)."""
        k = self.config.seeds_per_trial
        histograms: list[dict[str, dict[str, list]]] = [{} for _ in range(k)]
        self._metrics.update(self._learner("drain_summaries"))
        for name, (values, (low, high)) in self._learner("drain_distributions").items():
            rows = np.reshape(values, (k, -1))
            if rows.shape[1] == 0:
                continue
            for stat, value in (("mean", rows.mean(1)), ("std", rows.std(1))):
                self._metrics[f"{name}_{stat}"] = value if k > 1 else float(value[0])
            if with_histograms:
                for seed, row in zip(histograms, rows):
                    counts, edges = np.histogram(np.clip(row, low, high), DISTRIBUTION_BINS, (low, high))
                    seed[name] = {"edges": edges.tolist(), "counts": counts.tolist()}
        return histograms

    def _record_evaluation(self, evaluation: Mapping[str, Any]) -> None:
        """The score, and what reproduces it: the episodes run and the first one's reset seed
        (episode k resets with `eval/seed_first` + k; see `o2o.platform.evaluation`); per seed in a
        K-seed trial."""
        lanes = evaluation.get("seeds", [evaluation])
        means = np.array([lane["env_runners"]["episode_return_mean"] for lane in lanes], dtype=np.float64)
        values = {
            "eval/return_mean": means,
            "eval/episodes": np.array([lane["env_runners"]["num_episodes"] for lane in lanes], dtype=np.float64),
            "eval/seed_first": np.array([lane["seed_first"] for lane in lanes], dtype=np.float64),
        }
        env_id = self.config.env if isinstance(self.config.env, str) else ""
        try:
            values["eval/normalized_score"] = np.array([normalized_score(env_id, m) for m in means], dtype=np.float64)
        except ValueError:
            pass  # environments without reference returns report raw returns only
        for key, value in values.items():
            self._metrics[key] = value if "seeds" in evaluation else float(value[0])

    # --- checkpoints ----------------------------------------------------------------------------

    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> dict:
        state = super().get_state(components, not_components=not_components, **kwargs)
        state["o2o"] = {
            "phase_index": self.phase_index,
            "phase_progress": self.phase_progress,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "completed_returns": list(self.completed_returns),
            "update_credit": self.update_credit,
            "collect": self.env_runner.collect_state(),
            "dataset_hash": self.config.dataset_hash,
        }
        return state

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        own = state.get("o2o")
        if own is None:
            return
        if own["dataset_hash"] != self.config.dataset_hash:
            raise ValueError(
                f"checkpoint was trained on dataset {own['dataset_hash']}, this trial reads "
                f"{self.config.dataset_hash}; refusing to continue on different data"
            )
        self.phase_index = own["phase_index"]
        self.phase_progress = own["phase_progress"]
        self.env_steps = own["env_steps"]
        self.updates = own["updates"]
        self.completed_returns = list(own["completed_returns"])
        self.update_credit = own["update_credit"]
        self.env_runner.set_collect_state(own["collect"])
        if self.current_phase is not None:
            self.hp = self.config.for_phase(self.current_phase.name)
            if self.current_phase.unit == "env_steps":
                self._sync_weights()
