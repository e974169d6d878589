"""Hand edits made in the query export are never lost.

``data/query/export/`` is a DVC output: ``dvc repro`` deletes it (or restores it from the run
cache) whenever the query stage runs again, so a Labelme file corrected there in place would be
gone. The ``collect_annotations`` stage runs first in every ``dvc repro`` (``always_changed``):
it compares each ``export/<id>.json`` with the shapes the query stage wrote (their digests are
recorded in ``data/query/exported_shapes.json``; ``export/label_studio/``, the same images as
Label Studio tasks, is not looked at) and moves every file whose shapes differ (a person's
edit), with a copy of its image, into ``<ingest.raw_dir>/annotations/``, where ingest reads it
in that same ``dvc repro``. Shapes are compared, not bytes: Labelme re-saves an unchanged
file with other formatting (and often with the image embedded), which is no edit.

Nothing is deleted or overwritten: a file of that name already in the annotations folder with
other shapes stops the stage with one line naming both. Every move is appended to a receipt
(``data/rescued_annotations.json``, a persistent output that ingest depends on, so the DAG runs
this stage before ingest). It runs every time, so it stays cheap: no TensorFlow, no images decoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from activeseg.errors import ActivesegError
from activeseg.outputs import write_json
from activeseg.params import IngestParams

EXPORT_FOLDER = "export"
# Beside export/, not in it: the README's `cp data/query/export/*.json data/query/export/*.png
# data/raw/annotations/` must not carry a file that ingest would read as a (broken) Labelme file.
EXPORT_RECORD = "exported_shapes.json"
ANNOTATIONS_FOLDER = "annotations"


def make_default_raw_dir(raw_dir: str | Path) -> None:
    """Create the default ``data/raw`` where it is missing: it is a declared dependency of ingest,
    and DVC refuses to run a stage whose dependency is missing, while ingest reads a missing or
    empty default folder as "use the synthetic data set". A folder you named is left alone
    (ingest reports it missing)."""
    if os.path.normpath(raw_dir) == os.path.normpath(IngestParams.raw_dir) and not Path(raw_dir).exists():
        Path(raw_dir).mkdir(parents=True)


def _canonical_shape(shape: dict) -> dict:
    """What ingest rasterises from a shape, in one spelling (Labelme's re-save may reorder keys,
    drop or add ``description``, write ints as floats)."""
    return {"label": shape.get("label"), "shape_type": shape.get("shape_type") or "polygon",
            "points": [[round(float(x), 4), round(float(y), 4)] for x, y in shape.get("points") or []],
            "group_id": shape.get("group_id"), "mask": shape.get("mask")}


def shapes_digest(document: Any) -> Optional[str]:
    """sha256 of a Labelme document's shapes, insensitive to formatting; None when it has none
    that can be read (a broken file counts as edited: it is a person's, so it is kept)."""
    try:
        shapes = [_canonical_shape(shape) for shape in document["shapes"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()


def file_shapes_digest(path: Path) -> Optional[str]:
    try:
        return shapes_digest(json.loads(path.read_bytes()))
    except (OSError, ValueError, RecursionError):
        return None


def _same_bytes(first: Path, second: Path) -> bool:
    return first.read_bytes() == second.read_bytes()


def _read_receipt(receipt: Path) -> list:
    try:
        entries = json.loads(receipt.read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _recorded_digests(query_dir: Path, export: Path, raw_dir: Path) -> dict:
    record = query_dir / EXPORT_RECORD
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        raise ActivesegError(
            f"{record}: missing or unreadable, so edits in {export} cannot be told from what was exported; "
            f"move the JSON files you edited (and their images) to {raw_dir / ANNOTATIONS_FOLDER}, delete "
            f"{export} (the query stage writes it again), then run dvc repro again")
    return recorded


def _planned_moves(export: Path, recorded: dict, target_dir: Path) -> list[tuple[Path, Path, Optional[Path]]]:
    """(edited JSON, where it goes, its image or None) for each edit; checks every conflict first,
    so that a conflict moves nothing."""
    moves = []
    for path in sorted(export.glob("*.json")):
        digest = file_shapes_digest(path)
        if digest is not None and digest == recorded.get(path.stem):
            continue
        target = target_dir / path.name
        if target.exists():
            if digest is not None and file_shapes_digest(target) == digest:
                continue  # the edit is already there (copied after editing): nothing can be lost
            raise ActivesegError(
                f"{path}: edited in place, but {target} already exists with other shapes; keep one: merge "
                f"the edits into {target} and move {path} out of {export}, then run dvc repro again")
        image = export / f"{path.stem}.png"
        image_target = target_dir / image.name
        if image.is_file() and image_target.exists() and not _same_bytes(image, image_target):
            raise ActivesegError(
                f"{image}: the image of your edited {path.name}, but {image_target} already exists and differs; "
                "move one of them elsewhere, then run dvc repro again")
        moves.append((path, target, image if image.is_file() else None))
    return moves


def rescue_edited_exports(query_dir: str | Path, raw_dir: str | Path, receipt: str | Path) -> list[dict]:
    """Move the edited ``export/*.json`` of ``query_dir`` (and copies of their images) into
    ``raw_dir/annotations``; append the moves to ``receipt`` (always written) and return them."""
    query_dir, raw_dir, receipt = Path(query_dir), Path(raw_dir), Path(receipt)
    export, target_dir = query_dir / EXPORT_FOLDER, raw_dir / ANNOTATIONS_FOLDER
    moves = []
    if export.is_dir() and any(export.glob("*.json")):
        moves = _planned_moves(export, _recorded_digests(query_dir, export, raw_dir), target_dir)
    rescued = []
    for path, target, image in moves:
        target_dir.mkdir(parents=True, exist_ok=True)
        if image is not None and not (target_dir / image.name).exists():
            shutil.copy2(image, target_dir / image.name)
        shutil.move(path, target)  # the image first: a failure in between leaves the JSON where it was
        rescued.append({"id": path.stem, "from": path.as_posix(), "to": target.as_posix()})
    write_json(receipt, _read_receipt(receipt) + rescued)
    return rescued
