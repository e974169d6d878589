"""Label Studio's JSON and JSON-MIN exports in: brush RLE, polygons in percent, tiles; bad tasks named."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_converter import brush

from activeseg.errors import ActivesegError
from activeseg.ingest import ingest
from activeseg.params import IngestParams

HEIGHT, WIDTH = 32, 40  # not square: a transposed mask cannot pass


def save_image(raw: Path, name: str = "cells") -> None:
    (raw / "images").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(raw / "images" / f"{name}.png"), np.full((HEIGHT, WIDTH), 80, np.uint8))


def result(kind: str, value: dict, width: int = WIDTH, height: int = HEIGHT) -> dict:
    return {"id": "r1", "type": kind, "from_name": "label", "to_name": "image", "original_width": width,
            "original_height": height, "image_rotation": 0, "value": value}


def json_export(raw: Path, results: list, data: dict | None = None) -> Path:
    """Label Studio's "JSON" export: tasks with their annotations' results."""
    task = {"id": 7, "data": data or {"image": "/data/local-files/?d=project/images/cells.png"},
            "annotations": [{"id": 1, "was_cancelled": True, "result": [], "created_at": "2026-12-01T10:00:00Z"},
                            {"id": 2, "was_cancelled": False, "result": results,
                             "created_at": "2026-12-01T09:00:00Z"}],
            "predictions": []}
    (raw / "annotations").mkdir(parents=True, exist_ok=True)
    path = raw / "annotations" / "project-1-at-2026-12-03.json"
    path.write_text(json.dumps([task]))
    return path


def read(out: Path, folder: str, image_id: str = "cells") -> np.ndarray:
    return cv2.imread(str(out / folder / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)


def test_a_brush_mask_comes_back_identical(tmp_path):
    raw = tmp_path / "raw"
    save_image(raw)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[3:20, 5:12] = 255
    mask[25:30, 30:39] = 255
    mask[3, 5] = 0
    json_export(raw, [result("brushlabels", {"format": "rle", "rle": brush.mask2rle(mask), "brushlabels": ["cell"]})])
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out")
    assert manifest.loc[0, "labeled"]
    assert np.array_equal(read(tmp_path / "out", "masks"), mask)


POLYGON_PIXELS = [[4.0, 3.0], [30.0, 6.0], [22.0, 28.0], [6.0, 20.0]]


def test_polygons_in_percent_give_the_labelme_paths_mask(tmp_path):
    labelme_raw, studio_raw = tmp_path / "labelme", tmp_path / "studio"
    save_image(labelme_raw)
    (labelme_raw / "cells.json").write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "imagePath": "images/cells.png", "imageData": None,
        "imageHeight": HEIGHT, "imageWidth": WIDTH,
        "shapes": [{"label": "cell", "points": POLYGON_PIXELS, "shape_type": "polygon", "flags": {}}]}))
    ingest(IngestParams(raw_dir=str(labelme_raw)), 0, tmp_path / "out-labelme")
    save_image(studio_raw)
    percent = [[x * 100 / WIDTH, y * 100 / HEIGHT] for x, y in POLYGON_PIXELS]
    (studio_raw / "annotations").mkdir()
    (studio_raw / "annotations" / "min.json").write_text(json.dumps([{  # "JSON-MIN": one row per task
        "image": "/data/local-files/?d=images/cells.png", "id": 3, "annotator": 1, "annotation_id": 5,
        "label": [{"points": percent, "closed": True, "polygonlabels": ["cell"],
                   "original_width": WIDTH, "original_height": HEIGHT}]}]))
    ingest(IngestParams(raw_dir=str(studio_raw)), 0, tmp_path / "out-studio")
    expected = read(tmp_path / "out-labelme", "masks")
    assert expected.any()
    assert np.array_equal(read(tmp_path / "out-studio", "masks"), expected)


def test_a_tiles_annotation_lands_at_its_place_in_the_source_image(tmp_path):
    raw = tmp_path / "raw"
    save_image(raw)
    tile = {"image": "cells", "y": 16, "x": 16, "scale": 1.0, "tile_size": 16}
    square = [[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0]]  # the tile's top-left quarter, in percent
    json_export(raw, [result("polygonlabels", {"points": square, "polygonlabels": ["cell"]}, 16, 16)],
                data={"image": "/data/local-files/?d=export/cells@y16_x16.png", "activeseg_id": "cells@y16_x16",
                      "activeseg_tile": tile, "activeseg_rank": 1, "activeseg_score": 0.4})
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out")
    assert manifest.loc[0, "queried"]
    mask, ignore = read(tmp_path / "out", "masks") > 0, read(tmp_path / "out", "ignore") > 0
    rows, columns = np.nonzero(mask)
    assert rows.min() == 16 and columns.min() == 16 and rows.max() <= 24 and columns.max() <= 24
    assert not ignore[16:32, 16:32].any() and ignore[:16].all() and ignore[:, :16].all()


@pytest.mark.parametrize("results, problem", [
    ([result("rectanglelabels", {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cell"]})],
     "region 0 is a rectanglelabels"),
    ([result("brushlabels", {"format": "rle", "rle": [1, 2, 3], "brushlabels": ["cell"]})], "region 0's brush RLE"),
    ([result("polygonlabels", {"points": [[1, 1], [2, 2]], "polygonlabels": ["cell"]})], "region 0 is a polygon"),
    ([result("polygonlabels", {"points": [[1, 1], [2, 2], [3, 1]], "polygonlabels": []})], "region 0 has no label"),
])
def test_bad_tasks_are_one_line_naming_file_and_task_with_nothing_written(tmp_path, results, problem):
    raw = tmp_path / "raw"
    save_image(raw)
    path = json_export(raw, results)
    with pytest.raises(ActivesegError) as caught:
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out")
    assert str(caught.value).startswith(f"{path}#task7: ") and problem in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_task_of_an_image_that_is_not_there_is_named(tmp_path):
    raw = tmp_path / "raw"
    save_image(raw, "other")
    path = json_export(raw, [result("polygonlabels", {"points": [[1, 1], [20, 2], [9, 30]],
                                                      "polygonlabels": ["cell"]})])
    with pytest.raises(ActivesegError, match=rf"^{path}#task7: labels image 'cells', which is not in"):
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out")
