"""Faults: a killed training run, an unreachable MLflow server.

A kill (SIGTERM or SIGKILL) in the middle of training must leave no model, metrics or run record
in the DVC outputs, and the next ``dvc repro`` must complete; with ``train.resume`` it continues
from the last finished epoch; a SIGTERM ends the MLflow run as KILLED, keeping what it logged. A
tracking server that refuses connections or never answers must stop a stage within seconds, and
before it does any work, with a message naming MLFLOW_TRACKING_URI, or, with
``tracking.required: false``, be skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, make_project, project_env, run, stale_stages, tiny_params_dict

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
    """A tiny clone with every stage up to augment done (no TensorFlow needed so far). Its tests
    change it in turn, in file order (one xdist_group: make test runs them on one worker)."""
    # 20 steps: an epoch of the small plain U-Net takes about a second, as the 3 of sm_unet did,
    # so the kill after the first epoch's backup lands in the second, not after the last
    project = make_project(tmp_path_factory.mktemp("faults") / "project", epochs=2, train__resume=True,
                           train__steps_per_epoch=20)
    run(["dvc", "repro", "augment"], project)
    return project


@pytest.mark.slow
@pytest.mark.xdist_group("prepared_project")
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


def logged_epochs(store: Path) -> int:
    """How many epochs' ``val_dice`` the runs in the SQLite store at ``store`` hold so far."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM metrics WHERE key = 'val_dice'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy
        return 0


@pytest.mark.slow
@pytest.mark.xdist_group("prepared_project")
def test_sigterm_during_training_leaves_no_outputs_and_ends_the_mlflow_run_killed(prepared_project):
    from mlflow import MlflowClient

    project = prepared_project
    params = project / "params.yaml"
    original = params.read_text()
    changed = yaml.safe_load(original)
    changed["epochs"] = 50  # still training when the signal comes after the first epoch
    changed["train"]["resume"] = False  # the throw-away checkpoint folder
    params.write_text(yaml.safe_dump(changed, sort_keys=False))
    try:
        process = start_repro(project, "train")
        wait_for(lambda: logged_epochs(project / "mlflow.db") >= 1, process, "the first epoch's metrics")
        kill_group_and_wait(process, signal.SIGTERM)
    finally:
        params.write_text(original)
    assert process.returncode != 0
    assert "stopped by SIGTERM" in process.stdout.read()
    assert_no_train_outputs(project)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (killed,) = client.search_runs([client.get_experiment_by_name("activeseg").experiment_id])
    assert killed.info.status == "KILLED"  # not RUNNING forever
    assert len(client.get_metric_history(killed.info.run_id, "val_dice")) >= 1  # what it logged is kept
    assert killed.data.params["epochs"] == "50"


@pytest.mark.slow
@pytest.mark.xdist_group("prepared_project")
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


@contextlib.contextmanager
def silent_server(answers_health: bool):
    """An http URI on loopback whose server accepts connections and never answers them, except
    ``/health`` when ``answers_health`` (a server that hangs after the stage's probe)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            held.append(connection)
            if answers_health and connection.recv(4096).startswith(b"GET /health "):
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        listener.close()
        for connection in held:
            connection.close()


@pytest.mark.parametrize("answers_health", [False, True], ids=["silent", "hangs-after-probe"])
def test_server_that_never_answers_fails_within_the_timeout(tmp_path, monkeypatch, tiny_params, answers_health):
    import mlflow  # noqa: F401  (imported before the clock starts: on a busy machine that takes seconds)

    from activeseg.errors import ActivesegError
    from activeseg.tracking import start_run

    # what the README tells users to set; 1 s keeps MLflow's 3 tries (2 retries) short here
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    record = tmp_path / "mlflow_run.json"
    with silent_server(answers_health) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        started = time.monotonic()
        with pytest.raises(ActivesegError, match="MLFLOW_TRACKING_URI"):
            with start_run(tiny_params(), "data", record):
                pytest.fail("a run must not open on a server that does not answer")
        # the 5 s probe, or 3 tries of 1 s and a few seconds of backoff: not MLflow's own minutes
        assert time.monotonic() - started < 30
    assert not record.exists()


@pytest.mark.parametrize("stage", ["query", "evaluate"])
def test_query_and_evaluate_check_the_server_before_any_work(tmp_path, monkeypatch, capsys, stage):
    """``tracking.required: true`` stops at once: not after scoring the pool or the test split."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict()))
    (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": "0123abcd"}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
    # the stage's inputs are missing: only a check made before reading them can stop it first
    outputs = {"query": ["--ingested", "ingested", "--out", "query", "--metrics", "query.json"],
               "evaluate": ["--ingested", "ingested", "--metrics", "evaluate.json", "--per-image", "per_image.csv", "--curve", "curve.csv",
                            "--overlays", "overlays"]}[stage]
    monkeypatch.setattr(sys, "argv", [stage, "--prepared", "prepared", "--model", "model.keras",
                                      "--run-record", "mlflow_run.json", *outputs])
    previous = signal.getsignal(signal.SIGTERM)  # run_main turns SIGTERM into an exception
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO_ROOT / "stages" / f"{stage}.py"), run_name="__main__")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "MLFLOW_TRACKING_URI" in error and "tracking.required: false" in error, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlflow_run.json", "params.yaml"]


def test_unreachable_server_is_skipped_when_tracking_not_required(tmp_path, monkeypatch, capsys, tiny_params):
    from activeseg.tracking import run_to_resume, start_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed_port_uri())
    params = tiny_params(tracking__required=False)
    record = tmp_path / "mlflow_run.json"
    with start_run(params, "data", record) as mlflow:
        assert mlflow is None
    written = json.loads(record.read_text())
    assert written["run_id"] is None and set(written) == {"run_id", "run_name"}
    record.write_text(json.dumps({"run_id": "0123abcd"}))  # a run train opened before the outage
    assert run_to_resume(params.tracking, record) is None
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
