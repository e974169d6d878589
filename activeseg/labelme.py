"""Labelme JSON: reading, validating and rasterising Labelme annotation files.

Owns the Labelme side of ingest (and of the annotation round trip): :func:`load` parses and
validates one ``.json`` file, :func:`read_image` finds its image (embedded ``imageData``, else
``imagePath`` relative to the JSON file, never outside ``root``), and :func:`rasterize` turns the
shapes into a 0/255 foreground mask and a 0/255 ``__ignore__`` mask.

Rasterisation follows Labelme's own ``labelme.utils.shape_to_mask`` / ``shapes_to_label``
(labelme 6.3, MIT licence; re-implemented here with the same Pillow ``ImageDraw`` calls, because
the ``labelme`` package pulls in Qt): polygons and oriented rectangles are filled polygons with
their outline, rectangles are filled boxes between the two corners, circles are filled discs
through the second point, lines and line strips are drawn ``line_width`` (10) pixels wide, points
are discs of radius ``point_size`` (5), and ``mask`` shapes paste their embedded bitmap into the
box. Shapes are painted in file order and a later shape wins where shapes overlap, exactly as
Labelme's label image does; so an ``__ignore__`` polygon drawn after a ``person`` polygon cuts it.

Every problem in a file raises :class:`~activeseg.errors.ActivesegError` (one line naming the
file and the fix), never another exception, whatever the file holds.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Optional

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw

from activeseg import imageio
from activeseg.errors import ActivesegError

IGNORE_LABEL = "__ignore__"
# Image-level Labelme flag set on the JSON files the active-learning query exports: an image
# that comes back labeled with this flag was chosen by the model, so it always joins train.
QUERIED_FLAG = "activeseg_queried"
LABELME_KEYS = ("version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth")
SHAPE_TYPES = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "oriented_rectangle", "mask")
LINE_WIDTH = 10  # Labelme's shape_to_mask defaults
POINT_SIZE = 5

_BACKGROUND, _FOREGROUND, _IGNORE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Shape:
    label: str
    shape_type: str
    points: tuple[tuple[float, float], ...]
    mask: Optional[np.ndarray] = None  # only for shape_type "mask": the bitmap inside the box


@dataclasses.dataclass(frozen=True)
class LabelmeFile:
    """One parsed Labelme file. ``image_path`` is resolved and checked to lie inside the root."""

    path: Path
    shapes: tuple[Shape, ...]
    flags: dict
    image_path: Optional[Path]
    image_data: Optional[bytes]
    image_height: Optional[int]
    image_width: Optional[int]
    # top-level keys that are not Labelme's own (Labelme keeps them on save as its ``otherData``):
    # where the query export records which tile of which image a file annotates
    other: dict = dataclasses.field(default_factory=dict)

    @property
    def queried(self) -> bool:
        """Whether the active-learning query exported this image for annotation."""
        return self.flags.get(QUERIED_FLAG) is True

    @property
    def labels(self) -> set[str]:
        return {shape.label for shape in self.shapes}


def _fail(path: Path, problem: str, fix: str) -> ActivesegError:
    return ActivesegError(f"{path}: {problem}; {fix}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resolve_image_path(json_path: Path, image_path: str, root: Path) -> Path:
    """``imagePath`` relative to the JSON file's folder; absolute paths and escapes from ``root``
    are refused (a label file must not make ingest read files outside the data folder)."""
    fix = "make imagePath a path relative to the JSON file that stays inside the data folder"
    if "\x00" in image_path:
        raise _fail(json_path, "imagePath contains a NUL character", fix)
    windows = PureWindowsPath(image_path)
    if windows.drive or windows.root or PurePosixPath(image_path).is_absolute():
        raise _fail(json_path, f"imagePath '{image_path}' is absolute", fix)
    relative = windows.as_posix()  # Labelme on Windows writes backslashes
    candidate = Path(os.path.normpath(json_path.parent / relative))
    # absolute before normalising: a relative root going up (../../data) keeps its leading ".."
    # when normalised, and would then never contain the candidate
    root_resolved = Path(os.path.normpath(root.absolute()))
    if not Path(os.path.normpath((json_path.parent / relative).absolute())).is_relative_to(root_resolved):
        raise _fail(json_path, f"imagePath '{image_path}' escapes the data folder {root}", fix)
    return candidate


def _parse_points(path: Path, index: int, raw: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, f"shape {index} has no points list", "give every shape a list of [x, y] points")
    points = []
    for point in raw:
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(value) for value in point)):
            raise _fail(path, f"shape {index} has a point {str(point)[:40]} that is not [x, y] numbers",
                        "fix or redraw the shape in Labelme")
        points.append((float(point[0]), float(point[1])))
    return tuple(points)


def _decode_bitmap(path: Path, index: int, encoded: Any) -> np.ndarray:
    if not isinstance(encoded, str):
        raise _fail(path, f"shape {index} is a mask shape without a base64 PNG 'mask'", "redraw the shape in Labelme")
    try:
        data = base64.b64decode(encoded, validate=False)
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except (binascii.Error, ValueError, cv2.error):
        array = None
    if array is None or array.ndim not in (2, 3) or array.size == 0:
        raise _fail(path, f"shape {index}'s embedded mask is not a readable PNG", "redraw the shape in Labelme")
    if array.ndim == 3:
        array = array[..., 0]
    return array.astype(bool)


_POINT_COUNTS = {"circle": (2, 2), "rectangle": (2, 2), "line": (2, 2), "point": (1, 1),
                 "oriented_rectangle": (4, 4), "mask": (2, 2), "linestrip": (2, None), "polygon": (3, None)}


def _parse_shape(path: Path, index: int, raw: Any) -> Shape:
    if not isinstance(raw, dict):
        raise _fail(path, f"shape {index} is not an object", "this is not a Labelme file; re-save it from Labelme")
    label = raw.get("label")
    if not isinstance(label, str):
        raise _fail(path, f"shape {index} has no text label", "give the shape a label in Labelme")
    shape_type = raw.get("shape_type")
    if shape_type is None:
        shape_type = "polygon"  # Labelme before 3.x wrote no shape_type: polygons only
    if shape_type not in SHAPE_TYPES:
        raise _fail(path, f"shape {index} ('{label}') has shape_type {str(shape_type)[:40]!r}",
                    f"use one of {', '.join(SHAPE_TYPES)}")
    points = _parse_points(path, index, raw.get("points"))
    low, high = _POINT_COUNTS[shape_type]
    if len(points) < low or (high is not None and len(points) > high):
        wanted = f"{low}" if low == high else f"at least {low}"
        raise _fail(path, f"shape {index} ('{label}') is a {shape_type} with {len(points)} points, "
                          f"Labelme needs {wanted}", "redraw the shape in Labelme")
    bitmap = _decode_bitmap(path, index, raw.get("mask")) if shape_type == "mask" else None
    return Shape(label=label, shape_type=shape_type, points=points, mask=bitmap)


def parse(data: Any, path: str | os.PathLike, root: Optional[str | os.PathLike] = None) -> LabelmeFile:
    """Validate a decoded Labelme JSON document (``path`` names it in errors and anchors imagePath)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    not_labelme = "this is not a Labelme file; re-save it from Labelme or move it out of the data folder"
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or "imagePath" not in data:
        raise _fail(path, "has no 'shapes' list and 'imagePath'", not_labelme)
    image_path_text = data.get("imagePath")
    encoded = data.get("imageData")
    if image_path_text is not None and not isinstance(image_path_text, str):
        raise _fail(path, "imagePath is not text", not_labelme)
    if encoded is not None and not isinstance(encoded, str):
        raise _fail(path, "imageData is not base64 text", not_labelme)
    image_path = resolve_image_path(path, image_path_text, root) if image_path_text else None
    image_data = None
    if encoded:
        try:
            image_data = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            raise _fail(path, "imageData is not valid base64", "re-save the file from Labelme") from None
    if image_path is None and image_data is None:
        raise _fail(path, "has neither imagePath nor imageData", "set imagePath to the image file next to the JSON")
    flags = data.get("flags") or {}
    if not isinstance(flags, dict):
        raise _fail(path, "flags is not an object", not_labelme)
    sizes = {}
    for key in ("imageHeight", "imageWidth"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise _fail(path, f"{key} is {str(value)[:20]}, not a positive whole number", "re-save the file from Labelme")
        sizes[key] = value
    shapes = tuple(_parse_shape(path, index, raw) for index, raw in enumerate(data["shapes"]))
    return LabelmeFile(path=path, shapes=shapes, flags=flags, image_path=image_path, image_data=image_data,
                       image_height=sizes["imageHeight"], image_width=sizes["imageWidth"],
                       other={key: value for key, value in data.items() if key not in LABELME_KEYS})


def load(path: str | os.PathLike, root: Optional[str | os.PathLike] = None) -> LabelmeFile:
    """Read and validate one Labelme JSON file; ``root`` (default: its folder) bounds imagePath."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _fail(path, "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        problem = "is not valid JSON" if not isinstance(error, OSError) else f"cannot be read ({error.strerror})"
        raise _fail(path, problem, "re-save it from Labelme or move it out of the data folder") from None
    return parse(data, path, root)


# EXIF orientation → numpy transform, as Labelme applies it when it opens an image file.
_EXIF_TRANSFORMS = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1)}


def _exif_orientation(path: Path) -> int:
    try:
        with PIL.Image.open(path) as image:
            return int(image.getexif().get(0x0112, 1))
    except Exception:  # no EXIF, or a file OpenCV will report as corrupt anyway
        return 1


def read_image(label_file: LabelmeFile) -> np.ndarray:
    """The annotated image as gray or RGB at its own bit depth: embedded ``imageData`` first, else ``imagePath``
    (turned upright by its EXIF orientation, as Labelme shows it)."""
    if label_file.image_data is not None:
        try:
            array = cv2.imdecode(np.frombuffer(label_file.image_data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            array = None
        if array is None or array.size == 0:
            raise _fail(label_file.path, "imageData is not a readable image", "re-save the file from Labelme")
        return imageio.to_rgb_or_gray(imageio.to_native(array, label_file.path), label_file.path)
    path = label_file.image_path
    if not path.is_file():
        raise _fail(label_file.path, f"its image {path} (imagePath) does not exist",
                    "put the image beside the JSON file or fix imagePath")
    image = imageio.read_native(path)
    transform = _EXIF_TRANSFORMS.get(_exif_orientation(path))
    return np.ascontiguousarray(transform(image)) if transform else image


def shape_to_mask(height: int, width: int, shape: Shape, line_width: int = LINE_WIDTH,
                  point_size: int = POINT_SIZE) -> np.ndarray:
    """One shape as a boolean ``(height, width)`` mask, drawn as Labelme's ``shape_to_mask`` does."""
    if shape.shape_type == "mask":
        (x1, y1), (x2, y2) = (tuple(int(value) for value in point) for point in shape.points)
        mask = np.zeros((height, width), bool)
        box = mask[max(y1, 0):max(y2 + 1, 0), max(x1, 0):max(x2 + 1, 0)]
        bitmap = shape.mask[max(-y1, 0):, max(-x1, 0):][:box.shape[0], :box.shape[1]]
        box[:bitmap.shape[0], :bitmap.shape[1]] = bitmap
        return mask
    image = PIL.Image.new("L", (width, height), 0)
    draw = PIL.ImageDraw.Draw(image)
    xy = list(shape.points)
    if shape.shape_type == "circle":
        (cx, cy), (px, py) = xy
        radius = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=1, fill=1)
    elif shape.shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape.shape_type in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=line_width)
    elif shape.shape_type == "point":
        (cx, cy), radius = xy[0], point_size
        draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=1, fill=1)
    else:  # polygon, oriented_rectangle
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(image, dtype=bool)


