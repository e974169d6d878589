"""Label Studio's JSON and JSON-MIN exports in: brush RLE, polygons in percent, tiles; bad tasks named.
The query's tasks out (export/label_studio/): their format, and the round trip back through ingest."""

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


# --- out and back in: the query's export/label_studio/ (tasks.json, config.xml) -------------------

LABEL = "cell"


def query_export(tmp_path: Path, sources: dict, pool: dict, chosen: list, tile_size: int = 0) -> Path:
    """What the query stage writes for ``chosen`` of the ``pool`` ({image or tile id: the model's
    probability map}) of the ingested images ``sources`` ({id: pixels}); returns ``export/``. The
    ranking scores the pool in reverse order of ``pool``."""
    from activeseg import imageio
    from activeseg.acquisition import PoolScores, rank
    from activeseg.annotation import export_for_annotation

    ingested = tmp_path / "ingested"
    (ingested / "images").mkdir(parents=True)
    for image_id, pixels in sources.items():
        imageio.write_png(ingested / "images" / f"{image_id}.png", pixels)
    ids, probabilities = np.array(list(pool)), np.stack(list(pool.values()))
    scores = np.linspace(0.2, 0.1, len(ids))
    scored = PoolScores(scores, np.zeros_like(probabilities), probabilities)
    export_for_annotation(tmp_path / "query", chosen, ids, scored, ingested, "entropy", 0.5, LABEL,
                          tile_size=tile_size, ranking=rank(ids, scores, "entropy", tiles=bool(tile_size)),
                          model_version="main@0123abc", served_export="data/query/export")
    return tmp_path / "query" / "export"


def two_blobs(size: int = 16) -> np.ndarray:
    probability = np.zeros((size, size), np.float32)
    probability[2:7, 3:12] = 0.9
    cv2.circle(probability, (10, 11), 3, 0.8, -1)
    return probability


def accepted(tasks: list) -> list:
    """Label Studio's "JSON" export of ``tasks`` after the annotator submitted each prediction as
    it was: the annotation's result is the prediction's (regions marked ``origin: prediction``)."""
    return [{"id": number, "data": task["data"], "predictions": [1000 + number],
             "annotations": [{"id": 100 + number, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
                              "result": [{**region, "origin": "prediction"} for region in task["predictions"][0]["result"]],
                              "created_at": "2026-12-03T10:00:00Z", "updated_at": "2026-12-03T10:01:00Z",
                              "lead_time": 12.5, "prediction": {}}]}
            for number, task in enumerate(tasks, 1)]


def test_tasks_json_is_label_studios_task_format_and_fits_config_xml(tmp_path):
    """Checked against what label_studio_converter (Label Studio's own export code; the pinned
    packages ship no task schema) makes of config.xml, and the documented task format: data.image
    a local-files URL below the project root, polygon points in percent (0-100) of that image."""
    import urllib.parse
    import xml.etree.ElementTree as ET

    from label_studio_converter import Converter
    from label_studio_converter.utils import parse_config

    from activeseg import labelme

    rng = np.random.default_rng(0)
    images = {"wide": rng.integers(0, 255, (36, 52, 3), dtype=np.uint8),  # not square: x and y apart
              "tall": rng.integers(0, 255, (48, 20, 3), dtype=np.uint8),
              "left": rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)}
    pool = dict(zip(images, [two_blobs(), two_blobs().T, np.zeros((16, 16), np.float32)]))
    export = query_export(tmp_path, images, pool, ["tall", "wide"])
    config_text = (export / "label_studio" / "config.xml").read_text()
    tasks = json.loads((export / "label_studio" / "tasks.json").read_text())

    view = ET.fromstring(config_text)
    (image_tag,) = view.iter("Image")
    tools = {tool.get("name"): tool for tool in view if tool.tag in ("PolygonLabels", "BrushLabels")}
    assert sorted(tool.tag for tool in tools.values()) == ["BrushLabels", "PolygonLabels"]
    for tool in tools.values():
        assert tool.get("toName") == image_tag.get("name")
        assert [label.get("value") for label in tool.iter("Label")] == [LABEL, "__ignore__"]
    schema = parse_config(config_text)
    assert {name: info["type"] for name, info in schema.items()} == {name: tool.tag for name, tool in tools.items()}
    assert {"COCO", "BRUSH_TO_PNG"} <= set(Converter(config_text, str(tmp_path)).supported_formats), \
        "Label Studio's converter sees no image segmentation config"
    data_key = image_tag.get("value").removeprefix("$")

    # the tasks in the order picked, each with its place and score in the ranking
    ranking = {"wide": (1, 0.2), "tall": (2, 0.15)}
    assert [task["data"]["activeseg_id"] for task in tasks] == ["tall", "wide"]
    for task in tasks:
        assert set(task) == {"data", "predictions"}
        data, (prediction,) = task["data"], task["predictions"]
        image_id = data["activeseg_id"]
        url = urllib.parse.urlparse(data[data_key])
        assert url.path == "/data/local-files/" and urllib.parse.parse_qs(url.query) == {
            "d": [f"data/query/export/{image_id}.png"]}
        assert (data["activeseg_rank"], data["activeseg_score"]) == pytest.approx(ranking[image_id])
        assert prediction["model_version"] == "main@0123abc" and 0.5 <= prediction["score"] <= 1
        height, width = images[image_id].shape[:2]
        pixels = [shape.points for shape in labelme.load(export / f"{image_id}.json").shapes]
        assert len(prediction["result"]) == len(pixels) == 2
        for region, points in zip(prediction["result"], pixels):
            tool = schema[region["from_name"]]
            assert region["type"] == tool["type"].lower() == "polygonlabels"
            assert region["to_name"] in tool["to_name"] and region["value"]["polygonlabels"][0] in tool["labels"]
            assert (region["original_width"], region["original_height"]) == (width, height)
            percent = np.array(region["value"]["points"])
            assert percent.shape[1] == 2 and len(percent) >= 3 and (percent >= 0).all() and (percent <= 100).all()
            np.testing.assert_allclose(percent * [width / 100, height / 100], points, atol=1e-9)
            assert len({region["id"] for region in prediction["result"]}) == len(prediction["result"])


