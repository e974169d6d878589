"""MLflow tracking: one run per trained model, which train opens and query / evaluate add to.

- Store: ``MLFLOW_TRACKING_URI`` when set (a shared tracking server), else a SQLite store and an
  artifact folder at the project root, as absolute paths, so experiments that DVC runs in
  ``.dvc/tmp/exps/…`` (``--queue``, ``--temp``) still land in the project's store.
- Run: the train stage starts it and records its id and name in ``models/mlflow_run.json`` (a DVC
  output; with tracking off, no id and the name the run would have had); later stages reopen
  that run, so one pipeline execution is one MLflow run. It ends FINISHED, FAILED on an error,
  or KILLED on Ctrl-C / SIGTERM, with what it logged so far.
- Name: the DVC experiment's under ``dvc exp run``, else ``<branch>@<revision>`` (``+dirty``
  when files other than the pipeline's outputs differ from that revision).
- Tags: git revision, DVC experiment name and baseline revision (``DVC_EXP_NAME``,
  ``DVC_EXP_BASELINE_REV``, set by ``dvc exp run``) and the data version.
- Reachability: a tracking server is probed (a few seconds) before a stage does its work; when
  it does not answer the stage stops with a one-line error, or, with ``tracking.required: false``,
  runs without tracking. See :func:`tracking_active` and :func:`run_to_resume`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

from activeseg.errors import ActivesegError
from activeseg.outputs import write_json
from activeseg.params import Params, TrackingParams, flatten


def project_root(start: Optional[Path] = None) -> Path:
    """The project's root, also from inside a DVC temporary experiment workspace."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for index in range(len(parts) - 3):
        if parts[index:index + 4] == (".dvc", "tmp", "exps", parts[index + 3]) and parts[index + 3]:
            return Path(*parts[:index])
    return here


def project_store_uri() -> str:
    """The default store: ``mlflow.db`` at the project root."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or project_store_uri()


# MLflow retries an unreachable server for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7 with
# exponential backoff, MLFLOW_HTTP_REQUEST_TIMEOUT=120 s per request). A pipeline stage should
# know in seconds. Its INFO lines (creating the SQLite tables, ...) are not for the person
# running the pipeline. These apply unless the user has set the variables.
MLFLOW_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_LOGGING_LEVEL": "WARNING"}
PROBE_TIMEOUT_S = 5.0


def unreachable_reason(uri: str) -> Optional[str]:
    """Why the HTTP tracking server at ``uri`` does not answer, or None when it does (or is not a
    server: local SQLite / file stores are opened, and their errors reported, by MLflow itself)."""
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:  # any HTTP answer counts: a proxy in front of the server may not route /health
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as error:
        return type(error).__name__
    return None


def tracking_active(tracking: TrackingParams) -> bool:
    """Whether this stage logs to MLflow: enabled, and the store answers. An unreachable server
    is an :class:`ActivesegError` when ``tracking.required``, else a warning and False."""
    if not tracking.enabled:
        return False
    uri = tracking_uri()
    problem = unreachable_reason(uri)
    if problem is None:
        return True
    message = f"MLflow tracking server {uri} (from MLFLOW_TRACKING_URI) is unreachable ({problem})"
    if tracking.required:
        raise ActivesegError(f"{message}; start the server, fix MLFLOW_TRACKING_URI, or set "
                             "tracking.required: false in params.yaml to run without tracking")
    print(f"warning: {message}; tracking.required is false, so this stage runs without tracking",
          file=sys.stderr)
    return False


def _mlflow():
    for variable, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _experiment_id(mlflow, name: str) -> str:
    with _local_store_lock():
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, so compare URIs rather than test the variable
        artifacts = (project_root() / "mlartifacts").as_uri() if tracking_uri() == project_store_uri() else None
        # tells the MLflow UI this is model training (runs, metrics), not a GenAI app (traces)
        return mlflow.create_experiment(name, artifact_location=artifacts,
                                        tags={"mlflow.experimentKind": "custom_model_development"})


def existing_experiment_id(name: str) -> Optional[str]:
    """The id of experiment ``name`` in the store, or None where it does not exist (yet) or the
    store does not answer; the project's SQLite store is not created just to look."""
    if tracking_uri() == project_store_uri() and not (project_root() / "mlflow.db").is_file():
        return None
    if unreachable_reason(tracking_uri()) is not None:  # in seconds, not after MLflow's retries
        return None
    try:
        experiment = _mlflow().get_experiment_by_name(name)
    except Exception:  # the UI itself reports a store it cannot open; this only shortens the link
        return None
    return experiment.experiment_id if experiment is not None else None