def _check_in_reach(label_file: LabelmeFile, height: int, width: int) -> None:
    """Points far outside the image are a broken file (and would make Pillow draw huge discs)."""
    margin = max(height, width)
    for index, shape in enumerate(label_file.shapes):
        for x, y in shape.points:
            if not (-margin <= x <= width + margin and -margin <= y <= height + margin):
                raise _fail(label_file.path, f"shape {index} ('{shape.label}') has point ({x:g}, {y:g}) far outside "
                                             f"the {width}x{height} image", "fix or redraw the shape in Labelme")


def rasterize(label_file: LabelmeFile, height: int, width: int,
              foreground_labels: Optional[Iterable[str]] = None,
              line_width: int = LINE_WIDTH, point_size: int = POINT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and ``__ignore__`` masks (uint8 0/255) of an image of the given size.

    ``foreground_labels``: the labels that count as foreground; ``None`` means every label but
    ``__ignore__``. Shapes with other labels paint background, so they cut earlier shapes as
    they would cut them in Labelme's label image.
    """
    _check_in_reach(label_file, height, width)
    wanted = None if foreground_labels is None else set(foreground_labels)
    label_image = np.full((height, width), _BACKGROUND, np.uint8)
    for shape in label_file.shapes:
        if shape.label == IGNORE_LABEL:
            value = _IGNORE
        elif wanted is None or shape.label in wanted:
            value = _FOREGROUND
        else:
            value = _BACKGROUND
        label_image[shape_to_mask(height, width, shape, line_width, point_size)] = value
    return ((label_image == _FOREGROUND).astype(np.uint8) * 255,
            (label_image == _IGNORE).astype(np.uint8) * 255)
