"""APL's hyperparameters: TD3+BC's, the online-offline replay buffer's, and the interleaving."""

from __future__ import annotations

from o2o.algorithms.td3bc.config import TD3BCConfig
from o2o.platform.replay import PRIORITIZED_RULES


class APLConfig(TD3BCConfig):
    """Adaptive Policy Learning (Zheng, Luo, et al. "Adaptive Policy Learning
    for Offline-to-Online Reinforcement Learning"; AAAI 2023, arXiv:2303.07693), in its
    TD3+BC instance (GCTD3BC: greedy–conservative TD3+BC).

    Defaults follow the authors' released code (zhan0903/APL0: `agents/td3_bc_gc.py`,
    `off_on_interleave.py`, `config/exp.yaml`); TD3 and TD3+BC fields keep the TD3+BC defaults,
    which that code shares (α 2.5, policy delay 2, target noise 0.2 clipped at 0.5, exploration
    noise 0.1, τ 0.005, Adam 3e-4, batch 256).

    Online-offline replay buffer (OORB). The *offline buffer* holds the dataset and every
    online transition: the engine's store under the phase's `sampling_rule`, `union` by default
    (`explore()` adds each step to both buffers). The *online buffer* holds the newest
    `near_on_policy_size` online transitions: the newest rows of the same store's online ring,
    drawn with `Sampling("online", online_window=near_on_policy_size)`. `sampling_rule:
    offline` instead gives the dataset alone as the pessimistic buffer.

    Per update (`APLLearner.update_sampling`): once the online buffer holds more than
    `min_online_rows` transitions, it is drawn with probability `online_update_probability`
    and the update is optimistic (TD3's actor loss −λ·Q, no behaviour cloning); otherwise the
    offline buffer is drawn and the update is pessimistic (TD3+BC). The offline phase is
    TD3+BC. The choice is made per gradient update whatever `weight_sync_interval` is, and per
    seed in a trial of several (`seeds_per_trial`), each from its own coins and online buffer.

    Interleaving: the released loop collects `--explore_steps` 1000 env steps with a fixed
    policy, then trains `offline_training_steps` 10 000 updates (`config/exp.yaml`) — here
    `weight_sync_interval` 1000 and `utd_ratio` 10. Offline pre-training there is `--T_i` 100k
    updates and fine-tuning `--max_envsteps` 100k env steps (see tune_specs/apl_locomotion.yaml).

    States are not standardized: `td3_bc_gc.py` defines `normalize_states` but never calls it,
    so `normalize_observations` is off (TD3+BC's own default turns it on).
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.apl.algorithm import APLAlgorithm

        super().__init__(algo_class=algo_class or APLAlgorithm)
        self.normalize_observations = False
        self.weight_sync_interval = 1000
        self.utd_ratio = 10.0
        self.online_update_probability: float = 0.5
        """p: chance that an online update draws the online buffer (and is optimistic) once it
        holds enough transitions (the paper's p; `--p_online`)."""
        self.near_on_policy_size: int = 20_000
        """Capacity of the online buffer: the newest online transitions, near-on-policy
        (`--online_size`)."""
        self.min_online_rows: int = 10_000
        """The online buffer is drawn only while it holds more than this many transitions
        (`num_steps_can_sample() > 10000` in `train_offline`)."""

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.apl.learner import APLLearner

        return APLLearner

    def validate(self) -> None:
        super().validate()
        for phase, config in [("", self), *((p, self.for_phase(p)) for p in self.phase_overrides)]:
            where = f" in phase_overrides[{phase!r}]" if phase else ""
            if not 0.0 <= config.online_update_probability <= 1.0:
                self._value_error(f"online_update_probability must lie in [0, 1]{where}")
            if config.sampling_rule == "online":
                self._value_error(f"APL's offline buffer holds the dataset; sampling_rule 'online'{where} has none")
            if config.sampling_rule in PRIORITIZED_RULES and self.seeds_per_trial > 1:
                self._value_error(
                    f"seeds_per_trial {self.seeds_per_trial} with sampling_rule {config.sampling_rule}{where}: each "
                    "seed picks its buffer apart, so one update would refresh some seeds' priorities and not "
                    "the others'; set seeds_per_trial: 1"
                )
            if not 0 <= config.min_online_rows < config.near_on_policy_size:
                self._value_error(
                    f"need 0 <= min_online_rows < near_on_policy_size{where} (else the online buffer is "
                    f"never drawn), got {config.min_online_rows} and {config.near_on_policy_size}"
                )
