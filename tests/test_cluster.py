"""Many nodes: a sweep on a two-node Ray cluster started on this machine — a head and a second
raylet with CPUs of its own, both on 127.0.0.1 with token authentication, the dataset and the
sweep's storage on one shared path — whose two trials run one on each node. The worker node is
killed (its raylet and every process under it, SIGKILL) once its trial has checkpointed in the
online phase; Tune restarts that trial on the head from its checkpoint, online buffer included,
and each trial keeps one MLflow run holding every step once. The sweep runs as a user runs it:
`o2o sweep` with RAY_ADDRESS set, in a process of its own.

Each node has 3 CPUs and a trial takes 2, so each node holds one trial and a CPU for Ray Data,
which reads a trial's dataset with tasks of a whole CPU (its file listing): on nodes whose every
CPU a trial holds, the read waits for a CPU to come free."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from test_fault_tolerance import (
    ENV_STEPS_PER_ITERATION,
    OFFLINE_UPDATES,
    SPEC,
    UPDATES_PER_ITERATION,
    assert_uninterrupted_history,
    first_result_after_restore,
    online_results,
    the_run,
    trial_results,
)
from test_jobs import RAY, _free_port

ONLINE_ENV_STEPS = 250
TRIAL_CPUS = "{cpus_per_trial: 2}"
"""One trial per 3-CPU node: Ray Data reads the dataset in tasks of a whole CPU."""


@dataclass(frozen=True)
class TwoNodes:
    """A running two-node cluster: the address a driver joins, the environment with its token,
    and each node's raylet (the process every worker of that node runs under)."""

    address: str
    env: dict[str, str]
    head_raylet: int
    worker_raylet: int

    def node_of(self, pid: int) -> str | None:
        """"head" or "worker": the node whose raylet `pid` runs under; None once it is gone."""
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.NoSuchProcess:
            return None
        if self.head_raylet in parents:
            return "head"
        return "worker" if self.worker_raylet in parents else None

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and every process under it: the node is lost."""
        raylet = psutil.Process(self.worker_raylet)
        for process in [*raylet.children(recursive=True), raylet]:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass


def _raylets(temp_dir: str) -> set[int]:
    return {
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "raylet" and temp_dir in " ".join(p.info["cmdline"] or [])
    }


@pytest.fixture
def two_nodes() -> Iterator[TwoNodes]:
    """`ray start --head` and `ray start --address` on 127.0.0.1, three CPUs each, with
    `RAY_AUTH_MODE=token`; only this cluster's processes are killed afterwards (`ray stop` would
    end every Ray on the machine)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ray-nodes-", dir="/tmp")
    port = _free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=3", "--disable-usage-stats", f"--temp-dir={temp_dir}"]

    def start(*args: str) -> None:
        done = subprocess.run([RAY, "start", *args, *common], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    try:
        start("--head", f"--port={port}", "--include-dashboard=false")
        (head,) = _raylets(temp_dir)
        start(f"--address=127.0.0.1:{port}")
        (worker,) = _raylets(temp_dir) - {head}
        yield TwoNodes(f"127.0.0.1:{port}", env, head, worker)
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], capture_output=True, check=False)


def test_a_sweep_spreads_over_two_nodes_and_a_lost_node_s_trial_finishes_on_the_other(
    hopper_random, two_nodes: TwoNodes, tmp_path: Path
) -> None:
    storage = tmp_path / "shared"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(SPEC).format(
            name="two-nodes",
            offline=OFFLINE_UPDATES,
            online=ONLINE_ENV_STEPS,
            per_update_iteration=UPDATES_PER_ITERATION,
            per_env_iteration=ENV_STEPS_PER_ITERATION,
            seeds=[0, 1],
            resources=TRIAL_CPUS,
            storage=storage,
        )
        + f'tracking: {{uri: "sqlite:///{storage}/mlflow.db", experiment: two-nodes}}\n'
    )
    experiment_dir = storage / "two-nodes"
    where: dict[int, str] = {}  # each trial actor's pid → its node, seen while it ran
    killed: dict = {}

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            for results in trial_results(experiment_dir).values():
                pid = results[-1]["pid"]
                if pid not in where and (node := two_nodes.node_of(pid)):
                    where[pid] = node
                done_online = online_results(results)
                if not killed and len(done_online) >= 2 and where.get(done_online[-1]["pid"]) == "worker":
                    killed.update(trial=results[0]["trial_id"], last=done_online[-1])
                    two_nodes.kill_worker_node()
            time.sleep(0.2)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        sweep = subprocess.run(
            [sys.executable, "-m", "o2o.platform.cli", "sweep", str(spec)],
            env={**two_nodes.env, "RAY_ADDRESS": two_nodes.address},
            cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
        )
    finally:
        stop.set()
        watcher.join()
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert "2/2 trials finished" in sweep.stdout, sweep.stdout[-3000:]
    assert killed, "the worker node's trial finished before the node could be killed"

    trials = trial_results(experiment_dir)
    first_nodes = {where.get(results[0]["pid"]) for results in trials.values()}
    assert first_nodes == {"head", "worker"}, f"the two trials started on {first_nodes}, not one per node"

    results = trials[killed["trial"]]
    restored = first_result_after_restore(results)
    assert where[restored["pid"]] == "head" and where[results[-1]["pid"]] == "head", "the lost node's trial finished on the head"
    assert results[-1]["done"] and results[-1]["o2o"]["counters/env_steps"] == ONLINE_ENV_STEPS
    env_steps = restored["o2o"]["counters/env_steps"]
    assert restored["o2o"]["data/online_transitions"] == env_steps, "the checkpointed online rows came back"

    client = MlflowClient(f"sqlite:///{storage}/mlflow.db")
    experiment = client.get_experiment_by_name("two-nodes")
    for trial_id in trials:
        run = the_run(client, experiment.experiment_id, "two-nodes", trial_id)
        assert run.info.status == "FINISHED"
        assert_uninterrupted_history(client, run.info.run_id, ONLINE_ENV_STEPS)
    print(
        "\n"
        + "\n".join(
            f"trial {t}: started on the {where.get(r[0]['pid'])} node (pid {r[0]['pid']}), "
            f"finished on the {where.get(r[-1]['pid'])} node (pid {r[-1]['pid']})"
            for t, r in trials.items()
        )
        + f"\nkilled the worker node after trial {killed['trial']}'s iteration {killed['last']['training_iteration']} "
        f"(env steps {killed['last']['o2o']['counters/env_steps']:.0f}); restored on the head at iteration "
        f"{restored['training_iteration'] - 1} with {env_steps - ENV_STEPS_PER_ITERATION:.0f} online rows, "
        f"first result after the restore: {restored['o2o']['data/online_transitions']:.0f} rows at {env_steps:.0f} env steps"
    )
