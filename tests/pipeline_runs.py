"""A shared, session-wide pipeline run for the end-to-end tests of reproducibility and scale-out:
one tiny project clone whose whole pipeline ran once with MLFLOW_TRACKING_URI pointing at an
MLflow tracking server (SQLite backend) on loopback. A full run is the costliest step of the
suite, so the tests that only need one share it (import the fixtures into the test module).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import make_project, project_env, run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` with a SQLite backend and proxied artifacts; yields its http URI."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                               "--artifacts-destination", str(folder / "artifacts")],
                              cwd=folder, stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("w"),
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def served_env(project: Path, uri: str) -> dict:
    env = project_env(project)
    env["MLFLOW_TRACKING_URI"] = uri
    return env


@pytest.fixture(scope="session")
def served_project(tmp_path_factory, mlflow_server) -> Path:
    """A tiny clone whose whole pipeline ran once, tracked on :func:`mlflow_server`."""
    project = make_project(tmp_path_factory.mktemp("served") / "project")
    run(["dvc", "repro"], project, env=served_env(project, mlflow_server))
    return project
