"""COCO instance JSON (what CVAT, Label Studio and Roboflow export): reading, validating, rasterising.

:func:`is_coco` tells a COCO file (an object with ``images``, ``annotations`` and ``categories``)
from a Labelme one; :func:`load` parses and validates one file, finding each image entry's file
relative to the JSON's folder or under ``raw_dir/images`` (never outside ``raw_dir``);
:func:`rasterize` turns one image's annotations into a 0/255 foreground mask and a 0/255
``__ignore__`` mask. Polygons and RLE (``iscrowd: 1``, compressed ``counts`` strings or
uncompressed lists) are decoded by pycocotools, each annotation on its own, so one bad entry
is named rather than crashing a merge.

Which annotations count: ``ingest.coco_categories`` is ``all`` or a list of category names (each
must be in the file); annotations with ``ignore: 1``, or with ``category_id`` 0 where the file
declares no category 0 (COCO's "unlabeled"; Label Studio's own COCO export numbers categories
from 0, so there 0 is a real category), go to the ignore map; the rest is background.

Every problem raises :class:`~activeseg.errors.ActivesegError`: one line naming the file, the entry
and the fix, whatever the file holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path, PureWindowsPath
from typing import Any, Optional, Union

import numpy as np
import pycocotools.mask as mask_utils

from activeseg import labelme
from activeseg.errors import ActivesegError

COCO_KEYS = ("images", "annotations", "categories")
ALL_CATEGORIES = "all"
UNLABELED_CATEGORY = 0  # COCO's "unlabeled" id, where the file declares no category 0


@dataclasses.dataclass(frozen=True)
class CocoImage:
    entry_id: int
    image_id: str  # activeseg's id: the file's stem
    path: Path
    height: Optional[int]
    width: Optional[int]
    annotations: tuple  # the raw annotation objects, validated by rasterize


@dataclasses.dataclass(frozen=True)
class CocoFile:
    path: Path
    images: tuple[CocoImage, ...]
    foreground_ids: frozenset
    ignore_ids: frozenset  # categories whose annotations go to the ignore map


def _fail(path: Path, problem: str, fix: str) -> ActivesegError:
    return ActivesegError(f"{path}: {problem}; {fix}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_coco(document: Any) -> bool:
    return isinstance(document, dict) and all(key in document for key in COCO_KEYS)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        raise _fail(path, f"is not valid JSON ({type(error).__name__})", "re-export it from the annotation tool") from None


def _find_image(path: Path, entry: str, file_name: str, raw_dir: Path) -> Path:
    """``file_name`` relative to the JSON's folder, else under ``raw_dir/images`` (also by its
    base name: CVAT and Label Studio write paths of their own servers); never outside raw_dir."""
    images_dir = os.path.relpath(raw_dir / "images", path.parent)
    for relative in (file_name, f"{images_dir}/{file_name}", f"{images_dir}/{PureWindowsPath(file_name).name}"):
        try:
            candidate = labelme.resolve_image_path(path, relative, raw_dir)
            if candidate.is_file():
                return candidate
        except (ActivesegError, OSError, ValueError):
            continue
    raise _fail(path, f"{entry}: its file '{file_name[:80]}' is not beside the JSON nor in {raw_dir / 'images'}",
                "put the image there or remove the entry")


def _categories(path: Path, raw: Any, wanted: Union[str, list]) -> tuple[frozenset, frozenset]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) and _is_int(item.get("id"))
                                            and isinstance(item.get("name"), str) for item in raw):
        raise _fail(path, "'categories' is not a list of {id, name} objects", "re-export it from the annotation tool")
    by_name: dict[str, set] = {}
    for item in raw:
        by_name.setdefault(item["name"], set()).add(item["id"])
    ignore = set(by_name.pop(labelme.IGNORE_LABEL, set()))
    if not any(item["id"] == UNLABELED_CATEGORY for item in raw):
        ignore.add(UNLABELED_CATEGORY)
    if wanted == ALL_CATEGORIES:
        foreground = {identifier for ids in by_name.values() for identifier in ids}
    else:
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise _fail(path, f"category '{missing[0]}' of ingest.coco_categories is not in the file (it has: "
                        f"{', '.join(sorted(by_name)) or 'none'})", "fix ingest.coco_categories in params.yaml")
        foreground = {identifier for name in wanted for identifier in by_name[name]}
    return frozenset(foreground), frozenset(ignore)


def load(path: Path, raw_dir: Path, wanted: Union[str, list] = ALL_CATEGORIES,
         document: Any = None) -> CocoFile:
    """Parse and validate one COCO file (``document``: its parsed JSON, when already read)."""
    document = read_json(path) if document is None else document
    if not is_coco(document):
        raise _fail(path, "is not COCO instance JSON (no images, annotations and categories)",
                    "export 'COCO' (instances) from the annotation tool")
    foreground, ignore = _categories(path, document["categories"], wanted)
    known = foreground | ignore | {item["id"] for item in document["categories"]}
    raw_images, raw_annotations = document["images"], document["annotations"]
    if not isinstance(raw_images, list) or not isinstance(raw_annotations, list):
        raise _fail(path, "'images' or 'annotations' is not a list", "re-export it from the annotation tool")
    entries: dict[int, dict] = {}
    for index, item in enumerate(raw_images):
        if not (isinstance(item, dict) and _is_int(item.get("id")) and isinstance(item.get("file_name"), str)
                and item["file_name"]):
            raise _fail(path, f"images[{index}] has no integer id and file_name", "re-export it from the annotation tool")
        if item["id"] in entries:
            raise _fail(path, f"images[{index}]: image id {item['id']} is used twice", "give every image its own id")
        for key in ("height", "width"):
            if item.get(key) is not None and not (_is_int(item[key]) and item[key] > 0):
                raise _fail(path, f"image {item['id']}: {key} {str(item[key])[:20]} is not a positive integer",
                            "fix or remove it (the image's own size is used)")
        entries[item["id"]] = item
    by_image: dict[int, list] = {identifier: [] for identifier in entries}
    for index, annotation in enumerate(raw_annotations):
        if not isinstance(annotation, dict) or not _is_int(annotation.get("image_id")) \
                or not _is_int(annotation.get("category_id")):
            raise _fail(path, f"annotations[{index}] has no integer image_id and category_id",
                        "re-export it from the annotation tool")
        if annotation["image_id"] not in entries:
            raise _fail(path, f"annotation {annotation.get('id', index)} is of image id {annotation['image_id']}, "
                        "which is not in 'images'", "add the image entry or remove the annotation")
        if annotation["category_id"] not in known:
            raise _fail(path, f"annotation {annotation.get('id', index)} has category_id {annotation['category_id']}, "
                        "which is not in 'categories'", "add the category or remove the annotation")
        by_image[annotation["image_id"]].append(annotation)
    images = []
    for identifier, item in entries.items():
        image_path = _find_image(path, f"image {identifier}", item["file_name"], raw_dir)
        images.append(CocoImage(identifier, image_path.stem, image_path, item.get("height"), item.get("width"),
                                tuple(by_image[identifier])))
    return CocoFile(path, tuple(images), foreground, ignore)


def _decode(path: Path, entry: str, segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's segmentation (polygons or RLE) as a boolean mask, via pycocotools."""
    fix = "redraw it or remove the annotation"
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                    and all(_is_number(value) for value in polygon)):
                raise _fail(path, f"{entry}: a polygon is not a flat list of 3 or more x, y pairs", fix)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return np.any([mask_utils.decode(rle) for rle in rles], axis=0).astype(bool)
    if not isinstance(segmentation, dict):
        raise _fail(path, f"{entry}: segmentation is neither polygons nor RLE", fix)
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if size != [height, width]:
        raise _fail(path, f"{entry}: RLE size {str(size)[:30]} is not the image's [{height}, {width}]",
                    "re-export the annotations for this image")
    try:
        if isinstance(counts, list):
            if not all(_is_int(value) and value >= 0 for value in counts) or sum(counts) != height * width:
                raise ValueError("counts do not cover the image")
            rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed → compressed
        elif isinstance(counts, str):
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise ValueError("counts is neither a list nor a string")
        mask = mask_utils.decode(rle)
        # pycocotools reads short counts past their end without a word: a valid RLE is the one
        # its own encoder writes back
        if mask_utils.encode(np.asfortranarray(mask))["counts"] != rle["counts"]:
            raise ValueError("counts do not cover the image")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise _fail(path, f"{entry}: RLE counts are corrupt or do not cover the {width}x{height} image", fix) from None
    return mask.astype(bool)


def rasterize(file: CocoFile, image: CocoImage, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The foreground and ignore masks (uint8 0/255) of ``image`` at ``height`` x ``width``."""
    if (image.height, image.width) not in ((None, None), (height, width)):
        raise _fail(file.path, f"image {image.entry_id} is {image.width}x{image.height} in the JSON but its file "
                    f"{image.path.name} is {width}x{height}", "re-export the annotations for this image")
    foreground = np.zeros((height, width), bool)
    ignore = np.zeros((height, width), bool)
    for annotation in image.annotations:
        is_ignored = annotation.get("ignore") == 1 or annotation["category_id"] in file.ignore_ids
        if not is_ignored and annotation["category_id"] not in file.foreground_ids:
            continue
        entry = f"annotation {annotation.get('id', '?')} of image {image.entry_id}"
        segmentation = annotation.get("segmentation")
        if segmentation in (None, [], {}):
            raise _fail(file.path, f"{entry} is a bounding box only, without a segmentation",
                        "draw it as a polygon or mask in the annotation tool, or remove it")
        target = ignore if is_ignored else foreground
        target |= _decode(file.path, entry, segmentation, height, width)
    foreground &= ~ignore
    return (foreground * np.uint8(255)), (ignore * np.uint8(255))