@contextlib.contextmanager
def _local_store_lock() -> Iterator[None]:
    """Serialise the first use of a SQLite store: queued experiments (``dvc queue start -j N``)
    start together, and two processes creating its tables or the experiment would collide."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(uri[len("sqlite:///"):] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _git(*arguments: str) -> Optional[str]:
    try:
        return subprocess.run(["git", *arguments], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def git_revision() -> str:
    return (_git("rev-parse", "HEAD") or "unknown").strip()


def git_run_name(revision: str) -> str:
    """``<branch>@<short revision>``, with ``+dirty`` when files other than the pipeline's own
    (``dvc.lock``, the outputs in ``dvc.yaml`` and the ``.gitignore`` entries DVC adds for them,
    which the stages before train rewrite) differ from that revision, so a person can tell a
    committed run from one of uncommitted edits."""
    branch = (_git("symbolic-ref", "--short", "-q", "HEAD") or "").strip()
    name = f"{branch}@{revision[:7]}" if branch else revision[:7]
    # the project's files only (it may be a folder of the repository: `dvc init --subdir`)
    changed = (_git("status", "--porcelain", "-z", "--untracked-files=all", "--", ".") or "").split("\0")
    prefix = (_git("rev-parse", "--show-prefix") or "").strip()  # porcelain paths are from the top
    pipeline_files = ["dvc.lock", *pipeline_outputs()]
    # -z entries are "XY path"; a rename or copy is followed by its old path as an entry of its own
    paths = [entry[3:].removeprefix(prefix) for entry in changed
             if entry[2:3] == " " and Path(entry[3:]).name != ".gitignore"]
    if any(not any(path == own or path.startswith(own.rstrip("/") + "/") for own in pipeline_files)
           for path in paths):
        name += "+dirty"
    return name


def pipeline_outputs(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The outs, metrics and plots that the stages of ``dvc_yaml`` write."""
    import yaml

    try:
        stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [next(iter(entry)) if isinstance(entry, dict) else str(entry)
            for stage in stages.values() for kind in ("outs", "metrics", "plots")
            for entry in (stage.get(kind) or [])]


