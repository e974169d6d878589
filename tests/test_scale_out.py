"""Scaling out on existing engines: DVC's experiment queue, an MLflow tracking server, tf.distribute
and a DVC remote. Each test drives the real tool in a tiny project clone.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import (PLAIN_ARCHITECTURE, REPO_ROOT, copy_project, file_digests, project_env, run, set_params,
                      stale_stages, tiny_params_dict)



# --- many experiments: dvc exp run --queue + dvc queue start -j 2 ----------------------------

def queue_states(project: Path) -> dict[str, str]:
    """Experiment name → status (Queued, Running, Success, Failed) from `dvc queue status`,
    whose rows read ``<task> <name> <created> <status>``."""
    states = {}
    for line in run(["dvc", "queue", "status"], project).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in ("Queued", "Running", "Success", "Failed"):
            states[fields[1]] = fields[-1]
    return states


@pytest.mark.slow
def test_queued_experiments_each_land_as_their_own_mlflow_run(finished_project, tmp_path):
    # from a committed finished run, as people queue experiments: they retrain, the data stages are reused
    project = copy_project(finished_project, tmp_path / "project")
    set_params(project, **PLAIN_ARCHITECTURE)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline"], project)
    variants = {"lr-a": "0.003", "lr-b": "0.004"}  # both differ from the baseline: each retrains
    for name, rate in variants.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.learning_rate={rate}"], project)
    # not through run(): the workers DVC starts in the background inherit the command's output, and a
    # pipe held by an idle worker would keep run() waiting until its timeout
    with open(tmp_path / "queue-start.log", "w") as log:
        started = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=project_env(project),
                                 stdout=log, stderr=subprocess.STDOUT, timeout=120)
    assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()
    try:
        deadline = time.monotonic() + 900
        while True:
            states = queue_states(project)
            if states and all(state in ("Success", "Failed") for state in states.values()):
                break
            assert time.monotonic() < deadline, f"queue did not finish: {states}"
            time.sleep(3)
    finally:
        run(["dvc", "queue", "stop"], project, check=False)
    assert states == {name: "Success" for name in variants}, \
        f"{states}\n{run(['dvc', 'queue', 'logs', 'lr-a'], project, check=False).stdout[-3000:]}"

    # every experiment is its own run in the project's store (not in a deleted .dvc/tmp/exps copy)
    assert not list((project / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))
    with sqlite3.connect(project / "mlflow.db") as db:
        runs = dict(db.execute("SELECT value, run_uuid FROM tags WHERE key = 'dvc_exp_name'"))
        assert runs.keys() == variants.keys(), runs
        for name, rate in variants.items():
            logged = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (runs[name],)))
            assert float(logged["train.learning_rate"]) == float(rate)
            dice = db.execute("SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = 'test_dice'",
                              (runs[name],)).fetchone()
            assert dice is not None, f"{name}: evaluate did not log to the experiment's run"

    # `dvc exp apply` brings the experiment back: its params, and outputs that match its MLflow run
    run(["dvc", "exp", "apply", "lr-b"], project)
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["learning_rate"] == 0.004
    run(["dvc", "checkout"], project)
    assert stale_stages(project) == {}, "applied outputs are not the experiment's"
    assert json.loads((project / "models" / "mlflow_run.json").read_text())["run_id"] == runs["lr-b"]
    with sqlite3.connect(project / "mlflow.db") as db:
        dice = db.execute("SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = 'test_dice'",
                          (runs["lr-b"],)).fetchone()[0]
    assert json.loads((project / "metrics" / "evaluate.json").read_text())["dice"] == pytest.approx(dice, abs=1e-6)


# --- shared tracking: an MLflow server with a database backend, and a DVC remote -------------
# (the server and the pipeline run on it are session fixtures in pipeline_runs.py)

@pytest.mark.slow
@pytest.mark.xdist_group("served_project")
def test_pipeline_logs_to_a_shared_tracking_server(served_project, mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    record = json.loads((served_project / "models" / "mlflow_run.json").read_text())
    logged = client.get_run(record["run_id"])  # the run of the latest pipeline execution
    assert logged.info.experiment_id == client.get_experiment_by_name("activeseg").experiment_id
    dice = json.loads((served_project / "metrics" / "evaluate.json").read_text())["dice"]
    assert logged.data.metrics["test_dice"] == pytest.approx(dice, abs=1e-6)
    assert logged.data.params["train.backbone"] == "resnet18"
    def artifact_files(path=None):
        for artifact in client.list_artifacts(record["run_id"], path):
            yield from artifact_files(artifact.path) if artifact.is_dir else [artifact.path]

    assert any(path.endswith("per_image.csv") for path in artifact_files()), "evaluate's table is not on the server"
    assert not (served_project / "mlflow.db").exists(), "nothing may go to the local store"


@pytest.mark.slow
@pytest.mark.xdist_group("served_project")
def test_dvc_remote_push_pull_round_trips_data_and_model(served_project, tmp_path):
    project = served_project
    tracked = ("data/ingested", "data/split", "data/prepared", "data/augmented", "data/query", "models/model.keras")
    before = file_digests(project, tracked)
    run(["dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "remote")], project)
    run(["dvc", "push"], project)
    shutil.rmtree(project / ".dvc" / "cache")
    for name in tracked:
        path = project / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run(["dvc", "pull"], project)
    assert file_digests(project, tracked) == before
    assert stale_stages(project) == {}


# --- bigger training: tf.distribute ---------------------------------------------------------

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from activeseg.runtime import tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from conftest import tiny_params_dict
    from activeseg.distribute import make_strategy
    from activeseg.params import parse_params
    from activeseg.preprocess import SplitArrays, Transform
    from activeseg.runtime import seed_everything
    from activeseg.training import train
    from activeseg.model import load_model

    params = parse_params(tiny_params_dict(train__distribute="mirrored", epochs=2))
    rng = np.random.default_rng(0)
    def arrays(count):
        images = rng.integers(0, 255, (count, 32, 32, 3), dtype=np.uint8)
        return SplitArrays(np.array([str(i) for i in range(count)]), images,
                           (images[..., :1] > 128).astype(np.uint8), np.ones(count, bool))
    seed_everything(params.seed)
    history = train(params.train, params.epochs, Transform(32, 3, "unit", (0.5,) * 3, (0.25,) * 3),
                    arrays(8), arrays(4), sys.argv[2]).history
    prediction = load_model(sys.argv[2]).predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    print(json.dumps({"replicas": make_strategy("mirrored").num_replicas_in_sync,
                      "loss": history["loss"].tolist(), "shape": list(prediction.shape)}))
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_over_two_logical_cpus(tmp_path):
    env = project_env(REPO_ROOT)
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(REPO_ROOT / "tests"),
                             str(tmp_path / "model.keras")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    assert outcome["shape"] == [2, 32, 32, 1]
    assert outcome["loss"][1] < outcome["loss"][0], "the mirrored model did not learn"


def free_port() -> int:
    """A loopback port that nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_train_inputs(folder: Path, size: int = 32) -> None:
    """What the train stage reads, from the built-in synthetic generator: 16 training and 8
    validation images, their transform and a manifest."""
    from activeseg import synthetic
    from activeseg.outputs import write_json
    from activeseg.preprocess import SplitArrays, Transform, save_arrays

    examples = list(synthetic.generate(24, size, 2, 4, 0))

    def arrays(chosen):
        images = np.stack([image for _, image, _ in chosen])
        masks = (np.stack([mask for _, _, mask in chosen])[..., None] > 0).astype(np.uint8)
        return SplitArrays(np.array([image_id for image_id, _, _ in chosen]), images, masks, np.ones(len(chosen), bool))

    save_arrays(folder / "augmented" / "train.npz", arrays(examples[:16]))
    save_arrays(folder / "prepared" / "val.npz", arrays(examples[16:]))
    write_json(folder / "prepared" / "stats.json", Transform(size, 3, "unit", (0.5,) * 3, (0.25,) * 3).to_json())
    (folder / "manifest.csv").write_text("id\n" + "\n".join(image_id for image_id, _, _ in examples) + "\n")