def test_an_accepted_prediction_comes_back_as_the_models_mask(tmp_path):
    """tasks.json → the annotator submits the prediction → Label Studio's JSON export, and the
    JSON-MIN that Label Studio's converter makes of it → ingest: the mask the Labelme export of the
    same outlines gives, which is the thresholded prediction up to drawing polygons."""
    from label_studio_converter import Converter

    from activeseg import labelme

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    export = query_export(tmp_path, {"cells": image}, {"cells": two_blobs()}, ["cells"])
    tasks = json.loads((export / "label_studio" / "tasks.json").read_text())
    exported = tmp_path / "project-1-at-2026-12-03-10-02.json"
    exported.write_text(json.dumps(accepted(tasks)))
    minimal = tmp_path / "json-min"
    Converter(str(export / "label_studio" / "config.xml"), str(tmp_path)).convert_to_json_min(
        str(exported), str(minimal), is_dir=False)
    expected = labelme.rasterize(labelme.load(export / "cells.json"), HEIGHT, WIDTH)[0]
    predicted = cv2.resize(two_blobs(), (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR) > 0.5
    assert (expected > 0).sum() > 50 and ((expected > 0) & predicted).sum() / ((expected > 0) | predicted).sum() > 0.8

    for name, export_file in (("json", exported), ("json-min", minimal / "result.json")):
        raw = raw_folder(tmp_path / f"raw-{name}", image, {"export.json": export_file.read_text()})
        manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / f"out-{name}")
        assert manifest.loc[0, "queried"], name
        np.testing.assert_array_equal(read(tmp_path / f"out-{name}", "masks"), expected, err_msg=name)


def raw_folder(raw: Path, image: np.ndarray, annotations: dict) -> Path:
    """``raw/images/cells.png`` and ``raw/annotations/<name>`` for each {name: text}."""
    (raw / "images").mkdir(parents=True)
    assert cv2.imwrite(str(raw / "images" / "cells.png"), image[..., ::-1])
    (raw / "annotations").mkdir()
    for name, text in annotations.items():
        (raw / "annotations" / name).write_text(text)
    return raw


def test_an_accepted_tile_task_labels_its_place_in_the_source_image(tmp_path):
    """A tile's task (the tile not at 0, 0) → accepted → ingest: the same mask and __ignore__ map
    as its Labelme file gives, the outlines inside the tile's block of the source image."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    tile = "cells@y16_x16"
    pool = {"cells@y0_x0": np.zeros((16, 16), np.float32), tile: two_blobs()}
    export = query_export(tmp_path, {"cells": image}, pool, [tile], tile_size=16)
    (task,) = json.loads((export / "label_studio" / "tasks.json").read_text())
    assert task["data"]["activeseg_tile"] == {"image": "cells", "y": 16, "x": 16, "scale": 1.0, "tile_size": 16}
    studio = raw_folder(tmp_path / "raw-studio", image, {"export.json": json.dumps(accepted([task]))})
    labelme_raw = raw_folder(tmp_path / "raw-labelme", image, {f"{tile}.json": (export / f"{tile}.json").read_text()})
    ingest(IngestParams(raw_dir=str(studio)), 0, tmp_path / "out-studio")
    ingest(IngestParams(raw_dir=str(labelme_raw)), 0, tmp_path / "out-labelme")

    mask, ignore = read(tmp_path / "out-studio", "masks"), read(tmp_path / "out-studio", "ignore")
    np.testing.assert_array_equal(mask, read(tmp_path / "out-labelme", "masks"))
    np.testing.assert_array_equal(ignore, read(tmp_path / "out-labelme", "ignore"))
    block = np.zeros((HEIGHT, WIDTH), bool)
    block[16:32, 16:32] = True
    assert mask[block].sum() > 20 * 255 and not mask[~block].any()
    assert (ignore[~block] == 255).all() and not ignore[block].any()