def run_name(revision: str) -> Optional[str]:
    """The run's name: the DVC experiment's under ``dvc exp run``, else :func:`git_run_name`;
    None outside git (MLflow then makes one up)."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    return git_run_name(revision) if revision != "unknown" else None


def run_tags(data_version: str) -> dict[str, str]:
    revision = git_revision()
    tags = {"git_revision": revision, "data_version": data_version}
    for variable, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev")):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    name = run_name(revision)
    if name is not None:  # rather than a random name from MLflow
        tags["mlflow.runName"] = name
    return tags


@contextlib.contextmanager
def start_run(params: Params, data_version: str, run_record: str | Path) -> Iterator[object]:
    """Open a new run with the flattened params and tags; yields ``mlflow`` (or None when off)."""
    if not tracking_active(params.tracking):
        # the name the run would have had: the query's Label Studio tasks name the model by it
        write_json(run_record, {"run_id": None, "run_name": run_name(git_revision())})
        yield None
        return
    mlflow = _mlflow()
    try:
        experiment_id = _experiment_id(mlflow, params.tracking.experiment)
    except Exception as error:  # connection errors come in many types from MLflow's REST client
        raise ActivesegError(f"MLflow store {tracking_uri()} is unreachable ({type(error).__name__}); "
                             "check MLFLOW_TRACKING_URI or set tracking.enabled: false") from None
    run = mlflow.start_run(experiment_id=experiment_id, tags=run_tags(data_version))
    with _ending_run(mlflow):
        mlflow.log_params(flatten(params))
        yield mlflow
        write_json(run_record, {"run_id": run.info.run_id, "experiment_id": experiment_id,
                                "run_name": run.info.run_name})


def log_plan(mlflow, plan_path: str | Path) -> None:
    """The data's plan (``data/plan.json``) as an artifact, and tags naming what it decided: the
    params logged are already its effective values, so the tags say which of them were ``auto``."""
    plan = json.loads(Path(plan_path).read_text())
    mlflow.log_artifact(str(plan_path))
    decided = [key for key, decision in plan["params"].items() if decision["by"] == "plan"]
    mlflow.set_tags({"plan_auto": ", ".join(decided) or "none",
                     "plan_warnings": " | ".join(plan["warnings"]) or "none"})


def run_to_resume(tracking: TrackingParams, run_record: str | Path) -> Optional[str]:
    """The id of the run that train started, or None when this stage does not log to MLflow.
    Call it before any work: with ``tracking.required`` an unreachable server stops the stage
    here, not after it has computed and written its outputs."""
    path = Path(run_record)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro train` first")
    run_id = json.loads(path.read_text()).get("run_id")
    if run_id is None or not tracking_active(tracking):
        return None
    return run_id


UNTRACKED_MODEL = "untracked"


def recorded_run_name(run_record: str | Path) -> str:
    """The name of the run that trained the model (the record's ``run_name``); a record without
    one (from before names were recorded) gives its run id, and a run outside git with tracking
    off gives :data:`UNTRACKED_MODEL`."""
    record = json.loads(Path(run_record).read_text())
    return record.get("run_name") or record.get("run_id") or UNTRACKED_MODEL


@contextlib.contextmanager
def resume_run(run_id: Optional[str]) -> Iterator[object]:
    """Reopen the run from :func:`run_to_resume`; yields ``mlflow`` (or None when there is none)."""
    if run_id is None:
        yield None
        return
    mlflow = _mlflow()
    mlflow.start_run(run_id=run_id)
    with _ending_run(mlflow):
        yield mlflow


@contextlib.contextmanager
def _ending_run(mlflow) -> Iterator[None]:
    """End the active run FINISHED, KILLED on Ctrl-C or SIGTERM (see :mod:`activeseg.errors`), or
    FAILED on an exception, keeping what it logged. MLflow's own ``with start_run`` says FAILED
    for a stop too, and a SIGTERM outside ``run_main`` would leave the run RUNNING forever."""
    try:
        yield
    except BaseException as error:
        # the error that stopped the stage matters more than one from a store that is down too
        with contextlib.suppress(Exception):
            mlflow.end_run("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    mlflow.end_run("FINISHED")


def mlflow_callbacks(mlflow) -> list:
    """MLflow's own Keras callback, logging every epoch's metrics, when a run is active."""
    if mlflow is None:
        return []
    import mlflow.keras

    class EpochMetrics(mlflow.keras.MlflowCallback):
        # MLflow's callback also logs each validation pass as validation_<metric>; during fit those
        # are the epoch's val_<metric> again, so every curve would appear twice in the UI
        def on_test_end(self, logs=None):
            pass

    return [EpochMetrics(log_every_epoch=True)]


def log_keras_model(mlflow, model_path: str | Path):
    """Log the saved model as an MLflow Keras model (loadable with ``mlflow.keras.load_model``);
    returns MLflow's ``ModelInfo``."""
    import mlflow.keras

    from activeseg.model import load_model

    model = load_model(model_path)
    return mlflow.keras.log_model(model, name="model", signature=_tensor_signature(model),
                           pip_requirements=[f"tensorflow-cpu=={_version('tensorflow-cpu')}",
                                             f"keras=={_version('keras')}",
                                             f"segmentation-models=={_version('segmentation-models')}"])


def _tensor_signature(model):
    """Image batch in, probability map out (float32, any size): shown on the model's MLflow page,
    and without one MLflow warns on every logged model."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def schema(shape) -> Schema:
        return Schema([TensorSpec(np.dtype(np.float32), tuple(-1 if size is None else size for size in shape))])

    return ModelSignature(inputs=schema(model.input_shape), outputs=schema(model.output_shape))


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def log_summary(mlflow, summary: dict, prefix: str) -> None:
    """Numbers as metrics named ``<prefix><key>``; true/false outcomes as tags ``<key>`` = true/false,
    words (``stopped_by: plateau``, ``precision``) as tags ``<key>`` = the word."""
    mlflow.log_metrics({f"{prefix}{key}": float(value) for key, value in summary.items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)})
    for key, value in summary.items():
        if isinstance(value, bool):
            mlflow.set_tag(key, str(value).lower())
        elif isinstance(value, str):
            mlflow.set_tag(key, value)


def log_evaluation(mlflow, summary: dict, files: list[str | Path], overlays_dir: str | Path, figure) -> None:
    """Test metrics (``test_`` prefix), the evaluation tables, the overlays and the threshold
    curve, under the ``evaluation/`` artifact folder of the pipeline's run; true/false outcomes
    (``beats_trivial``) become tags, which the runs table can filter on."""
    log_summary(mlflow, summary, "test_")
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="evaluation")
    mlflow.log_artifacts(str(overlays_dir), artifact_path="evaluation/overlays")
    mlflow.log_figure(figure, "evaluation/threshold_curve.png")
