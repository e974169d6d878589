"""Export for annotation: the queried images, Labelme JSON pre-filled with the model's polygons,
and an uncertainty map per image.

Layout of an export (the query stage's ``data/query``)::

    export/<id>.png           the image at its original size (from data/ingested/images)
    export/<id>.json          Labelme 5 JSON beside it: the thresholded prediction as polygons,
                              imagePath "<id>.png", imageData null, flags {"activeseg_queried": true}
    uncertainty/<id>.png      the strategy's pixel score as a heat map, original size, on the
                              strategy's fixed scale (black = certain, yellow = the maximum)
    export/label_studio/tasks.json   the same images as Label Studio tasks (:func:`label_studio_task`)
    export/label_studio/config.xml   the labelling config they need (:func:`label_studio_config`)
    exported_shapes.json      {id: digest of the exported shapes}, so that a file edited in
                              export/ is told apart (see :mod:`activeseg.rescue`)

``export/*.json`` and ``*.png`` are exactly what goes back into ``data/raw`` once corrected in
Labelme, so the annotator corrects polygons instead of drawing from nothing. The
``activeseg_queried`` flag tells the split that the image was chosen by active learning: it joins
train, never val or test.

The Label Studio tasks carry the same outlines as a prediction (``polygonlabels``, points in
percent of the image, as Label Studio stores them; ``score`` the model's mean pixel confidence,
``model_version`` the MLflow run's name) and, in ``data``, the ids that
:mod:`activeseg.label_studio` reads back (``activeseg_id``, a tile's ``activeseg_tile``) with
``activeseg_rank`` and ``activeseg_score`` from the ranking, for sorting in the Data Manager. Each
``data.image`` is a local-files URL, ``/data/local-files/?d=<path>``, the path relative to
Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, which is the project root (the folder ``dvc repro``
runs in): ``data/query/export/<id>.png``.

With tiles (``preprocess.tile_size``) the ids are tile ids, ``<image id>@y<Y>_x<X>``: the PNG is
that tile of the image resampled by ``preprocess.scale``, without its reflection padding, and the
JSON (of that size) also records the tile's place under ``activeseg_tile``, which ingest reads
to label that tile of that image (:mod:`activeseg.tile_labels`).
"""

from __future__ import annotations

import json
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from activeseg import imageio
from activeseg.acquisition import SCORE_MAXIMUM, PoolScores
from activeseg.errors import ActivesegError
from activeseg.label_studio import ID_KEY, RANK_KEY
from activeseg.progress import progress
from activeseg.rescue import EXPORT_RECORD, shapes_digest
from activeseg.tile_labels import TILE_KEY, TilePlacement
from activeseg.tiling import parse_tile_id, rescale

LABELME_VERSION = "5.5.0"
QUERIED_FLAG = "activeseg_queried"
LABEL_STUDIO_FOLDER = "label_studio"
LOCAL_FILES_URL = "/data/local-files/?d="
SCORE_KEY = "activeseg_score"
# the names of the labelling config's tags, which every task's results refer to (from_name, to_name)
IMAGE_TAG, POLYGON_TAG, BRUSH_TAG = "image", "polygon", "brush"
IGNORE_LABEL = "__ignore__"
# Contours are simplified to within this many pixels: a Labelme polygon point per boundary pixel
# would make the shapes hard to edit.
POLYGON_TOLERANCE = 1.0


