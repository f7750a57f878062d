"""The local Ray a sweep starts runs its trials at the driver's priority, not at Ray's default
niceness 15, under which any busy process at niceness 0 in the sweep's terminal session or
container takes nearly all of a trial's CPU (benchmarks/README.md: 12 against 38 updates/s)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# In a fresh process, so that it starts a local Ray of its own whatever this session runs; it
# prints the niceness of a task and of an actor (a trial is one) on that Ray.
PROBE = """
import os, sys
import ray
from o2o.platform.sweep import _start_ray, load

_start_ray(load(sys.argv[1]), verbose=1)

@ray.remote
def task():
    return os.nice(0)

@ray.remote
class Actor:
    def niceness(self):
        return os.nice(0)

print("niceness", ray.get(task.remote()), ray.get(Actor.remote().niceness.remote()), os.nice(0))
ray.shutdown()
"""


def test_a_sweeps_local_ray_runs_its_workers_at_the_drivers_niceness(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: niceness
            algorithm: iql
            datasets: [hopper-random]
            budgets: {offline_updates: 10, online_env_steps: 0}
            resources: {cpus_per_trial: 1}
            """
        )
    )
    # Its own Ray temp dir: no `ray start` of this machine is found and joined instead.
    ray_tmp = tempfile.mkdtemp(prefix="ray-nice-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    try:
        run = subprocess.run(
            [sys.executable, "-c", PROBE, str(spec)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-2000:]
    task, actor, driver = (int(v) for v in run.stdout.split("niceness")[-1].split())
    assert (task, actor) == (driver, driver), "a trial's worker runs at the driver's priority, not Ray's 15"
