"""Ingest: every supported raw format in, one canonical, validated form out.

Readers (``ingest.formats``), all below ``ingest.raw_dir``:

- ``folders``: ``images/<stem>.*`` with optional ``masks/<stem>.*`` (PNG, JPG, TIFF, BMP; 8- or
  16-bit; gray or RGB). Images without a mask are unlabeled (the active-learning pool). With
  ``split.predefined: folders`` also ``train/``, ``val/`` and ``test/`` below raw_dir, each read
  like raw_dir itself (see :mod:`activeseg.predefined`).
- ``tiff_stacks``: multi-page TIFF pairs listed in ``ingest.tiff_stacks``, page i of the images
  ↔ page i of the labels; ids ``<images stem>_<page:04d>``.
- ``coco``: every ``*.json`` below raw_dir but in ``masks/`` that is COCO instance JSON (see
  :mod:`activeseg.coco`): each image entry is an example with id its file's stem, the image found
  beside the JSON or in ``images/`` (where it replaces that unlabeled image), labeled by its
  annotations of the ``ingest.coco_categories``.
- ``label_studio``: Label Studio JSON and JSON-MIN exports (lists of tasks) in ``annotations/``
  (see :mod:`activeseg.label_studio`), each annotated task read as a Labelme file of the image it
  names: that image must be in ``images/`` (or the built-in set), and a tile's task labels that tile.
- ``labelme``: every other ``*.json`` below raw_dir but in ``masks/`` (see :mod:`activeseg.labelme`). Its
  id is the JSON's stem; when ``images/<id>.*`` exists the JSON labels that image (how annotated
  query exports come back), otherwise its own image (``imageData`` or ``imagePath``) is ingested.
  A queried tile's file (``activeseg_tile``, see :mod:`activeseg.tile_labels`) labels that tile
  of its source image, found by id among the images every reader found (or the built-in set);
  the rest of that image is ignored, and several tiles of one image give it one label.

Masks that are not strictly 0/255 are binarised by ``ingest.mask_rule`` (on the stored values, so
16-bit label images work; a colour mask is foreground where the rule holds on any channel, so a
red outline on black or a palette saved as RGB works); ingest reports how many. Canonical form
(a DVC output directory)::

    images/<id>.png   gray or RGB, original size and bit depth (16-bit sources stay 16-bit: the
                      intensity scaling is preprocess.intensity's, in the one transform)
    masks/<id>.png    uint8 0/255, same size as its image (absent for unlabeled images)
    ignore/<id>.png   uint8 0/255 Labelme ``__ignore__`` regions (only where an image has some)
    manifest.csv      one row per image: id, source (relative to raw_dir), height, width, channels,
                      labeled, foreground_fraction, ignore_fraction, queried, checksum,
                      predefined_split ('' or the data set's own train / val / test)

``queried`` is true for Labelme files flagged ``activeseg_queried`` (exported by the query stage),
which the split always puts in train. A missing or empty default raw_dir (``data/raw``) gives the
built-in synthetic set; so does one that holds only annotated query exports of synthetic images
(Labelme files flagged ``activeseg_queried`` named ``synthetic_<index>``, the README's round trip
on the demo data), each file then labeling its synthetic image.
Hidden files and folders (``.ipynb_checkpoints``, ``.git``: copies and tool state) are never read.
Warnings (all-background masks, files no reader used and hidden ones anywhere below raw_dir, …) are
summarised at the end, not buried.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pandas as pd

from activeseg import coco, imageio, label_studio, labelme, predefined, synthetic, tile_labels
from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path, write_csv
from activeseg.params import IngestParams
from activeseg.progress import progress

MANIFEST_COLUMNS = ["id", "source", "height", "width", "channels", "labeled",
                    "foreground_fraction", "ignore_fraction", "queried", "checksum", "predefined_split"]
DEFAULT_RAW_DIR = IngestParams.raw_dir
IGNORED_NAMES = {".gitkeep", ".gitignore", ".DS_Store", "Thumbs.db", "README.md", "README.txt"}
# Hidden folders are tool state or copies (.git, .ipynb_checkpoints holds stale copies of edited
# files), so no reader reads them; they are named in a warning rather than skipped in silence.
HIDDEN_WARNING = "hidden folders and files skipped (names starting with '.'; rename one to use it)"
UNUSED_WARNING = ("files no reader used (images go in images/, masks in masks/, Labelme JSON anywhere "
                  "but masks/; see README 'Your own data')")


@dataclasses.dataclass
class Example:
    """One image and, when labeled, its mask; loaders defer reading until ingest writes it.

    ``load_mask`` returns the stored mask values (binarised later by the mask rule);
    ``load_ignore`` a 0/255 mask of regions to leave out of loss and metrics.
    """

    image_id: str
    source: str
    load_image: Callable[[], np.ndarray]
    load_mask: Optional[Callable[[], np.ndarray]] = None
    load_ignore: Optional[Callable[[], np.ndarray]] = None
    queried: bool = False
    mask_source: Optional[str] = None  # the mask's own file, where it has one (named in errors)
    predefined_split: str = ""  # the data set's own split (split.predefined), '' outside it
    tile_files: tuple = ()  # Labelme files of annotated tiles of this image (activeseg.tile_labels)
    label_file: Optional[labelme.LabelmeFile] = None  # a Label Studio task's, which has no file of its own


class Warnings:
    """Problems that do not stop ingest, grouped by kind for one summary at the end."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, kind: str, item: str) -> None:
        self.by_kind[kind].append(item)

    def summary(self) -> list[str]:
        lines = []
        for kind, items in self.by_kind.items():
            shown = ", ".join(items[:10]) + (f" … ({len(items) - 10} more)" if len(items) > 10 else "")
            lines.append(f"ingest: warning: {len(items)} {kind}: {shown}")
        return lines


