"""MLflow tracking: one run per trained model, which train opens and query / evaluate add to.

- Store: ``MLFLOW_TRACKING_URI`` when set (a shared tracking server), else a SQLite store and an
  artifact folder at the project root, as absolute paths, so experiments that DVC runs in
  ``.dvc/tmp/exps/…`` (``--queue``, ``--temp``) still land in the project's store.
- Run: the train stage starts it and records its id in ``models/mlflow_run.json`` (a DVC
  output); later stages reopen that run, so one pipeline execution is one MLflow run.
- Tags: git revision, DVC experiment name and baseline revision (``DVC_EXP_NAME``,
  ``DVC_EXP_BASELINE_REV``, set by ``dvc exp run``) and the data version.
- Reachability: a tracking server is probed (a few seconds) when a stage opens its run; when it
  does not answer the stage stops with a one-line error, or, with ``tracking.required: false``,
  runs without tracking. See :func:`tracking_active`.
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
# know in seconds, so these apply unless the user has set the variables.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
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
    for variable, value in HTTP_DEFAULTS.items():
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


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_tags(data_version: str) -> dict[str, str]:
    tags = {"git_revision": git_revision(), "data_version": data_version}
    for variable, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev")):
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    if "dvc_exp_name" in tags:
        tags["mlflow.runName"] = tags["dvc_exp_name"]
    return tags


@contextlib.contextmanager
def start_run(params: Params, data_version: str, run_record: str | Path) -> Iterator[object]:
    """Open a new run with the flattened params and tags; yields ``mlflow`` (or None when off)."""
    if not tracking_active(params.tracking):
        write_json(run_record, {"run_id": None})
        yield None
        return
    mlflow = _mlflow()
    try:
        experiment_id = _experiment_id(mlflow, params.tracking.experiment)
    except Exception as error:  # connection errors come in many types from MLflow's REST client
        raise ActivesegError(f"MLflow store {tracking_uri()} is unreachable ({type(error).__name__}); "
                             "check MLFLOW_TRACKING_URI or set tracking.enabled: false") from None
    with mlflow.start_run(experiment_id=experiment_id, tags=run_tags(data_version)) as run:
        mlflow.log_params(flatten(params))
        yield mlflow
        write_json(run_record, {"run_id": run.info.run_id, "experiment_id": experiment_id})


@contextlib.contextmanager
def resume_run(tracking: TrackingParams, run_record: str | Path) -> Iterator[object]:
    """Reopen the run that train started; yields ``mlflow`` (or None when tracking is off)."""
    path = Path(run_record)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro train` first")
    run_id = json.loads(path.read_text()).get("run_id")
    if run_id is None or not tracking_active(tracking):
        yield None
        return
    mlflow = _mlflow()
    with mlflow.start_run(run_id=run_id):
        yield mlflow


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


def log_keras_model(mlflow, model_path: str | Path) -> None:
    """Log the saved model as an MLflow Keras model (loadable with ``mlflow.keras.load_model``)."""
    import mlflow.keras

    from activeseg.model import load_model

    mlflow.keras.log_model(load_model(model_path), name="model",
                           pip_requirements=[f"tensorflow-cpu=={_version('tensorflow-cpu')}",
                                             f"keras=={_version('keras')}",
                                             f"segmentation-models=={_version('segmentation-models')}"])


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def log_summary(mlflow, summary: dict, prefix: str) -> None:
    """Numbers as metrics named ``<prefix><key>``; true/false outcomes as tags ``<key>`` = true/false."""
    mlflow.log_metrics({f"{prefix}{key}": float(value) for key, value in summary.items() if not isinstance(value, bool)})
    for key, value in summary.items():
        if isinstance(value, bool):
            mlflow.set_tag(key, str(value).lower())


def log_evaluation(mlflow, summary: dict, files: list[str | Path], overlays_dir: str | Path, figure) -> None:
    """Test metrics (``test_`` prefix), the evaluation tables, the overlays and the threshold
    curve, under the ``evaluation/`` artifact folder of the pipeline's run; true/false outcomes
    (``beats_trivial``) become tags, which the runs table can filter on."""
    log_summary(mlflow, summary, "test_")
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="evaluation")
    mlflow.log_artifacts(str(overlays_dir), artifact_path="evaluation/overlays")
    mlflow.log_figure(figure, "evaluation/threshold_curve.png")