def prediction_polygons(probability: np.ndarray, height: int, width: int, threshold: float) -> list[list[list[float]]]:
    """Outer contours of ``probability > threshold`` after resizing the map to ``height x width``,
    as lists of ``[x, y]`` points (at least 3 each)."""
    resized = cv2.resize(probability.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    foreground = (resized > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        simplified = cv2.approxPolyDP(contour, POLYGON_TOLERANCE, closed=True)[:, 0, :]
        if len(simplified) >= 3:
            polygons.append([[float(x), float(y)] for x, y in simplified])
    return polygons


def labelme_document(image_name: str, height: int, width: int, polygons: list, label: str) -> dict:
    """A Labelme 5 annotation of one image: one polygon shape per predicted object."""
    shapes = [{"label": label, "points": points, "group_id": None, "description": "",
               "shape_type": "polygon", "flags": {}, "mask": None} for points in polygons]
    return {"version": LABELME_VERSION, "flags": {QUERIED_FLAG: True}, "shapes": shapes,
            "imagePath": image_name, "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def local_files_url(path: str) -> str:
    """Label Studio's URL of a file served from ``LOCAL_FILES_DOCUMENT_ROOT``, ``path`` relative to it."""
    return LOCAL_FILES_URL + urllib.parse.quote(path, safe="/@")


def document_path(folder: str | Path) -> str:
    """``folder``'s path relative to the current folder (the project root, where ``dvc repro``
    runs the stages), which is the Label Studio document root the README sets up."""
    resolved, root = Path(folder).resolve(), Path.cwd().resolve()
    if resolved != root and root not in resolved.parents:
        raise ActivesegError(f"{folder}: outside the project folder {root}, so Label Studio, serving files from "
                             "the project root, cannot show its images; give the query stage an --out inside it")
    return resolved.relative_to(root).as_posix()


def prediction_confidence(probability: np.ndarray) -> float:
    """The mean over pixels of the probability of the predicted class: 1 where the model is sure
    of every pixel, 0.5 where it guesses (Label Studio's prediction ``score``, lowest = least sure)."""
    return float(np.mean(np.maximum(probability, 1.0 - probability)))


def label_studio_task(image_url: str, image_id: str, rank: int, score: float, height: int, width: int,
                      polygons: list, label: str, model_version: str, confidence: float,
                      tile: Optional[TilePlacement] = None) -> dict:
    """A Label Studio task of one exported image (or tile) with the model's outlines as a
    prediction: ``polygons`` in pixels of the ``height`` x ``width`` image, written in percent."""
    data = {"image": image_url, ID_KEY: image_id, RANK_KEY: int(rank), SCORE_KEY: float(score)}
    if tile is not None:
        data[TILE_KEY] = tile.record()
    result = [{"id": f"{POLYGON_TAG}{number}", "from_name": POLYGON_TAG, "to_name": IMAGE_TAG,
               "type": "polygonlabels", "original_width": int(width), "original_height": int(height),
               "image_rotation": 0,
               "value": {"points": [[x * 100.0 / width, y * 100.0 / height] for x, y in points],
                         "closed": True, "polygonlabels": [label]}}
              for number, points in enumerate(polygons)]
    return {"data": data, "predictions": [{"model_version": model_version, "score": confidence, "result": result}]}


def label_studio_config(label: str) -> str:
    """The labelling config of :func:`label_studio_task`'s tasks: the image, a polygon tool (the
    predictions' outlines) and a brush, each with ``label`` and ``__ignore__`` (regions that count
    in no loss or metric, as in Labelme)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE_TAG, value=f"${IMAGE_TAG}", zoom="true", zoomControl="true")
    for tag, name in (("PolygonLabels", POLYGON_TAG), ("BrushLabels", BRUSH_TAG)):
        tool = ET.SubElement(view, tag, name=name, toName=IMAGE_TAG)
        ET.SubElement(tool, "Label", value=label, background="#ff4d4f")
        ET.SubElement(tool, "Label", value=IGNORE_LABEL, background="#8c8c8c")
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def uncertainty_picture(score_map: np.ndarray, strategy: str, height: int, width: int) -> np.ndarray:
    """RGB heat map of a pixel-score map at ``height x width``, on the strategy's fixed scale."""
    scaled = np.clip(score_map / SCORE_MAXIMUM[strategy], 0.0, 1.0)
    resized = cv2.resize(scaled.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    bgr = cv2.applyColorMap((resized * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tile_for_annotation(ingested_dir: Path, tile: str, probability: np.ndarray, score_map: np.ndarray,
                         tile_size: int, scale: float):
    """The tile's pixels (of the image resampled by ``scale``, padding cropped off), its
    probability and score maps cropped alike, and its :class:`TilePlacement`."""
    image_id, y, x = parse_tile_id(tile)
    image = imageio.read_image(ingested_dir / "images" / f"{image_id}.png")
    where = TilePlacement(image_id, y, x, scale, tile_size)
    rows, columns = where.extent(*image.shape[:2])
    pixels = rescale(image, scale)[y:y + rows, x:x + columns]
    return np.ascontiguousarray(pixels), probability[:rows, :columns], score_map[:rows, :columns], where


def export_for_annotation(out_dir: str | Path, chosen_ids: list[str], pool_ids: np.ndarray, scored: PoolScores,
                          ingested_dir: str | Path, strategy: str, threshold: float, label: str,
                          tile_size: int = 0, scale: float = 1.0, *, ranking, model_version: str,
                          served_export: str) -> None:
    """Write ``export/`` and ``uncertainty/`` (see the module docstring) for ``chosen_ids`` under
    ``out_dir``, which the caller stages atomically; ``tile_size`` > 0: the ids are tiles of that
    side, cut from the images resampled by ``scale``. ``ranking`` (:func:`activeseg.acquisition.rank`)
    gives each task its rank and score, ``model_version`` names the model in the Label Studio
    predictions, and ``served_export`` is where ``export/`` will be relative to Label Studio's
    document root (the project root), for the tasks' image URLs."""
    out_dir = Path(out_dir)
    (out_dir / "export" / LABEL_STUDIO_FOLDER).mkdir(parents=True)
    (out_dir / "uncertainty").mkdir()
    index_of = {image_id: index for index, image_id in enumerate(np.asarray(pool_ids).astype(str))}
    ranked = ranking.set_index(ranking["id"].astype(str))
    digests, tasks = {}, []
    for image_id in progress(chosen_ids, "export for annotation"):
        index = index_of[image_id]
        probability, score_map, where = scored.probabilities[index], scored.maps[index], None
        if tile_size:
            image, probability, score_map, where = _tile_for_annotation(Path(ingested_dir), image_id, probability,
                                                                        score_map, tile_size, scale)
        else:
            image = imageio.read_image(Path(ingested_dir) / "images" / f"{image_id}.png")
        height, width = image.shape[:2]
        imageio.write_png(out_dir / "export" / f"{image_id}.png", image)
        polygons = prediction_polygons(probability, height, width, threshold)
        document = labelme_document(f"{image_id}.png", height, width, polygons, label)
        if where is not None:
            document[TILE_KEY] = where.record()
        (out_dir / "export" / f"{image_id}.json").write_text(json.dumps(document, indent=2) + "\n")
        digests[image_id] = shapes_digest(document)
        tasks.append(label_studio_task(local_files_url(f"{served_export}/{image_id}.png"), image_id,
                                       ranked.loc[image_id, "rank"], ranked.loc[image_id, "score"], height, width,
                                       polygons, label, model_version, prediction_confidence(probability), where))
        imageio.write_png(out_dir / "uncertainty" / f"{image_id}.png",
                          uncertainty_picture(score_map, strategy, height, width))
    studio = out_dir / "export" / LABEL_STUDIO_FOLDER
    (studio / "tasks.json").write_text(json.dumps(tasks, indent=2) + "\n")
    (studio / "config.xml").write_text(label_studio_config(label))
    (out_dir / EXPORT_RECORD).write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
