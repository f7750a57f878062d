"""Cal-QL's hyperparameters: CQL's, plus calibration and the offline:online mixing."""

from __future__ import annotations

from o2o.algorithms.cql.config import CQLConfig


class CalQLConfig(CQLConfig):
    """Calibrated Q-Learning (Nakamoto, Zhai, Singh, Sobol Mark, Ma, Finn, Kumar, Levine.
    "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning"; NeurIPS 2023,
    arXiv:2303.05479).

    Defaults follow CORL `algorithms/finetune/cal_ql.py` (its `TrainConfig`: CQL's α 10 and
    policy lr 3e-5, 2 hidden layers, mixing ratio 0.5), checked against the authors' code
    nakamotoo/Cal-QL (`JaxCQL/conservative_sac.py`, `conservative_sac_main.py`). Both publish
    settings only for AntMaze and Adroit: α 5 with the Lagrange variant at gap 0.8 and 4×256
    critics on AntMaze, α 1 on Adroit, max-target backup on both (authors: policy lr 1e-4) —
    set them per suite through CQL's fields.

    Online phase. The authors' code keeps calibration on online: its sampler collects whole
    trajectories between training epochs and stores each with its Monte-Carlo return-to-go.
    CORL's port switches calibration off when online training starts (`switch_calibration()`)
    and stores 0 as the online rows' return. We follow CORL and METHODS.md: `calibrate` is off
    online through `phase_overrides`. The engine stores −∞ for online rows (an episode's
    return is unknown until it ends), so `phase_overrides={}` keeps calibration on for the
    dataset rows of each mixed batch only — between the two references.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        from o2o.algorithms.calql.algorithm import CalQLAlgorithm

        super().__init__(algo_class=algo_class or CalQLAlgorithm)
        self.calibrate: bool = True
        """Lower-bound the policy actions' Q-values in the conservative term by the Monte-Carlo
        return-to-go of the batch's state (the Cal-QL objective; `enable_calql` in the authors'
        code, `_calibration_enabled` in CORL); on offline, off online by default."""
        self.phase_overrides = {"online": {"calibrate": False}}
        self.hidden_sizes = [256, 256]  # the authors' `policy_arch`/`qf_arch` and CORL's critics: 256×2
        self.sampling_rule = "ratio"
        self.offline_fraction = 0.5  # `mixing_ratio` in both codes

    def get_default_learner_class(self) -> type:
        from o2o.algorithms.calql.learner import CalQLLearner

        return CalQLLearner
