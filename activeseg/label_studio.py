"""Label Studio's JSON and JSON-MIN exports, read as Labelme files.

An export is a JSON list of tasks below ``raw_dir/annotations/`` (:func:`is_export`). Each task
with an annotation (the newest not cancelled; JSON-MIN holds one per row) becomes a
:class:`~activeseg.labelme.LabelmeFile` (:func:`load`), so everything downstream is the Labelme
path's: ``polygonlabels`` become polygons (points converted from percent of the image, as Label
Studio stores them, to pixels as its own COCO converter does), ``brushlabels`` become ``mask``
shapes over the whole image, their RLE decoded by Label Studio's own decoder
(``label_studio_converter.brush``), labels filter by ``ingest.labelme.foreground_labels`` and
``__ignore__`` cuts, and a task of a queried tile (``data.activeseg_tile``, as the query export
writes it) labels that tile of its source image (see :mod:`activeseg.tile_labels`).

A task's image is ``data.activeseg_id`` (what the query export writes), else the file stem of
``data.image``. Each file's path is ``<export>#task<id>``, the house form of "file and entry", so
every error names both.
"""

from __future__ import annotations

import math
import urllib.parse
from pathlib import Path, PureWindowsPath
from typing import Any, Optional

import numpy as np

from activeseg import labelme, tile_labels
from activeseg.errors import ActivesegError

ANNOTATIONS_FOLDER = "annotations"
ID_KEY = "activeseg_id"
RANK_KEY = "activeseg_rank"  # a task the query exported: its image joins train as a queried one
REGION_TYPES = ("polygonlabels", "brushlabels")
UNREAD_TYPES = ("rectanglelabels", "ellipselabels", "keypointlabels", "rectangle", "ellipse", "keypoint",
                "polygon", "brush")


def is_export(document: Any) -> bool:
    """A Label Studio JSON or JSON-MIN export: a list of task objects."""
    return isinstance(document, list) and all(isinstance(task, dict) for task in document)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def image_id(data: dict) -> Optional[str]:
    """The activeseg id a task's data names: ``activeseg_id``, else the stem of ``image``'s file
    (a local-files URL ``/data/local-files/?d=<path>``, an upload path or a plain URL)."""
    if isinstance(data.get(ID_KEY), str) and data[ID_KEY]:
        return data[ID_KEY]
    url = data.get("image")
    if not isinstance(url, str) or not url:
        return None
    parsed = urllib.parse.urlparse(url)
    path = urllib.parse.parse_qs(parsed.query).get("d", [parsed.path])[0]
    stem = PureWindowsPath(urllib.parse.unquote(path)).stem
    return stem or None


def _task_parts(task: dict) -> tuple[Any, dict, Optional[list]]:
    """(task id, its data, its regions as (type, value, width, height) sources) for either format;
    regions None when the task has no annotation."""
    if "annotations" in task or "data" in task:  # JSON
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        annotations = [annotation for annotation in task.get("annotations") or []
                       if isinstance(annotation, dict) and not annotation.get("was_cancelled")]
        if not annotations:
            return task.get("id"), data, None
        newest = max(annotations, key=lambda annotation: str(annotation.get("updated_at")
                                                               or annotation.get("created_at") or ""))
        result = newest.get("result")
        regions = [(item.get("type"), item.get("value"), item.get("original_width"), item.get("original_height"))
                   for item in result if isinstance(item, dict)] if isinstance(result, list) else result
        return task.get("id"), data, regions
    regions = []  # JSON-MIN: the task's data and one list of region values per control tag
    for value in task.values():
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict) and any(key in item for key in REGION_TYPES + UNREAD_TYPES):
                kind = next((key for key in REGION_TYPES + UNREAD_TYPES if key in item), None)
                regions.append((kind, item, item.get("original_width"), item.get("original_height")))
    return task.get("id"), task, regions if regions or "annotation_id" in task else None