def start_train_stage(inputs: Path, workdir: Path, distribute: str, tf_config: dict | None = None):
    """``stages/train.py`` in its own folder (as on its own host), its outputs under ``workdir``."""
    workdir.mkdir()
    params = tiny_params_dict(epochs=3, train__distribute=distribute, train__architecture="unet_plain",
                              train__plain_filters=8, train__steps_per_epoch=10, train__learning_rate=0.003)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the tiny params set every plannable key, so the plan decides nothing
    (inputs / "plan.json").write_text(json.dumps({"fingerprint": {}, "params": {}, "warnings": []}))
    env = project_env(REPO_ROOT)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [sys.executable, str(REPO_ROOT / "stages" / "train.py"), "--params", "params.yaml", "--plan", str(inputs / "plan.json"),
               "--prepared", str(inputs / "prepared"), "--augmented", str(inputs / "augmented" / "train.npz"),
               "--manifest", str(inputs / "manifest.csv"), "--model", "models/model.keras",
               "--history", "metrics/train_history.csv", "--metrics", "metrics/train.json",
               "--run-record", "models/mlflow_run.json"]
    with open(workdir / "log.txt", "w") as log:
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_multi_worker_mirrored_trains_on_two_local_workers_and_only_the_chief_writes(tmp_path):
    inputs = tmp_path / "inputs"
    write_train_inputs(inputs)
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    processes = {
        "single": start_train_stage(inputs, tmp_path / "single", "none"),
        **{f"worker{index}": start_train_stage(inputs, tmp_path / f"worker{index}", "multi_worker_mirrored",
                                               {"cluster": cluster, "task": {"type": "worker", "index": index}})
           for index in (0, 1)},
    }
    try:
        deadline = time.monotonic() + 900
        for name, process in processes.items():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:  # a worker whose peer died waits for it forever: never leave one behind
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = {name: (tmp_path / name / "log.txt").read_text() for name in processes}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name} exited {process.returncode}\n{logs[name][-3000:]}"

    chief, worker, single = tmp_path / "worker0", tmp_path / "worker1", tmp_path / "single"
    for output in ("models/model.keras", "metrics/train.json", "metrics/train_history.csv", "models/mlflow_run.json"):
        assert (chief / output).is_file(), f"the chief did not write {output}"
    assert json.loads((chief / "models" / "mlflow_run.json").read_text())["run_id"]
    assert sorted(path.name for path in worker.iterdir()) == ["log.txt", "params.yaml"], \
        "a worker other than the chief wrote outputs (or an MLflow store)"
    assert "other than the chief" in logs["worker1"]

    def best_val_dice(folder):
        return json.loads((folder / "metrics" / "train.json").read_text())["best_val_dice"]

    assert best_val_dice(single) > 0.3, "the single-process reference did not learn"
    assert best_val_dice(chief) == pytest.approx(best_val_dice(single), abs=0.05)