def parse_mask_rule(rule: str) -> Callable[[np.ndarray], np.ndarray]:
    """``nonzero`` (> 0), ``threshold:N`` (>= N) or ``value:N`` (== N) as a boolean function."""
    match = re.fullmatch(r"(nonzero)|threshold:(\d+)|value:(\d+)", rule)
    if not match:
        raise ActivesegError(f"params.yaml: `ingest.mask_rule` is {rule!r}; use nonzero, threshold:N or value:N")
    if match.group(2) is not None:
        return lambda mask, level=int(match.group(2)): mask >= level
    if match.group(3) is not None:
        return lambda mask, value=int(match.group(3)): mask == value
    return lambda mask: mask > 0


def binarize_mask(mask: np.ndarray, path: str, rule: str = "nonzero") -> tuple[np.ndarray, bool]:
    """A stored mask (8/16-bit, gray or RGB) to 0/255 by ``rule``; returns the mask and whether it
    was not already strictly 0/255. A colour mask is foreground where the rule holds on any channel."""
    if mask.dtype == bool:
        mask = mask.astype(np.uint8) * 255
    if mask.dtype not in (np.uint8, np.uint16):
        raise ActivesegError(f"{path}: mask has pixel type {mask.dtype}; save masks as 8- or 16-bit integer images "
                             "(0 = background)")
    if mask.ndim == 3 and mask.shape[2] in (2, 4):
        mask = mask[..., :-1]  # alpha
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., channel]) for channel in range(1, mask.shape[2])):
            return np.where(parse_mask_rule(rule)(mask).any(axis=2), 255, 0).astype(np.uint8), True
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ActivesegError(f"{path}: mask has shape {mask.shape}; save masks as single-channel 2-D images")
    was_binary = mask.dtype == np.uint8 and bool(np.isin(mask, (0, 255)).all())
    if was_binary:
        return mask, False
    return np.where(parse_mask_rule(rule)(mask), 255, 0).astype(np.uint8), True


def _relative(path: Path, raw_dir: Path) -> str:
    try:
        return path.relative_to(raw_dir).as_posix()
    except ValueError:
        return path.as_posix()


