"""The cluster path as the README gives it: a real Ray head on 127.0.0.1 with its dashboard and
token authentication, a tune spec submitted with `ray job submit --working-dir .`, the job's
results in MLflow, a second submission under the same id refused, a job stopped, and no secret
of the cluster (the Ray token, the MLflow password) written to MLflow or the sweep's files."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
SECRET_PASSWORD = secrets.token_hex(16)


@dataclass(frozen=True)
class Head:
    """A running head: its job API address and the environment a user with the token has."""

    address: str
    port: int
    token: str
    env: dict[str, str]

    def ray(self, command: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `ray job <command> …` as the user would, with the token in the environment."""
        return subprocess.run(
            [RAY, "job", command, "--address", self.address, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )

    def status(self, job_id: str) -> str:
        """The job's status (PENDING, RUNNING, SUCCEEDED, …) from the job API."""
        request = urllib.request.Request(
            f"{self.address}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["status"]

    def wait(self, job_id: str, leaving: tuple[str, ...], timeout: float) -> str:
        """The job's status once it is no longer one of `leaving`."""
        deadline = time.monotonic() + timeout
        while (status := self.status(job_id)) in leaving:
            assert time.monotonic() < deadline, f"job {job_id} still {status} after {timeout:g} s"
            time.sleep(2)
        return status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """`ray start --head` with the dashboard on 127.0.0.1 and `RAY_AUTH_MODE=token`; the
    MLflow password is in the cluster's environment, as a real deployment's would be."""
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "MLFLOW_TRACKING_PASSWORD": SECRET_PASSWORD,
    }
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ray-jobs-", dir="/tmp")
    port = _free_port()
    start = subprocess.run(
        [
            RAY, "start", "--head", "--port=0", "--num-cpus=2", "--disable-usage-stats",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={port}",
            f"--dashboard-agent-listen-port={_free_port()}", f"--temp-dir={temp_dir}",
        ],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    try:
        assert start.returncode == 0, start.stderr[-3000:]
        yield Head(f"http://127.0.0.1:{port}", port, token, env)
    finally:
        # Only this head's processes: `ray stop` would also end any other Ray on the machine.
        subprocess.run(["pkill", "-9", "-f", temp_dir], capture_output=True, check=False)


def test_dashboard_listens_on_loopback_and_wants_the_token(head: Head) -> None:
    listening = {
        c.laddr.ip for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == head.port
    }
    assert listening == {"127.0.0.1"}

    jobs = f"{head.address}/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(jobs, timeout=30)
    assert refused.value.code == 401
    wrong = urllib.request.Request(jobs, headers={"Authorization": f"Bearer {secrets.token_hex(32)}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=30)
    assert refused.value.code in (401, 403)
    right = urllib.request.Request(jobs, headers={"Authorization": f"Bearer {head.token}"})
    with urllib.request.urlopen(right, timeout=30) as response:
        assert response.status == 200


SPEC = """\
    name: job_sweep
    algorithm: iql
    datasets: [hopper-random]
    budgets: {offline_updates: 200, online_env_steps: 100}
    hyperparameters: {updates_per_iteration: 100, env_steps_per_iteration: 100, train_batch_size_per_learner: 64}
    seeds: [0]
    resources: {cpus_per_trial: 0.5}
    evaluation: {interval: 100, episodes: 1}
    storage: runs
"""


def test_submitted_sweep_lands_in_mlflow_once_and_keeps_secrets_out(
    head: Head, hopper_random, tmp_path: Path  # noqa: ANN001 - the dataset fixture
) -> None:
    spec = tmp_path / "job_sweep.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    storage = tmp_path / "shared"  # the cluster's shared volume; the job's own directory is temporary
    job_id = f"o2o-test-{secrets.token_hex(4)}"
    entrypoint = [sys.executable, "-m", "o2o.platform.cli", "sweep", str(spec), "--storage", str(storage)]

    submitted = head.ray("submit", "--submission-id", job_id, "--working-dir", str(REPO), "--no-wait", "--", *entrypoint)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    status = head.wait(job_id, leaving=("PENDING", "RUNNING"), timeout=900)
    logs = head.ray("logs", job_id)
    assert status == "SUCCEEDED", logs.stdout[-5000:]
    assert "1/1 trials finished" in logs.stdout

    # The same id again is refused, and the finished job is left as it was.
    again = head.ray("submit", "--submission-id", job_id, "--working-dir", str(REPO), "--no-wait", "--", *entrypoint)
    assert again.returncode != 0
    assert f"{job_id} already exists" in again.stdout + again.stderr
    assert head.status(job_id) == "SUCCEEDED"

    uri = f"sqlite:///{storage / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("job_sweep")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dataset_hash"] == hopper_random.content_hash
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/normalized_score")]
    assert steps == [200, 400]

    # No secret anywhere a user or a reader of the results could see it: MLflow's params, tags
    # and store, the Tune directory (configs, results, pickled sweep state), the job's logs.
    store = (storage / "mlflow.db").read_bytes()
    assert hopper_random.content_hash.encode() in store  # the scan below reads what was recorded
    for secret in (head.token, SECRET_PASSWORD):
        recorded = [*run.data.params.values(), *run.data.tags.values(), *run.data.params, *run.data.tags]
        assert not any(secret in value for value in recorded)
        assert secret not in logs.stdout + logs.stderr
        for path in storage.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_a_running_job_is_stopped(head: Head) -> None:
    job_id = f"o2o-stop-{secrets.token_hex(4)}"
    submitted = head.ray("submit", "--submission-id", job_id, "--no-wait", "--", sys.executable, "-c", "import time; time.sleep(600)")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert head.wait(job_id, leaving=("PENDING",), timeout=120) == "RUNNING"
    stopped = head.ray("stop", job_id)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert head.status(job_id) == "STOPPED"
