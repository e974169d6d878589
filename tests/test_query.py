"""Export for annotation: predicted polygons, Labelme 5 JSON at the original size, uncertainty maps."""

import json

import cv2
import numpy as np
import pytest

from activeseg import imageio
from activeseg.acquisition import PoolScores, rank
from activeseg.annotation import (QUERIED_FLAG, export_for_annotation, labelme_document, prediction_polygons,
                                  uncertainty_picture)
from activeseg.errors import ActivesegError
from activeseg.rescue import shapes_digest


def rasterize(polygons, height, width):
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32) for points in polygons], 1)
    return mask.astype(bool)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_polygons_outline_the_thresholded_prediction_at_the_original_size():
    probability = np.zeros((32, 32), np.float32)
    probability[8:16, 4:12] = 0.9           # a square …
    cv2.circle(probability, (24, 22), 5, 0.8, -1)   # … and a disc
    probability[2, 30] = 0.4                # below the threshold: no shape
    polygons = prediction_polygons(probability, 64, 96, threshold=0.5)   # not square: x scales 3, y 2
    assert len(polygons) == 2
    assert all(len(points) >= 3 for points in polygons)
    square = min(polygons, key=lambda points: min(x for x, _ in points))
    xs, ys = [x for x, _ in square], [y for _, y in square]
    assert min(xs) == pytest.approx(12, abs=2) and max(xs) == pytest.approx(35, abs=2)
    assert min(ys) == pytest.approx(16, abs=2) and max(ys) == pytest.approx(31, abs=2)
    expected = cv2.resize(probability, (96, 64), interpolation=cv2.INTER_LINEAR) > 0.5
    assert iou(rasterize(polygons, 64, 96), expected) > 0.9


def test_nothing_predicted_gives_no_shapes():
    assert prediction_polygons(np.full((16, 16), 0.2, np.float32), 40, 40, 0.5) == []


def test_labelme_document_is_labelme_5_with_the_queried_flag():
    document = labelme_document("img_7.png", 40, 50, [[[1.0, 2.0], [10.0, 2.0], [5.0, 9.0]]], "cell")
    assert document["version"].startswith("5.")
    assert document["flags"] == {QUERIED_FLAG: True}
    assert document["imagePath"] == "img_7.png" and document["imageData"] is None
    assert (document["imageHeight"], document["imageWidth"]) == (40, 50)
    (shape,) = document["shapes"]
    assert shape["label"] == "cell" and shape["shape_type"] == "polygon"
    assert shape["points"] == [[1.0, 2.0], [10.0, 2.0], [5.0, 9.0]]
    json.dumps(document)   # serialisable as is


def test_uncertainty_picture_uses_the_strategy_scale_and_the_original_size():
    score = np.zeros((8, 8), np.float32)
    score[:, 4:] = 0.25          # the largest MC-dropout variance
    picture = uncertainty_picture(score, "mc_dropout", 16, 24)
    assert picture.shape == (16, 24, 3) and picture.dtype == np.uint8
    assert picture[:, -1].mean() > picture[:, 0].mean() + 100   # bright where uncertain, dark where not
    half = uncertainty_picture(score / 2, "mc_dropout", 16, 24)
    assert half[:, -1].mean() < picture[:, -1].mean()           # a fixed scale, not per-image min-max


def make_ingested(folder, sizes):
    (folder / "images").mkdir(parents=True)
    for image_id, (height, width) in sizes.items():
        imageio.write_png(folder / "images" / f"{image_id}.png", np.full((height, width, 3), 90, np.uint8))
    return folder


