"""Shared fixtures: one real Ray for the session, and an isolated o2o/Minari home with a small
dataset made by the platform's own factory."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Datasets and caches of the whole session live in a temporary home; Ray workers inherit it.
_HOME = Path(os.environ.setdefault("O2O_TEST_HOME", f"/tmp/o2o-tests-{os.getpid()}"))
os.environ["O2O_HOME"] = str(_HOME / "o2o")
os.environ["MINARI_DATASETS_PATH"] = str(_HOME / "minari")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray for every test that needs one (starting Ray costs tens of seconds here)."""
    import ray

    for attempt in range(3):
        # Each attempt in its own temp dir, so a failed one can be cleaned up without touching
        # any other Ray on the machine (`ray stop` would kill a user's running sweeps too).
        temp_dir = tempfile.mkdtemp(prefix="ray-tests-", dir="/tmp")
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
            break
        except Exception:
            # A raylet that misses its 30 s registration window (a starved machine) leaves its
            # GCS and agents running; stop them before trying again, or they starve the retry.
            ray.shutdown()
            subprocess.run(["pkill", "-9", "-f", temp_dir], capture_output=True, check=False)
            if attempt == 2:
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread, for a module of tiny models that only lose time to a second one on a
    shared 2-core CPU (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hopper_random():  # noqa: ANN201 - ResolvedDataset
    """3k transitions of uniform-random Hopper-v5, made by the factory (no policy needed)."""
    from o2o.platform.factory import make_dataset

    return make_dataset("hopper-random", size=3000, seed=0)
