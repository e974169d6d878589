"""MLflow runs as a person sees them: named after the git revision, and ended FAILED or KILLED
(not left RUNNING) when the stage that opened them fails or is stopped."""

from __future__ import annotations

import pytest

from conftest import run


@pytest.fixture
def git_project(tmp_path, monkeypatch):
    """A committed git repository on branch ``main`` with a dvc.yaml declaring two outputs."""
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    outs:\n      - models/model.keras\n"
                                       "    metrics:\n      - metrics/train.json:\n          cache: false\n")
    (tmp_path / "params.yaml").write_text("epochs: 1\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.json").write_text("{}\n")
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "baseline"], tmp_path)
    monkeypatch.chdir(tmp_path)
    for variable in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def test_run_is_named_after_branch_and_revision_and_marked_dirty_by_edits_only(git_project):
    from activeseg.tracking import run_tags

    revision = run(["git", "rev-parse", "HEAD"], git_project).stdout.strip()
    assert run_tags("data")["mlflow.runName"] == f"main@{revision[:7]}"
    # what the stages before train rewrite is not an edit of the person's
    (git_project / "dvc.lock").write_text("schema: '2.0'\n")
    (git_project / "metrics" / "train.json").write_text('{"dice": 0.5}\n')
    (git_project / "models").mkdir()
    (git_project / "models" / ".gitignore").write_text("/model.keras\n")
    assert run_tags("data")["mlflow.runName"] == f"main@{revision[:7]}"
    (git_project / "params.yaml").write_text("epochs: 2\n")
    assert run_tags("data")["mlflow.runName"] == f"main@{revision[:7]}+dirty"


def test_experiment_run_keeps_the_experiment_name(git_project, monkeypatch):
    from activeseg.tracking import run_tags

    monkeypatch.setenv("DVC_EXP_NAME", "epochs-2")
    assert run_tags("data")["mlflow.runName"] == "epochs-2"


def test_the_run_record_names_the_run_and_with_tracking_off_the_name_it_would_have_had(
        git_project, monkeypatch, tiny_params):
    """The query's Label Studio tasks name the model by the record's run name (``model_version``)."""
    import json

    from activeseg.tracking import UNTRACKED_MODEL, recorded_run_name, start_run

    revision = run(["git", "rev-parse", "HEAD"], git_project).stdout.strip()
    record = git_project / "models" / "mlflow_run.json"
    with start_run(tiny_params(tracking__enabled=False), "data", record):
        pass
    assert json.loads(record.read_text()) == {"run_id": None, "run_name": f"main@{revision[:7]}"}
    assert recorded_run_name(record) == f"main@{revision[:7]}"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{git_project / 'mlflow.db'}")
    monkeypatch.setenv("DVC_EXP_NAME", "epochs-2")
    with start_run(tiny_params(), "data", record) as tracked:
        run_id = tracked.active_run().info.run_id
    written = json.loads(record.read_text())
    assert written["run_id"] == run_id and written["run_name"] == "epochs-2"
    assert tracked.MlflowClient().get_run(run_id).info.run_name == "epochs-2"

    record.write_text(json.dumps({"run_id": "0123abcd"}))  # written before run names were recorded
    assert recorded_run_name(record) == "0123abcd"
    record.write_text(json.dumps({"run_id": None, "run_name": None}))  # tracking off, outside git
    assert recorded_run_name(record) == UNTRACKED_MODEL


def run_status(tmp_path, stop: BaseException, tiny_params):
    """Open a run in a local store, log a metric, raise ``stop``; the run as the store has it."""
    import mlflow

    from activeseg.tracking import start_run

    record = tmp_path / "mlflow_run.json"
    with pytest.raises(type(stop)):
        with start_run(tiny_params(), "data", record) as tracked:
            tracked.log_metric("val_dice", 0.25, step=1)
            run_id = tracked.active_run().info.run_id
            raise stop
    assert mlflow.active_run() is None
    assert not record.exists()
    return mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)


@pytest.mark.parametrize("stop, status", [(KeyboardInterrupt(), "KILLED"), (RuntimeError("boom"), "FAILED")],
                         ids=["ctrl-c", "exception"])
def test_stopped_or_failed_run_is_ended_with_what_it_logged(tmp_path, monkeypatch, tiny_params, stop, status):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    stopped = run_status(tmp_path, stop, tiny_params)
    assert stopped.info.status == status
    assert stopped.data.metrics["val_dice"] == 0.25 and stopped.data.params["epochs"] == "1"


def test_logged_model_has_a_tensor_signature(tmp_path, monkeypatch, capfd):
    """The default sm_unet (resnet18), as a default run logs it: its layers go through MLflow's
    Keras flavour too."""
    import mlflow

    from activeseg.model import build_unet, save_model
    from activeseg.params import TrainParams
    from activeseg.tracking import _mlflow, log_keras_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_path = tmp_path / "model.keras"
    save_model(build_unet(TrainParams(architecture="sm_unet"), 32, 3), model_path)
    tracked = _mlflow()
    with tracked.start_run():
        logged = log_keras_model(tracked, model_path)
    signature = mlflow.models.get_model_info(logged.model_uri).signature
    assert signature.inputs.inputs[0].shape == (-1, 32, 32, 3)
    assert signature.outputs.inputs[0].shape == (-1, 32, 32, 1)
    assert "without specifying model signature" not in capfd.readouterr().err
