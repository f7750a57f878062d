"""o2o: offline-to-online reinforcement learning experiments on Ray."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def code_version() -> dict[str, str]:
    """The code that is running: o2o's release and, in a git checkout, its short commit; recorded
    with every MLflow run and every dataset the factory makes."""
    version = {"o2o.version": importlib.metadata.version("o2o")}
    try:
        version["o2o.git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return version


@contextmanager
def environment_variables(values: Mapping[str, str]) -> Iterator[None]:
    """`values` set in os.environ inside the block, the previous values restored after it: for
    settings a library reads from the environment when it acts (MLflow's request limits, Tune's
    output engine) rather than once at import."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
