"""Faults: a killed training run, an unreachable MLflow server.

A kill (SIGTERM or SIGKILL) in the middle of training must leave no model, metrics or run record
in the DVC outputs, and the next ``dvc repro`` must complete; with ``train.resume`` it continues
from the last finished epoch. An unreachable tracking server must stop a stage within seconds
with a message naming MLFLOW_TRACKING_URI, or, with ``tracking.required: false``, be skipped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import make_project, project_env, run, stale_stages

TRAIN_OUTPUTS = ("models/model.keras", "models/mlflow_run.json", "metrics/train.json", "metrics/train_history.csv")


def closed_port_uri() -> str:
    """An http URI on loopback where nothing listens (a port just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_train_outputs(project: Path) -> None:
    left = [name for name in TRAIN_OUTPUTS if (project / name).exists()]
    assert not left, f"a killed or failed train stage left outputs behind: {left}"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert "train" not in lock["stages"], "dvc.lock records a train stage that did not finish"


def start_repro(project: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``dvc repro`` in its own process group, so a signal reaches DVC and the stage it runs."""
    return subprocess.Popen(["dvc", "repro", *args], cwd=project, env=env or project_env(project),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"dvc repro ended (exit {process.returncode}) before {what}:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory):
    """A tiny clone with every stage up to augment done (no TensorFlow needed so far)."""
    project = make_project(tmp_path_factory.mktemp("faults") / "project", epochs=2, train__resume=True)
    run(["dvc", "repro", "augment"], project)
    return project


@pytest.mark.slow
def test_unreachable_server_stops_train_stage_with_clear_message(prepared_project):
    env = project_env(prepared_project)
    env["MLFLOW_TRACKING_URI"] = uri = closed_port_uri()
    result = run(["dvc", "repro", "train"], prepared_project, check=False, env=env, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors and "MLFLOW_TRACKING_URI" in errors[0] and uri in errors[0], result.stderr[-2000:]
    assert "tracking.required: false" in errors[0]
    assert_no_train_outputs(prepared_project)


def hidden_leftovers(project: Path) -> list[str]:
    """Temporary siblings of atomic writes (``.name.*.tmp``, ``.checkpoint-*``) outside .git / .dvc."""
    return sorted(str(path.relative_to(project)) for path in project.rglob(".*")
                  if (".tmp" in path.name or path.name.startswith(".checkpoint-"))
                  and not {".git", ".dvc"} & set(path.relative_to(project).parts))


def kill_group_and_wait(process: subprocess.Popen, signum: int, timeout: float = 120) -> None:
    """Signal DVC and the stage it runs, and wait until every process of the group has ended:
    a stage outliving DVC could still write outputs that DVC never records."""
    os.killpg(process.pid, signum)
    process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the stage outlived DVC by {timeout} s after signal {signum}")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_during_training_leaves_no_outputs(prepared_project):
    project = prepared_project
    params = project / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("resume: true", "resume: false"))  # the throw-away checkpoint folder
    try:
        process = start_repro(project, "train")
        # the checkpoint folder appears once the model is built, just before fit() starts
        wait_for(lambda: any((project / "models").glob(".checkpoint-*")), process, "training started")
        time.sleep(2)
        kill_group_and_wait(process, signal.SIGTERM)
    finally:
        params.write_text(original)
    assert process.returncode != 0
    assert_no_train_outputs(project)


@pytest.mark.slow
def test_sigkill_mid_training_then_repro_resumes_and_completes(prepared_project):
    project = prepared_project
    backup = project / "models" / "checkpoints" / "backup" / "training_metadata.json"
    process = start_repro(project, "train")
    wait_for(backup.is_file, process, "the first epoch's backup")
    kill_group_and_wait(process, signal.SIGKILL)
    assert_no_train_outputs(project)

    result = run(["dvc", "repro"], project)
    assert "resuming from the backup" in result.stdout + result.stderr
    history = pd.read_csv(project / "metrics" / "train_history.csv")
    assert history["epoch"].tolist() == [1, 2], "the resumed history must hold the epoch run before the kill"
    assert json.loads((project / "metrics" / "train.json").read_text())["epochs_run"] == 2
    assert not (project / "models" / "checkpoints").exists(), "a completed run must delete its backup"
    assert hidden_leftovers(project) == [], "the next run removes what the killed ones left behind"
    assert (project / "metrics" / "evaluate.json").is_file()
    assert stale_stages(project) == {}


def test_unreachable_server_fails_within_seconds(tmp_path, monkeypatch, tiny_params):
    from activeseg.errors import ActivesegError
    from activeseg.tracking import start_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
    record = tmp_path / "mlflow_run.json"
    started = time.monotonic()
    with pytest.raises(ActivesegError, match="MLFLOW_TRACKING_URI"):
        with start_run(tiny_params(tracking__log_model=False), "data", record):
            pytest.fail("a run must not open on an unreachable server")
    # a hang check, not a benchmark: MLflow's own retries would take minutes
    assert time.monotonic() - started < 30
    assert not record.exists()


def test_unreachable_server_is_skipped_when_tracking_not_required(tmp_path, monkeypatch, capsys, tiny_params):
    from activeseg.tracking import resume_run, start_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
    params = tiny_params(tracking__required=False)
    record = tmp_path / "mlflow_run.json"
    with start_run(params, "data", record) as mlflow:
        assert mlflow is None
    assert json.loads(record.read_text()) == {"run_id": None}
    record.write_text(json.dumps({"run_id": "0123abcd"}))  # a run train opened before the outage
    with resume_run(params.tracking, record) as mlflow:
        assert mlflow is None
    assert "runs without tracking" in capsys.readouterr().err


def test_next_write_removes_what_a_killed_writer_left(tmp_path):
    from activeseg.outputs import atomic_path, write_json

    (tmp_path / ".train.json.k1ll3d.tmp.json").write_text('{"half": ')
    (tmp_path / ".ingested.k1ll3d.tmp").mkdir()
    (tmp_path / ".other.json.k1ll3d.tmp.json").write_text("{}")  # another output's: not ours to remove
    write_json(tmp_path / "train.json", {"dice": 0.5})
    with atomic_path(tmp_path / "ingested", directory=True) as staging:
        (staging / "manifest.csv").write_text("id\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.json.k1ll3d.tmp.json", "ingested",
                                                                  "train.json"]