def _shape(where: str, index: int, kind: Any, value: Any, width: Any, height: Any) -> labelme.Shape:
    fix = "re-export the annotation from Label Studio"
    if kind not in REGION_TYPES:
        raise ActivesegError(f"{where}: region {index} is a {str(kind)[:30]}, which ingest does not read; "
                             "draw polygons or brush strokes (see the query's label_studio/config.xml)")
    if not isinstance(value, dict):
        raise ActivesegError(f"{where}: region {index} has no value object; {fix}")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise ActivesegError(f"{where}: region {index} has no positive original_width and original_height; {fix}")
    labels = value.get(kind)
    if not (isinstance(labels, list) and labels and isinstance(labels[0], str)):
        raise ActivesegError(f"{where}: region {index} has no label; give it one in Label Studio")
    if kind == "polygonlabels":
        points = value.get("points")
        if not (isinstance(points, list) and len(points) >= 3 and all(
                isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point) for point in points)):
            raise ActivesegError(f"{where}: region {index} is a polygon without 3 or more [x, y] points; redraw it")
        return labelme.Shape(labels[0], "polygon",
                             tuple((x * width / 100, y * height / 100) for x, y in points))
    rle = value.get("rle")
    if not (isinstance(rle, list) and rle and all(_is_int(byte) and 0 <= byte <= 255 for byte in rle)):
        raise ActivesegError(f"{where}: region {index} is a brush stroke without RLE bytes; {fix}")
    # imported here: the label_studio_converter package loads nltk and more, seconds that the
    # query stage (which writes tasks) and an ingest without brush strokes need not spend
    from label_studio_converter import brush

    flat = None
    # the stream opens with its value count (32 bits): checked first, for a corrupt count would
    # make the decoder allocate and fill gigabytes
    if len(rle) >= 4 and int.from_bytes(bytes(rle[:4]), "big") == width * height * 4:
        try:
            flat = brush.decode_rle(rle)
        except (IndexError, ValueError):
            pass
    if flat is None or flat.size != width * height * 4:
        raise ActivesegError(f"{where}: region {index}'s brush RLE is corrupt or not of the {width}x{height} "
                             f"image; {fix}")
    bitmap = flat.reshape(height, width, 4)[:, :, 3] > 0  # RGBA, the alpha is the stroke
    return labelme.Shape(labels[0], "mask", ((0.0, 0.0), (float(width - 1), float(height - 1))), bitmap)


def load(path: Path, document: list) -> list[labelme.LabelmeFile]:
    """Every annotated task of one export as a Labelme file (no image of its own: the ingest
    finds it by :func:`image_id`; a tile's task carries its ``activeseg_tile``)."""
    files = []
    for index, task in enumerate(document):
        task_id, data, regions = _task_parts(task)
        where = Path(f"{path}#task{task_id if _is_int(task_id) or isinstance(task_id, str) else index}")
        if regions is None:
            continue  # not annotated: the image stays in the pool
        if not isinstance(regions, list):
            raise ActivesegError(f"{where}: its annotation's result is not a list; re-export it from Label Studio")
        if image_id(data) is None:
            raise ActivesegError(f"{where}: names no image (data.image or data.{ID_KEY}); re-export it")
        shapes = tuple(_shape(str(where), number, *region) for number, region in enumerate(regions))
        sizes = {(region[3], region[2]) for region in regions}
        height, width = sizes.pop() if len(sizes) == 1 else (None, None)
        other = {tile_labels.TILE_KEY: data[tile_labels.TILE_KEY]} if tile_labels.TILE_KEY in data else {}
        other[ID_KEY] = image_id(data)
        flags = {labelme.QUERIED_FLAG: True} if data.get(RANK_KEY) is not None else {}
        files.append(labelme.LabelmeFile(where, shapes, flags, None, None, height, width, other))
    return files


def export_path(raw_dir: Path, path: Path) -> bool:
    """Whether ``path`` lies where Label Studio exports are read: ``raw_dir/annotations/``."""
    return (raw_dir / ANNOTATIONS_FOLDER) in path.parents
