"""Shared fixtures: tiny params, throw-away project clones for real DVC runs, the shared data sets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xdist_groups import keep_groups

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
VENV_BIN = Path(sys.executable).parent

# Small enough that a whole `dvc repro` trains in well under a minute on 2 cores.
TINY_OVERRIDES = {
    "epochs": 1,
    "ingest.synthetic.count": 24,
    "ingest.synthetic.size": 48,
    "split.val_fraction": 0.2,
    "split.test_fraction": 0.2,
    "split.initial_labeled": 6,
    "preprocess.size": 32,
    # the rest of the params the plan may decide (`auto` in params.yaml), fixed for unit tests
    "preprocess.channels": 3,
    "preprocess.normalization": "unit",
    # the small plain U-Net: an sm_unet (resnet18, ~14 M parameters, a 58 MB file) costs a tiny
    # `dvc repro` a third more in saving and loading alone; the tests about sm_unet, and the
    # shared finished_project (the default run), ask for it
    "train.architecture": "unet_plain",
    "train.plain_filters": 8,
    "train.crop_size": 0,
    "train.steps_per_epoch": 0,
    "augment.variants": 1,
    "train.batch_size": 4,
    # float32 on every CPU: `auto` would probe bfloat16 (seconds) where the CPU has it, and the
    # suite's numbers would depend on the machine; tests/test_precision.py covers both formats
    "train.precision": "float32",
    "query.mc_dropout_passes": 2,
    "query.top_k": 2,
    "evaluate.overlays": 1,
    "tracking.log_model": False,
}


# `make test` (pytest-xdist: --dist loadgroup --no-loadscope-reorder) hands tests to its workers in
# collection order, each xdist_group as one unit (xdist_groups.py): the end-to-end tests (marked
# slow) go first, the costliest first (as measured with --durations), so no long run starts last; the
# quick unit tests then fill in. The first one builds finished_project, which later ones copy; the next two,
# the round trips on data of one's own (one xdist_group, three trainings), need no finished_project,
# so the other worker starts on them instead of waiting for it.
COSTLIEST_FIRST = ("test_pipeline.py::test_repro_then_experiment",
                   "test_roundtrip.py::test_queried_image", "test_roundtrip.py::test_annotated_tile",
                   "test_scale_out.py::test_queued", "test_mlflow_ui.py", "test_reproducibility.py",
                   "test_faults.py", "test_roundtrip.py", "test_scale_out.py", "test_simulation.py")


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which marks each test of an xdist_group
def pytest_collection_modifyitems(items):
    def rank(item) -> tuple:
        listed = [index for index, prefix in enumerate(COSTLIEST_FIRST) if item.nodeid.startswith(f"tests/{prefix}")]
        return (item.get_closest_marker("slow") is None, listed[0] if listed else len(COSTLIEST_FIRST))

    items.sort(key=rank)  # stable: a file's tests keep their order (test_faults' depend on it)
    keep_groups(items)


def set_dotted(mapping: dict, dotted_key: str, value) -> None:
    *parents, last = dotted_key.split(".")
    for key in parents:
        mapping = mapping.setdefault(key, {})
    mapping[last] = value


def tiny_params_dict(**overrides) -> dict:
    """The project's params.yaml with the tiny overrides (and ``overrides``, dotted keys as ``a__b``)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for key, value in {**TINY_OVERRIDES, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
        set_dotted(params, key, value)
    return params


@pytest.fixture
def tiny_params():
    """A function returning validated tiny :class:`activeseg.params.Params`."""
    from activeseg.params import parse_params

    return lambda **overrides: parse_params(tiny_params_dict(**overrides))


def project_env(project: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project)  # the clone's own activeseg, not the editable install's
    env.pop("MLFLOW_TRACKING_URI", None)
    for variable in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        env.pop(variable, None)
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "activeseg tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@activeseg.invalid"
    return env


def run(command: list[str], cwd: Path, check: bool = True, timeout: int = 900, **kwargs
        ) -> subprocess.CompletedProcess:
    """Run a command in a project clone; on an unexpected exit code, fail with its output."""
    result = subprocess.run(command, cwd=cwd, env=kwargs.pop("env", None) or project_env(cwd),
                            capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
                    f"\n--- stderr\n{result.stderr[-4000:]}")
    return result


def stale_stages(project: Path) -> dict:
    """``dvc status --json`` without collect_annotations, which DVC always lists as "always changed"
    (it must look at data/query/export on every run): {} when the outputs match dvc.lock."""
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    assert status.pop("collect_annotations", ["always changed"]) == ["always changed"], status
    return status


