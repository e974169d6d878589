"""Reproducibility: ``dvc repro --force`` twice from one commit gives byte-identical data outputs
(ingest, split, preprocess, augment) and a test Dice within 0.005; each MLflow run leads back to
its git revision and data version. (``dvc exp apply`` of a queued experiment is checked in
test_scale_out.py, where the experiments are.)
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import file_digests, run
from pipeline_runs import served_env

DATA_OUTPUTS = ("data/ingested", "data/split", "data/prepared", "data/augmented", "metrics/augment_preview.png")


def digests(project: Path) -> dict[str, str]:
    """sha256 of every file of the deterministic stages' outputs, by relative path."""
    return file_digests(project, DATA_OUTPUTS)


def test_npz_bytes_depend_on_the_arrays_only(tmp_path):
    from activeseg.outputs import write_npz

    arrays = {"ids": np.array(["a", "bc"]), "images": np.arange(24, dtype=np.uint8).reshape(2, 3, 4)}
    write_npz(tmp_path / "one.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "one.npz") as archive:
        assert {entry.date_time for entry in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    write_npz(tmp_path / "two.npz", **arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as loaded:
        assert loaded["ids"].tolist() == ["a", "bc"] and np.array_equal(loaded["images"], arrays["images"])


def run_record(project: Path) -> str:
    return json.loads((project / "models" / "mlflow_run.json").read_text())["run_id"]


@pytest.mark.slow
@pytest.mark.xdist_group("served_project")  # make test: on the worker that has the session's served_project
def test_forced_repro_is_reproducible_and_traceable(served_project, mlflow_server):
    """The shared clone ran `dvc repro` once (tracked on the MLflow server); force a second run."""
    from mlflow.tracking import MlflowClient

    project = served_project
    first, first_metrics = digests(project), json.loads((project / "metrics" / "evaluate.json").read_text())
    first_run = run_record(project)
    time.sleep(2)  # a zip timestamp has 2-second resolution: make a time-stamped output differ
    run(["dvc", "repro", "--force"], project, env=served_env(project, mlflow_server))
    second, second_metrics = digests(project), json.loads((project / "metrics" / "evaluate.json").read_text())

    assert len(first) > 20
    changed = sorted(name for name in first if first[name] != second.get(name))
    assert not changed and first.keys() == second.keys(), f"not byte-identical across forced runs: {changed}"
    assert abs(first_metrics["dice"] - second_metrics["dice"]) <= 0.005

    client = MlflowClient(tracking_uri=mlflow_server)
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    manifest = (project / "data" / "ingested" / "manifest.csv").read_bytes()
    second_run = run_record(project)
    assert second_run != first_run, "one MLflow run per pipeline execution"
    for run_id, metrics in ((first_run, first_metrics), (second_run, second_metrics)):
        logged = client.get_run(run_id)
        assert logged.data.tags["git_revision"] == head
        assert logged.data.tags["data_version"] == hashlib.sha1(manifest).hexdigest()[:12]
        assert logged.data.metrics["test_dice"] == pytest.approx(metrics["dice"], abs=1e-6)
