"""Every learner's Adam steps with torch's fused kernel, also after a checkpoint restore: one
kernel for all its tensors instead of a dozen ops per tensor (on one CPU thread 0.6 ms against
2.1 ms per step of IQL's 19 tensors, ~10% of its update; benchmarks/README.md)."""

from __future__ import annotations

import pytest
from torch.profiler import ProfilerActivity, profile

from o2o.algorithms import REGISTRY, config_class
from o2o.platform.engine import O2OLearner, Phase
from o2o.platform.replay import Sampling

from helpers import learner_on_random_transitions

FUSED_KERNEL = "aten::_fused_adam_"


def kernels_of_two_updates(learner: O2OLearner) -> set[str]:
    """Names of the operators two offline updates of `learner` run."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        learner.run_updates(2, Sampling("offline"))
    return {event.name for event in prof.events()}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_learner_steps_with_the_fused_adam_also_after_a_restore(name: str) -> None:
    learner = learner_on_random_transitions(config_class(name)())
    learner.on_phase_start(Phase("offline", 10, "updates"))
    assert FUSED_KERNEL in kernels_of_two_updates(learner), "a fresh learner's Adam step is the fused kernel"

    restored = learner_on_random_transitions(config_class(name)())
    restored.set_state(learner.get_state())
    assert FUSED_KERNEL in kernels_of_two_updates(restored), "a checkpoint restores the fused Adam, not torch's default"