def file_digests(project: Path, names) -> dict[str, str]:
    """sha256 of every file of the outputs ``names`` (files or folders), by path relative to ``project``."""
    import hashlib

    found = {}
    for name in names:
        root = project / name
        for path in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if path.is_file() and path.name != ".gitignore":
                found[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def make_project(destination: Path, **overrides) -> Path:
    """A fresh git + DVC project holding this checkout's tracked files (as they are in the working
    tree, uncommitted edits included) with tiny params, committed, and no pipeline outputs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    skipped_prefixes = ("metrics/", "models/", "bench/", "tests/")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if name.startswith(skipped_prefixes) or not source.is_file() or name == "dvc.lock":
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (destination / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(**overrides), sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], destination)
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-q", "-m", "tiny project"], destination)
    return destination


@pytest.fixture
def project(tmp_path):
    """A tiny project clone (see :func:`make_project`)."""
    return make_project(tmp_path / "project")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, by whichever pytest-xdist worker asks first
    (the others wait on a file lock in the base temp folder that all workers share), so every
    worker reuses one result; a failed build fails every test that asks, with its message."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's base temp is a child of the session's
    folder, failure = root / name, root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if not failure.exists() and not folder.exists():
            try:
                build(folder)
            except BaseException as error:
                failure.write_text(f"{type(error).__name__}: {error}")
                raise
    if failure.exists():
        pytest.fail(f"building the shared {name} failed: {failure.read_text()[-4000:]}")
    return folder


FINISHED_REPRO_LOG = "repro.log.json"
# set_params(copy, **PLAIN_ARCHITECTURE): a copy of finished_project that retrains the tiny
# models' unet_plain instead of its sm_unet
PLAIN_ARCHITECTURE = {"train__architecture": TINY_OVERRIDES["train.architecture"]}


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory) -> Path:
    """A tiny clone (:func:`make_project`) whose whole pipeline ran once with ``dvc repro`` on its
    local MLflow store: the costliest step of the suite, so it is done once per session and shared.
    Its architecture is left to the plan, which picks the default run's sm_unet for these small
    colour images (test_pipeline checks). Read-only: a test that changes anything works on
    :func:`copy_project` of it (and, where it retrains without being about the architecture,
    sets ``PLAIN_ARCHITECTURE``). ``FINISHED_REPRO_LOG`` beside it holds that repro's output."""

    def build(folder: Path) -> None:
        project = make_project(folder / "project", train__architecture="auto")
        result = run(["dvc", "repro"], project)
        (folder / FINISHED_REPRO_LOG).write_text(json.dumps({"stdout": result.stdout, "stderr": result.stderr}))

    return built_once(tmp_path_factory, "finished", build) / "project"


def copy_project(source: Path, destination: Path, keep_mlflow_store: bool = True) -> Path:
    """A copy of the project ``source`` (git, DVC cache, outputs, MLflow store) at ``destination``,
    as if its runs had happened there: the SQLite store keeps absolute paths (each experiment's
    artifact folder), which are moved to the copy. Without ``keep_mlflow_store`` the copy has no
    store, as before a first tracked run (``models/mlflow_run.json`` then names a run it lacks,
    until train runs again)."""
    import sqlite3

    # .dvc/tmp holds DVC's locks and scratch space, of the source's processes
    shutil.copytree(source, destination, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder) == source / ".dvc" else [])
    store = destination / "mlflow.db"
    if not keep_mlflow_store:
        store.unlink(missing_ok=True)
        shutil.rmtree(destination / "mlartifacts", ignore_errors=True)
    elif store.exists():
        with sqlite3.connect(store) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in [row[1] for row in db.execute(f"PRAGMA table_info('{table}')")
                               if row[2].upper().startswith(("TEXT", "VARCHAR"))]:
                    db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                               f'WHERE "{column}" LIKE ?', (str(source), str(destination), f"%{source}%"))
    return destination


def set_params(project: Path, **overrides) -> None:
    """Change ``params.yaml`` of ``project`` (dotted keys written ``a__b``)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(params, key.replace("__", "."), value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def pixelwise_model(size: int = 32):
    """A model whose foreground probability is ``sigmoid(10 * (mean intensity - 0.5))`` per pixel,
    with the ``mc_dropout`` layer before its head (rate 0: every pass is the same, so scores are
    known exactly): an image of grey 128 is the one it is least sure of. Pixel by pixel, so it
    commutes with flips and turns."""
    import numpy as np

    from activeseg.model import DROPOUT_LAYER
    from activeseg.runtime import keras

    inputs = keras.Input((size, size, 3))
    intensity = keras.layers.Conv2D(1, 1, name="intensity")(inputs)
    dropped = keras.layers.Dropout(0.0, name=DROPOUT_LAYER)(intensity)
    logits = keras.layers.Conv2D(1, 1, name="head")(dropped)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logits))
    model.get_layer("intensity").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.array([-0.5], np.float32)])
    model.get_layer("head").set_weights([np.full((1, 1, 1, 1), 10.0, np.float32), np.zeros(1, np.float32)])
    return model


@pytest.fixture
def shared_datasets() -> Path:
    """``../shared/datasets`` from the project root, or a clean skip where it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent (a plain clone has no shared data)")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory):
    """``(model.keras, stats.json)``: an untrained 32-px RGB U-Net (the tiny params' plain one: a
    resnet18 file takes each loading process seconds more) and a matching z-score transform, for
    tests of what consumes a model (evaluate, predict)."""
    from activeseg.model import build_unet, save_model
    from activeseg.outputs import write_json
    from activeseg.params import TrainParams
    from activeseg.preprocess import Transform
    from activeseg.runtime import seed_everything

    seed_everything(0)
    folder = tmp_path_factory.mktemp("untrained_model")
    params = TrainParams(architecture=TINY_OVERRIDES["train.architecture"],
                         plain_filters=TINY_OVERRIDES["train.plain_filters"])
    save_model(build_unet(params, 32, 3), folder / "model.keras")
    transform = Transform(32, 3, "zscore", mean=(0.4, 0.5, 0.45), std=(0.2, 0.25, 0.3))
    write_json(folder / "stats.json", transform.to_json())
    return folder / "model.keras", folder / "stats.json"


# Session fixtures shared by test_reproducibility.py and test_scale_out.py: one MLflow server and
# one full pipeline run on it (defined in pipeline_runs.py; imported here so each exists once).
from pipeline_runs import mlflow_server, served_project  # noqa: E402,F401
