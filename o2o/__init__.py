"""o2o: offline-to-online reinforcement learning experiments on Ray."""

from __future__ import annotations

import importlib.metadata
import subprocess
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
