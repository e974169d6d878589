"""A data set's own split (``split.predefined``): which images the data set itself puts in
train, val or test.

Public data sets and many labs ship a fixed split, and results are only comparable on it.
``split.predefined`` is ``none``, ``folders`` (``raw_dir/train/``, ``raw_dir/val/`` and
``raw_dir/test/``, each in any supported layout; an image's split is the top folder its file lies
in, a TIFF stack's the top folder of its ``images`` path) or a CSV with columns ``id,split``
whose path is relative to ``raw_dir`` and must stay inside it (inside, DVC tracks it with the
rest of the raw data, so editing it re-runs ingest and split).

Ingest records the result in the manifest's ``predefined_split`` column ('' outside the
predefined split); :func:`activeseg.split.assign_splits` keeps those images in their split.
Every problem (a CSV id that is not in the data, a bad split name, a predefined split left
without a labeled train, val or test image) is one :class:`ActivesegError` line naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from activeseg.errors import ActivesegError

PREDEFINED_SPLITS = ("train", "val", "test")
FOLDERS = "folders"


def folder_split(source: str) -> str:
    """The predefined split of a file at ``source`` (relative to raw_dir) in folders mode."""
    top = source.split("/", 1)[0]
    return top if top in PREDEFINED_SPLITS and "/" in source else ""


def csv_path(raw_dir: Path, predefined: str) -> Path:
    """The CSV named by ``split.predefined``, checked to exist inside ``raw_dir``."""
    path = raw_dir / predefined
    try:
        path.resolve().relative_to(raw_dir.resolve())
    except ValueError:
        raise ActivesegError(f"{path}: split.predefined leads outside ingest.raw_dir ({raw_dir}); put the CSV "
                             "inside raw_dir and give its path relative to it") from None
    if not path.is_file():
        raise ActivesegError(f"{path}: split.predefined names this CSV but it does not exist; put an id,split "
                             f"CSV there (the path is relative to {raw_dir}) or set split.predefined: none")
    return path


def read_csv(path: Path, known_ids: set[str]) -> dict[str, str]:
    """``id → split`` from an ``id,split`` CSV; every id must be in ``known_ids``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ActivesegError(f"{path}: cannot be read as a CSV ({error}); save it as UTF-8 text with "
                             "the columns id,split") from None
    header = [name.strip().lower() for name in rows[0]] if rows else []
    if "id" not in header or "split" not in header:
        raise ActivesegError(f"{path}: the first line must name the columns id and split (found "
                             f"{','.join(header) or 'nothing'}); add the header line id,split")
    id_column, split_column = header.index("id"), header.index("split")
    found: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_column, split_column):
            raise ActivesegError(f"{path}: line {line} has {len(row)} columns, fewer than the header; "
                                 "give every line an id and a split")
        image_id, split = row[id_column].strip(), row[split_column].strip().lower()
        if split not in PREDEFINED_SPLITS:
            raise ActivesegError(f"{path}: line {line}: split {row[split_column].strip()!r} of '{image_id}' is not "
                                 f"{', '.join(PREDEFINED_SPLITS[:-1])} or {PREDEFINED_SPLITS[-1]}; fix it")
        if image_id in lines:
            raise ActivesegError(f"{path}: line {line}: id '{image_id}' is listed twice (also line "
                                 f"{lines[image_id]}); keep one line per image")
        if image_id not in known_ids:
            raise ActivesegError(f"{path}: line {line}: id '{image_id}' is not in the data (an id is the file name "
                                 "without extension, e.g. a for images/a.png); fix the id or remove the line")
        found[image_id], lines[image_id] = split, line
    return found


def check_not_empty(labeled_by_split: dict[str, int], where: Path, predefined: Optional[str]) -> None:
    """Train, val and test each need a labeled image of the predefined split."""
    for name in PREDEFINED_SPLITS:
        if labeled_by_split.get(name, 0) == 0:
            if predefined == FOLDERS:
                raise ActivesegError(f"{where / name}: the predefined split (split.predefined: folders) has no "
                                     f"{name} image with a mask or Labelme file; put labeled images in "
                                     f"{where / name}/ or set split.predefined: none")
            raise ActivesegError(f"{where}: the predefined split lists no {name} image that has a mask or "
                                 f"Labelme file; add {name} lines for labeled images or set split.predefined: none")