def folder_pairs(folder: Path, raw_dir: Optional[Path] = None) -> list[Example]:
    """``images/<stem>.*`` with optional ``masks/<stem>.*`` below ``folder`` (raw_dir or one of its
    predefined split folders; sources stay relative to raw_dir); images without a mask are unlabeled."""
    raw_dir = raw_dir or folder
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir():
        if masks_dir.is_dir():
            raise ActivesegError(f"{masks_dir}: masks without an images/ folder beside them; "
                                 f"put the images in {images_dir}")
        return []

    def by_stem(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if not folder.is_dir():
            return found
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in imageio.IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            if path.stem in found:
                raise ActivesegError(f"{path}: two files share the id '{path.stem}' (also {found[path.stem].name}); "
                                     "rename or remove one")
            _refuse_stack(path)
            found[path.stem] = path
        return found

    images, masks = by_stem(images_dir), by_stem(masks_dir)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ActivesegError(f"{masks[orphans[0]]}: mask has no image of the same name in {images_dir}; "
                             "add the image or remove the mask")
    examples = []
    for stem, image_path in images.items():
        mask_path = masks.get(stem)
        examples.append(Example(
            image_id=stem, source=_relative(image_path, raw_dir),
            load_image=lambda p=image_path: imageio.read_native(p),
            load_mask=(lambda p=mask_path: imageio.read_array(p)) if mask_path else None,
            mask_source=_relative(mask_path, raw_dir) if mask_path else None))
    return examples


def _refuse_stack(path: Path) -> None:
    """A multi-page TIFF among single images would silently lose all but its first page."""
    if path.suffix.lower() in (".tif", ".tiff") and _tiff_page_count(path, quiet=True) > 1:
        raise ActivesegError(f"{path}: is a multi-page TIFF stack; list it under ingest.tiff_stacks in params.yaml "
                             "and move it out of images/ and masks/")


# TIFF pages are read with OpenCV (libtiff: LZW, Deflate, … without extra codec packages), the same
# decoder as single images, so a stack and its pages saved as PNG give identical arrays.
def _tiff_page_count(path: Path, quiet: bool = False) -> int:
    try:
        count = int(cv2.imcount(str(path), cv2.IMREAD_UNCHANGED))
    except cv2.error:
        count = 0
    if count == 0 and not quiet:
        raise ActivesegError(f"{path}: cannot be read as a TIFF stack (corrupt or not a TIFF); re-export it")
    return count


def _tiff_page(path: Path, index: int) -> np.ndarray:
    """One page as stored (any bit depth, OpenCV channel order)."""
    try:
        ok, pages = cv2.imreadmulti(str(path), start=index, count=1, flags=cv2.IMREAD_UNCHANGED)
    except cv2.error:
        ok, pages = False, []
    if not ok or not pages or pages[0] is None or pages[0].size == 0:
        raise ActivesegError(f"{path}: page {index} cannot be read (corrupt TIFF); re-export the stack")
    return pages[0]


def _stack_image(path: Path, index: int) -> np.ndarray:
    return imageio.to_rgb_or_gray(imageio.to_native(_tiff_page(path, index), path), path)


def tiff_stacks(raw_dir: Path, stacks: list[dict]) -> list[Example]:
    """Multi-page TIFF pairs: page i of ``images`` ↔ page i of ``labels`` (labels optional)."""
    examples = []
    for stack in stacks:
        images_path = raw_dir / stack["images"]
        labels_path = raw_dir / stack["labels"] if stack.get("labels") else None
        for path in filter(None, (images_path, labels_path)):
            if not path.is_file():
                raise ActivesegError(f"{path}: TIFF stack not found; fix ingest.tiff_stacks in params.yaml "
                                     f"(paths are relative to {raw_dir})")
        pages = _tiff_page_count(images_path)
        if pages == 0:
            raise ActivesegError(f"{images_path}: TIFF stack has no pages; re-export it")
        if labels_path is not None and _tiff_page_count(labels_path) != pages:
            raise ActivesegError(f"{labels_path}: has {_tiff_page_count(labels_path)} pages but {images_path.name} has "
                                 f"{pages}; give both stacks one page per section, in the same order")
        for index in range(pages):
            examples.append(Example(
                image_id=f"{images_path.stem}_{index:04d}", source=f"{_relative(images_path, raw_dir)}#{index}",
                load_image=lambda p=images_path, i=index: _stack_image(p, i),
                load_mask=(lambda p=labels_path, i=index: _tiff_page(p, i)) if labels_path else None,
                mask_source=f"{_relative(labels_path, raw_dir)}#{index}" if labels_path else None))
    return examples


class _LabelmeExample:
    """Reads the image once, then rasterises the shapes at its size."""

    def __init__(self, label_file: labelme.LabelmeFile, params: IngestParams, warnings: Warnings,
                 image_path: Optional[Path] = None, load_image: Optional[Callable[[], np.ndarray]] = None) -> None:
        self.label_file, self.params, self.warnings, self.image_path = label_file, params, warnings, image_path
        self.load_image = load_image
        self._image: Optional[np.ndarray] = None
        self._masks: Optional[tuple[np.ndarray, np.ndarray]] = None

    def image(self) -> np.ndarray:
        if self._image is None:
            if self.load_image is not None:
                self._image = self.load_image()
            elif self.image_path is not None:
                self._image = imageio.read_native(self.image_path)
            else:
                self._image = labelme.read_image(self.label_file)
        return self._image

    def _rasterize(self) -> tuple[np.ndarray, np.ndarray]:
        if self._masks is None:
            height, width = self.image().shape[:2]
            file = self.label_file
            if (file.image_height, file.image_width) not in ((None, None), (height, width)):
                self.warnings.add("Labelme files whose imageHeight/imageWidth differ from their image "
                                  "(the image's size was used, as Labelme does)", file.path.name)
            settings = self.params.labelme
            self._masks = labelme.rasterize(file, height, width, settings.foreground_labels or None,
                                            settings.line_width, settings.point_size)
        return self._masks

    def mask(self) -> np.ndarray:
        return self._rasterize()[0]

    def ignore(self) -> np.ndarray:
        return self._rasterize()[1]


class _TileLabelsExample(_LabelmeExample):
    """An image labeled by the Labelme files of some of its tiles (:func:`tile_labels.source_labels`)."""

    def __init__(self, files: tuple, params: IngestParams, warnings: Warnings,
                 load_image: Callable[[], np.ndarray], earlier: Optional[Example] = None) -> None:
        super().__init__(files[0], params, warnings, load_image=load_image)
        self.files, self.earlier = files, earlier

    def _rasterize(self) -> tuple[np.ndarray, np.ndarray]:
        if self._masks is None:
            height, width = self.image().shape[:2]
            settings = self.params.labelme
            earlier = None if self.earlier is None else (self.earlier.load_mask(), self.earlier.load_ignore())
            self._masks = tile_labels.source_labels(self.files, height, width, settings.foreground_labels or None,
                                                    settings.line_width, settings.point_size, earlier)
        return self._masks


def with_tile_labels(base: Example, files: tuple, params: IngestParams, warnings: Warnings,
                     earlier: Optional[Example] = None) -> Example:
    """``base`` (its image) labeled by the annotated tiles ``files`` over the ``earlier`` Labelme
    label of a whole query, if any; queried, so it joins train."""
    reader = _TileLabelsExample(files, params, warnings, base.load_image, earlier)
    return Example(base.image_id, base.source, reader.image, reader.mask, reader.ignore, queried=True,
                   mask_source=_relative(files[0].path, Path(params.raw_dir)),
                   predefined_split=base.predefined_split, tile_files=files)


def _missing_source(path: Path, image_id: str, raw_dir: Path) -> Callable[[], np.ndarray]:
    def fail() -> np.ndarray:
        raise ActivesegError(f"{path}: annotates a tile of image '{image_id}', which is not in {raw_dir}; put that "
                             "image back (as it was when the tile was exported) or remove the file")
    return fail


def _apply_tile_labels(examples: list[Example], tiles: dict[str, list], params: IngestParams,
                       warnings: Warnings, raw_dir: Path) -> list[Example]:
    """Each image with annotated tiles labeled by them; a tile whose image no reader found becomes an
    unlabeled stand-in (the built-in set may hold its image, else ingest stops on it)."""
    by_id = {example.image_id: index for index, example in enumerate(examples)}
    examples = list(examples)
    for image_id, files in tiles.items():
        files = tuple(files)
        if image_id not in by_id:
            examples.append(Example(image_id, _relative(files[0].path, raw_dir),
                                    _missing_source(files[0].path, image_id, raw_dir), queried=True, tile_files=files))
            continue
        base = examples[by_id[image_id]]
        # a whole query's label may have left tiles unlabeled (__ignore__), which went back to the pool
        earlier = base if base.queried and base.load_mask is not None and not base.tile_files else None
        if base.load_mask is not None and earlier is None:
            raise ActivesegError(f"{files[0].path}: annotates a tile of image '{image_id}', which already has a label "
                                 f"({base.mask_source or base.source}); keep one of them")
        examples[by_id[image_id]] = with_tile_labels(base, files, params, warnings, earlier)
    return examples


def labelme_files(raw_dir: Path, params: IngestParams, folder_examples: dict[str, Example],
                  warnings: Warnings, used_images: set[Path], masks_dirs: Optional[set[Path]] = None,
                  tiles: Optional[dict[str, list]] = None, claimed: Optional[set[Path]] = None) -> list[Example]:
    """Every ``*.json`` below raw_dir but those other readers ``claimed`` (and but in ``masks_dirs`` or
    hidden folders: those are reported as unused) as an example; a JSON whose id names an ``images/`` image labels that image (the example
    replaces the unlabeled one in ``folder_examples``). Annotated tiles' files are no examples:
    they go to ``tiles``, by source image id."""
    found: dict[str, Path] = {}
    for path in annotation_jsons(raw_dir, masks_dirs):
        if path in (claimed or ()):
            continue
        if path.stem in found:
            raise ActivesegError(f"{path}: two Labelme files share the id '{path.stem}' (also {found[path.stem]}); "
                                 "rename or remove one")
        found[path.stem] = path
    folder_sources = {(raw_dir / example.source).resolve(): image_id for image_id, example in folder_examples.items()}
    examples = []
    for image_id, path in found.items():
        label_file = labelme.load(path, root=raw_dir)
        where = tile_labels.placement(label_file)
        if where is not None:
            if tiles is not None:
                tiles.setdefault(where.image_id, []).append(label_file)
            used_images.update(file.resolve() for file in (path, label_file.image_path) if file is not None)
            continue
        own = folder_examples.get(image_id)
        if own is not None and own.load_mask is not None:
            raise ActivesegError(f"{path}: image '{image_id}' has both a mask in masks/ and this Labelme file; "
                                 "remove one of them")
        if label_file.image_path is not None and own is None:
            other = folder_sources.get(label_file.image_path.resolve())
            if other is not None:
                raise ActivesegError(f"{path}: its image is images/{Path(folder_examples[other].source).name}, "
                                     f"ingested as '{other}'; rename the JSON to {other}.json")
        if label_file.image_path is not None:
            used_images.add(label_file.image_path.resolve())
        source = _relative(path, raw_dir)
        reader = _LabelmeExample(label_file, params, warnings,
                                 image_path=raw_dir / own.source if own is not None else None)
        examples.append(Example(image_id, source, reader.image, reader.mask, reader.ignore,
                                queried=label_file.queried))
    return examples


def annotation_jsons(raw_dir: Path, masks_dirs: Optional[set[Path]] = None) -> list[Path]:
    """Every ``*.json`` below raw_dir but in ``masks_dirs`` or hidden folders (those are reported as unused)."""
    masks_dirs = masks_dirs if masks_dirs is not None else {raw_dir / "masks"}
    return [path for path in sorted(raw_dir.rglob("*.json"))
            if not any(part.startswith(".") for part in path.relative_to(raw_dir).parts)
            and masks_dirs.isdisjoint(path.parents)]


class _CocoExample:
    """Reads the image once, then rasterises its COCO annotations at its size."""

    def __init__(self, file: coco.CocoFile, image: coco.CocoImage) -> None:
        self.file, self.entry = file, image
        self._image: Optional[np.ndarray] = None
        self._masks: Optional[tuple[np.ndarray, np.ndarray]] = None

    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = imageio.read_native(self.entry.path)
        return self._image

    def _rasterize(self) -> tuple[np.ndarray, np.ndarray]:
        if self._masks is None:
            height, width = self.image().shape[:2]
            self._masks = coco.rasterize(self.file, self.entry, height, width)
        return self._masks

    def mask(self) -> np.ndarray:
        return self._rasterize()[0]

    def ignore(self) -> np.ndarray:
        return self._rasterize()[1]


def coco_files(raw_dir: Path, params: IngestParams, folder_examples: dict[str, Example],
               masks_dirs: set[Path], claimed: set[Path]) -> list[Example]:
    """Every image entry of the COCO files below raw_dir as a labeled example (their paths go to
    ``claimed``, for no other reader to read); one whose image is an ``images/`` image replaces it."""
    folder_sources = {(raw_dir / example.source).resolve(): example for example in folder_examples.values()}
    examples = []
    for path in annotation_jsons(raw_dir, masks_dirs):
        document = coco.read_json(path)
        if not coco.is_coco(document):
            continue
        claimed.add(path)
        file = coco.load(path, raw_dir, params.coco_categories, document)
        for entry in file.images:
            own = folder_sources.get(entry.path.resolve())
            if own is not None and own.load_mask is not None:
                raise ActivesegError(f"{path}: image {entry.entry_id} ({own.source}) also has a mask "
                                     f"({own.mask_source}); remove one of them")
            reader = _CocoExample(file, entry)
            examples.append(Example(own.image_id if own is not None else entry.image_id, _relative(entry.path, raw_dir),
                                    reader.image, reader.mask, reader.ignore, mask_source=_relative(path, raw_dir)))
    return examples


def _missing_image(path: Path, image_id: str, raw_dir: Path) -> Callable[[], np.ndarray]:
    def fail() -> np.ndarray:
        raise ActivesegError(f"{path}: labels image '{image_id}', which is not in {raw_dir / 'images'}; put that image "
                             "there (as it was exported) or remove the task from the export")
    return fail


def label_studio_files(raw_dir: Path, params: IngestParams, folder_examples: dict[str, Example],
                       warnings: Warnings, masks_dirs: set[Path], claimed: set[Path],
                       tiles: dict[str, list]) -> list[Example]:
    """Every annotated task of the Label Studio exports in ``raw_dir/annotations`` as the label of
    the image it names (their paths go to ``claimed``); tiles' tasks go to ``tiles``."""
    examples = []
    for path in annotation_jsons(raw_dir, masks_dirs):
        if path in claimed or not label_studio.export_path(raw_dir, path):
            continue
        document = coco.read_json(path)
        if not label_studio.is_export(document):
            continue
        claimed.add(path)
        for label_file in label_studio.load(path, document):
            where = tile_labels.placement(label_file)
            if where is not None:
                tiles.setdefault(where.image_id, []).append(label_file)
                continue
            image_id = label_file.other[label_studio.ID_KEY]
            own, source = folder_examples.get(image_id), _relative(label_file.path, raw_dir)
            if own is not None and own.load_mask is not None:
                raise ActivesegError(f"{label_file.path}: image '{image_id}' also has a label "
                                     f"({own.mask_source or own.source}); keep one of them")
            if own is None:  # the built-in set may hold it, else ingest stops on it
                examples.append(Example(image_id, source, _missing_image(label_file.path, image_id, raw_dir),
                                        queried=label_file.queried, label_file=label_file))
                continue
            reader = _LabelmeExample(label_file, params, warnings, image_path=raw_dir / own.source)
            examples.append(Example(image_id, source, reader.image, reader.mask, reader.ignore,
                                    queried=label_file.queried, label_file=label_file))
    return examples


def _consumed_paths(examples: list[Example], raw_dir: Path) -> set[Path]:
    sources = [source for example in examples for source in (example.source, example.mask_source) if source]
    return {(raw_dir / source.split("#")[0]).resolve() for source in sources}


def discover(raw_dir: Path, params: Optional[IngestParams] = None, warnings: Optional[Warnings] = None,
             predefined_split: Optional[str] = None) -> list[Example]:
    """All examples the enabled readers find under ``raw_dir``; ids must be unique across formats
    and folders. ``predefined_split`` is ``split.predefined``: each example's is recorded."""
    params = params or IngestParams()
    warnings = warnings if warnings is not None else Warnings()
    roots = [raw_dir]
    if predefined_split == predefined.FOLDERS:
        roots += [raw_dir / name for name in predefined.PREDEFINED_SPLITS]
    examples: list[Example] = []
    seen: dict[str, str] = {}

    def add(example: Example) -> None:
        if example.image_id in seen:
            raise ActivesegError(f"{raw_dir / example.source}: id '{example.image_id}' is also used by "
                                 f"{seen[example.image_id]}; rename one of them")
        seen[example.image_id] = example.source
        examples.append(example)

    for root in roots if "folders" in params.formats else []:
        for example in folder_pairs(root, raw_dir):
            add(example)
    folder_examples = {example.image_id: example for example in examples}
    used = _consumed_paths(examples, raw_dir)
    if "tiff_stacks" in params.formats:
        for example in tiff_stacks(raw_dir, params.tiff_stacks):
            add(example)
    tiles: dict[str, list] = {}
    masks_dirs, claimed = {root / "masks" for root in roots}, set()
    json_examples = (coco_files(raw_dir, params, folder_examples, masks_dirs, claimed)
                     if "coco" in params.formats else [])
    json_examples += (label_studio_files(raw_dir, params, folder_examples, warnings, masks_dirs, claimed, tiles)
                      if "label_studio" in params.formats else [])
    json_examples += (labelme_files(raw_dir, params, folder_examples, warnings, used, masks_dirs=masks_dirs,
                                    tiles=tiles, claimed=claimed)
                      if "labelme" in params.formats else [])
    labelled = {example.image_id for example in json_examples}  # a JSON replaces the image it labels
    examples = [example for example in examples
                if example.image_id not in labelled or folder_examples.get(example.image_id) is not example]
    seen = {example.image_id: example.source for example in examples}
    for example in json_examples:
        add(example)
    examples = _apply_tile_labels(examples, tiles, params, warnings, raw_dir)
    used |= _consumed_paths(examples, raw_dir)
    if predefined_split and examples:
        used.add(_record_predefined_split(examples, folder_examples, raw_dir, predefined_split))
    _report_unread_files(raw_dir, used, warnings)
    return examples


def _record_predefined_split(examples: list[Example], folder_examples: dict[str, Example], raw_dir: Path,
                             predefined_split: str) -> Path:
    """Set each example's predefined split; returns the file or folder that defines it."""
    if predefined_split == predefined.FOLDERS:
        for example in examples:
            # a Labelme file that labels an images/ image takes that image's folder
            where = folder_examples[example.image_id] if example.image_id in folder_examples else example
            example.predefined_split = predefined.folder_split(where.source)
        source = raw_dir
    else:
        source = predefined.csv_path(raw_dir, predefined_split)
        splits = predefined.read_csv(source, {example.image_id for example in examples})
        for example in examples:
            example.predefined_split = splits.get(example.image_id, "")
    predefined.check_not_empty(collections.Counter(example.predefined_split for example in examples
                                                   if example.load_mask is not None), source, predefined_split)
    return source.resolve()


def _report_unread_files(raw_dir: Path, used: set[Path], warnings: Warnings) -> None:
    """Every file below raw_dir that no reader used, and every hidden one, goes in the warnings."""
    for folder, folder_names, file_names in os.walk(raw_dir):
        here = Path(folder)
        for name in sorted(folder_names):
            if name.startswith("."):
                warnings.add(HIDDEN_WARNING, f"{_relative(here / name, raw_dir)}/")
        folder_names[:] = sorted(name for name in folder_names if not name.startswith("."))
        for name in sorted(file_names):
            path = here / name
            if name in IGNORED_NAMES:
                continue
            if name.startswith("."):
                warnings.add(HIDDEN_WARNING, _relative(path, raw_dir))
            elif path.resolve() not in used:
                warnings.add(UNUSED_WARNING, _relative(path, raw_dir))


def _has_content(raw_dir: Path) -> bool:
    return any(not path.name.startswith(".") and path.name not in IGNORED_NAMES for path in raw_dir.iterdir())


def synthetic_examples(params: IngestParams, seed: int) -> list[Example]:
    config = params.synthetic
    return [Example(image_id, "synthetic", lambda image=image: image, lambda mask=mask: mask)
            for image_id, image, mask in synthetic.generate(config.count, config.size, config.min_objects,
                                                            config.max_objects, seed)]


def annotates_synthetic(examples: list[Example], params: IngestParams) -> bool:
    """Whether the default raw_dir holds nothing but annotated query exports of the built-in
    images (the README's round trip on the demo data): then the synthetic set stays the base."""
    synthetic_ids = set(synthetic.image_ids(params.synthetic.count))
    return (Path(os.path.normpath(params.raw_dir)) == Path(DEFAULT_RAW_DIR)
            and all(example.queried and example.image_id in synthetic_ids for example in examples))


def synthetic_with_annotations(annotations: list[Example], params: IngestParams, seed: int,
                               warnings: Warnings) -> list[Example]:
    """The synthetic set, each annotated query's Labelme file labeling its synthetic image (the
    mask drawn in Labelme replaces the generated one; the image is the generated one, which is
    what was exported)."""
    by_id = {example.image_id: example for example in annotations}
    raw_dir = Path(params.raw_dir)
    examples = []
    for base in synthetic_examples(params, seed):
        annotation = by_id.get(base.image_id)
        if annotation is not None and annotation.tile_files:
            base = dataclasses.replace(with_tile_labels(base, annotation.tile_files, params, warnings),
                                       source=annotation.source)
        elif annotation is not None:
            label_file = annotation.label_file or labelme.load(raw_dir / annotation.source, root=raw_dir)
            reader = _LabelmeExample(label_file, params, warnings, load_image=base.load_image)
            base = Example(base.image_id, annotation.source, reader.image, reader.mask, reader.ignore, queried=True)
        examples.append(base)
    return examples


def _raw_examples(params: IngestParams, warnings: Warnings, predefined_split: Optional[str] = None
                  ) -> Optional[list[Example]]:
    """The user's examples, or None where the synthetic default applies (no data folder)."""
    raw_dir = Path(params.raw_dir)
    if not raw_dir.is_dir() or not _has_content(raw_dir):
        if Path(os.path.normpath(params.raw_dir)) != Path(DEFAULT_RAW_DIR):
            state = "is empty" if raw_dir.is_dir() else "does not exist"
            raise ActivesegError(f"{raw_dir}: ingest.raw_dir {state}; put your data there or fix ingest.raw_dir "
                                 f"in params.yaml (leave it {DEFAULT_RAW_DIR} for the synthetic data set)")
        return None
    examples = discover(raw_dir, params, warnings, predefined_split)
    if not examples:
        raise ActivesegError(f"{raw_dir}: no images found (readers: {', '.join(params.formats)}); put images in "
                             f"{raw_dir / 'images'} or see README 'Your own data' (empty the folder for synthetic data)")
    return examples


def ingest(params: IngestParams, seed: int, out_dir: str | Path, predefined_split: Optional[str] = None
           ) -> pd.DataFrame:
    """Validate and write every example in canonical form; returns the manifest.
    ``predefined_split`` is ``split.predefined`` (none, folders or a CSV relative to raw_dir)."""
    warnings = Warnings()
    examples = _raw_examples(params, warnings, predefined_split)
    if examples is None and predefined_split:
        raise ActivesegError(f"params.yaml: split.predefined is {predefined_split} but {params.raw_dir} holds no "
                             "data (the built-in synthetic set has no split of its own); put your data there "
                             "or set split.predefined: none")
    if examples is None:
        print(f"ingest: no data in {params.raw_dir}; using the built-in synthetic data set")
        examples = synthetic_examples(params, seed)
    elif annotates_synthetic(examples, params):
        print(f"ingest: {params.raw_dir} holds only {len(examples)} annotated queries of the built-in images; using "
              "the built-in synthetic data set with them labeled from their Labelme files")
        examples = synthetic_with_annotations(examples, params, seed, warnings)
    else:
        for example in examples:
            if example.tile_files and example.load_mask is None:
                example.load_image()  # an annotated tile of an image that is not there: its one-line error
    rows, binarized = [], []
    with atomic_path(out_dir, directory=True) as staging:
        for folder in ("images", "masks", "ignore"):
            (staging / folder).mkdir()
        for example in progress(examples, "ingest"):
            rows.append(_write_example(example, staging, params, binarized, warnings))
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        write_csv(staging / "manifest.csv", manifest)
    labeled = int(manifest["labeled"].sum())
    print(f"ingest: {len(manifest)} images, {labeled} with masks ({int(manifest['queried'].sum())} from "
          f"annotated queries), {len(manifest) - labeled} unlabeled")
    if predefined_split:
        kept = manifest.loc[manifest["labeled"], "predefined_split"].value_counts()
        print(f"ingest: the data set's own split (split.predefined: {predefined_split}) keeps "
              + ", ".join(f"{kept.get(name, 0)} labeled images in {name}" for name in predefined.PREDEFINED_SPLITS))
    if binarized:
        print(f"ingest: {len(binarized)} masks were not strictly 0/255 and were binarised by "
              f"ingest.mask_rule={params.mask_rule}: " + ", ".join(binarized[:10])
              + (f" … ({len(binarized) - 10} more)" if len(binarized) > 10 else ""))
    for line in warnings.summary():
        print(line)
    return manifest


def _write_example(example: Example, staging: Path, params: IngestParams, binarized: list,
                   warnings: Warnings) -> dict:
    where = example.source if example.source == "synthetic" else str(Path(params.raw_dir) / example.source)
    image = example.load_image()
    digest = hashlib.sha1(image.tobytes())
    row = {"id": example.image_id, "source": example.source, "height": image.shape[0],
           "width": image.shape[1], "channels": 1 if image.ndim == 2 else 3, "labeled": False,
           "foreground_fraction": float("nan"), "ignore_fraction": float("nan"), "queried": example.queried,
           "predefined_split": example.predefined_split}
    imageio.write_png(staging / "images" / f"{example.image_id}.png", image)
    if example.load_mask is not None:
        mask_where = where if example.mask_source is None else str(Path(params.raw_dir) / example.mask_source)
        mask, was_changed = binarize_mask(example.load_mask(), mask_where, params.mask_rule)
        if mask.shape != image.shape[:2]:
            raise ActivesegError(f"{mask_where}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                 f"{image.shape[1]}x{image.shape[0]}; give the mask the image's size")
        if was_changed:
            binarized.append(example.image_id)
        fraction = float((mask > 0).mean())
        if fraction == 0.0:
            warnings.add("masks are all background", example.image_id)
        digest.update(mask.tobytes())
        imageio.write_png(staging / "masks" / f"{example.image_id}.png", mask)
        ignore_fraction = 0.0
        if example.load_ignore is not None:
            ignore = example.load_ignore()
            if ignore.any():
                ignore_fraction = float((ignore > 0).mean())
                digest.update(ignore.tobytes())
                imageio.write_png(staging / "ignore" / f"{example.image_id}.png", ignore)
        row.update(labeled=True, foreground_fraction=round(fraction, 6), ignore_fraction=round(ignore_fraction, 6))
    row["checksum"] = digest.hexdigest()
    return row


def read_manifest(ingested_dir: str | Path) -> pd.DataFrame:
    path = Path(ingested_dir) / "manifest.csv"
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro ingest` first")
    return pd.read_csv(path, dtype={"id": str})