def test_export_writes_image_json_and_uncertainty_per_chosen_id(tmp_path):
    ingested = make_ingested(tmp_path / "ingested", {"a": (40, 60), "b": (20, 20), "c": (30, 30)})
    probabilities = np.zeros((3, 16, 16), np.float32)
    probabilities[1, 4:12, 4:12] = 0.9
    scored = PoolScores(np.array([0.1, 0.9, 0.5]), np.full((3, 16, 16), 0.1, np.float32), probabilities)
    export_for_annotation(tmp_path / "query", ["b", "a"], np.array(["a", "b", "c"]), scored, ingested,
                          "entropy", 0.5, "foreground", ranking=rank(["a", "b", "c"], scored.scores, "entropy"),
                          model_version="main@0123abc", served_export="data/query/export")
    exported = sorted(path.name for path in (tmp_path / "query" / "export").iterdir() if path.is_file())
    assert exported == ["a.json", "a.png", "b.json", "b.png"]
    assert sorted(path.name for path in (tmp_path / "query" / "export" / "label_studio").iterdir()) == \
        ["config.xml", "tasks.json"]
    assert sorted(path.name for path in (tmp_path / "query" / "uncertainty").iterdir()) == ["a.png", "b.png"]
    document = json.loads((tmp_path / "query" / "export" / "b.json").read_text())
    assert (document["imageHeight"], document["imageWidth"]) == (20, 20)
    assert document["imagePath"] == "b.png" and document["flags"][QUERIED_FLAG] is True
    assert len(document["shapes"]) == 1
    assert json.loads((tmp_path / "query" / "export" / "a.json").read_text())["shapes"] == []
    np.testing.assert_array_equal(imageio.read_image(tmp_path / "query" / "export" / "a.png"),
                                  imageio.read_image(ingested / "images" / "a.png"))
    assert imageio.read_image(tmp_path / "query" / "uncertainty" / "a.png").shape == (40, 60, 3)
    # what was exported, recorded beside export/ so that edits made in there can be told apart
    record = json.loads((tmp_path / "query" / "exported_shapes.json").read_text())
    assert record == {image_id: shapes_digest(json.loads((tmp_path / "query" / "export" / f"{image_id}.json")
                                                          .read_text())) for image_id in ("a", "b")}
    assert record["a"] != record["b"]


def test_export_of_an_image_missing_from_ingest_names_the_file(tmp_path):
    ingested = make_ingested(tmp_path / "ingested", {"a": (20, 20)})
    scored = PoolScores(np.zeros(2), np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ActivesegError, match=r"images/gone\.png"):
        export_for_annotation(tmp_path / "query", ["gone"], np.array(["a", "gone"]), scored, ingested,
                              "margin", 0.5, "foreground", ranking=rank(["a", "gone"], scored.scores, "margin"),
                              model_version="untracked", served_export="data/query/export")


def test_label_studio_paths_are_relative_to_the_project_root_and_one_outside_is_refused(tmp_path, monkeypatch):
    from activeseg.annotation import document_path, local_files_url

    monkeypatch.chdir(tmp_path)
    assert document_path("data/query/export") == document_path(tmp_path / "data" / "query" / "export") == \
        "data/query/export"
    assert local_files_url("data/query/export/a b@y0_x32.png") == "/data/local-files/?d=data/query/export/a%20b@y0_x32.png"
    with pytest.raises(ActivesegError, match=r"^\.\./elsewhere/export: outside the project folder .*--out inside it"):
        document_path("../elsewhere/export")


def test_query_label_is_checked(tiny_params):
    with pytest.raises(ActivesegError, match="query.label"):
        tiny_params(query__label="__ignore__")


def test_query_stage_with_an_empty_pool_writes_an_empty_ranking_without_loading_tensorflow(tmp_path):
    """A user's own data has no pool (simulate off): the stage must not spend TensorFlow's start-up
    and a model load on it."""
    import os
    import subprocess
    import sys

    import yaml

    from activeseg.preprocess import SplitArrays, Transform, save_arrays
    from conftest import REPO_ROOT, tiny_params_dict

    params = tiny_params_dict(tracking__enabled=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "stats.json").write_text(json.dumps(Transform(32, 3, "unit", (0.5,) * 3, (0.25,) * 3).to_json()))
    (tmp_path / "run.json").write_text(json.dumps({"run_id": None}))
    save_arrays(prepared / "pool.npz", SplitArrays(np.array([], str), np.zeros((0, 32, 32, 3), np.uint8),
                                                   np.zeros((0, 32, 32), np.uint8), np.zeros(0, bool)))
    argv = ["query.py", "--params", "params.yaml", "--prepared", "prepared", "--ingested", "ingested",
            "--model", "missing.keras", "--run-record", "run.json", "--out", "query", "--metrics", "query.json"]
    script = (f"import runpy, sys; sys.argv = {argv!r}\n"
              f"try:\n    runpy.run_path({str(REPO_ROOT / 'stages' / 'query.py')!r}, run_name='__main__')\n"
              "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
              "print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    finished = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert finished.returncode == 0, finished.stderr
    assert "tensorflow loaded: False" in finished.stdout
    assert "ranked 0 pool images" in finished.stdout
    assert json.loads((tmp_path / "query.json").read_text())["pool_size"] == 0
    assert (tmp_path / "query" / "ranking.csv").read_text().startswith("id,score,rank")
    # nothing to annotate: no tasks, the config all the same; a record without a run name (tracking
    # off outside git) names the model "untracked"
    assert json.loads((tmp_path / "query" / "export" / "label_studio" / "tasks.json").read_text()) == []
    assert (tmp_path / "query" / "export" / "label_studio" / "config.xml").is_file()
    assert "(model_version untracked)" in finished.stdout
