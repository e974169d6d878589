"""Ingest: every supported raw format in, one canonical, validated form out.

Canonical form (a DVC output directory)::

    images/<id>.png   uint8 gray or RGB, original size
    masks/<id>.png    uint8 0/255, same size as its image (absent for unlabeled images)
    manifest.csv      one row per image: id, source, height, width, channels,
                      labeled, foreground_fraction, checksum

With no images under the raw folder, the built-in synthetic data set is written instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import pandas as pd

from activeseg import imageio, synthetic
from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path, write_csv
from activeseg.params import IngestParams
from activeseg.progress import progress

MANIFEST_COLUMNS = ["id", "source", "height", "width", "channels", "labeled",
                    "foreground_fraction", "checksum"]


@dataclasses.dataclass
class Example:
    """One image and, when labeled, its mask; loaders defer reading until ingest writes it."""

    image_id: str
    source: str
    load_image: Callable[[], np.ndarray]
    load_mask: Optional[Callable[[], np.ndarray]] = None


def binarize_mask(mask: np.ndarray, path: str) -> tuple[np.ndarray, bool]:
    """Masks become 0/255 by the rule ``pixel > 0``; returns the mask and whether it was not 0/255."""
    if mask.ndim == 3:
        if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
            raise ActivesegError(f"{path}: mask has colour; save masks as single-channel images (0 = background)")
        mask = mask[..., 0]
    was_binary = bool(np.isin(mask, (0, 255)).all())
    return np.where(mask > 0, 255, 0).astype(np.uint8), not was_binary


def folder_pairs(raw_dir: Path) -> list[Example]:
    """``images/<stem>.*`` with optional ``masks/<stem>.*``; images without a mask are unlabeled."""
    images_dir, masks_dir = raw_dir / "images", raw_dir / "masks"
    if not images_dir.is_dir():
        return []

    def by_stem(folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if not folder.is_dir():
            return found
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in imageio.IMAGE_SUFFIXES:
                continue
            if path.stem in found:
                raise ActivesegError(f"{path}: two files share the id '{path.stem}' (also {found[path.stem].name}); "
                                     "rename or remove one")
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
            image_id=stem, source=str(image_path),
            load_image=lambda p=image_path: imageio.read_image(p),
            load_mask=(lambda p=mask_path: imageio.read_image(p)) if mask_path else None))
    return examples


READERS: list[Callable[[Path], list[Example]]] = [folder_pairs]


def discover(raw_dir: Path) -> list[Example]:
    """All examples the readers find under ``raw_dir``; ids must be unique across formats."""
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for reader in READERS:
        for example in reader(raw_dir):
            if example.image_id in seen:
                raise ActivesegError(f"{example.source}: id '{example.image_id}' is also used by "
                                     f"{seen[example.image_id]}; rename one of them")
            seen[example.image_id] = example.source
            examples.append(example)
    return examples


def synthetic_examples(params: IngestParams, seed: int) -> list[Example]:
    config = params.synthetic
    return [Example(image_id, "synthetic", lambda image=image: image, lambda mask=mask: mask)
            for image_id, image, mask in synthetic.generate(config.count, config.size, config.min_objects,
                                                            config.max_objects, seed)]


def ingest(params: IngestParams, seed: int, out_dir: str | Path) -> pd.DataFrame:
    """Validate and write every example in canonical form; returns the manifest."""
    raw_dir = Path(params.raw_dir)
    examples = discover(raw_dir) if raw_dir.is_dir() else []
    if not examples and (raw_dir / "images").is_dir():
        # an images/ folder is the user's data: empty, it is a mistake, not a wish for synthetic data
        raise ActivesegError(f"{raw_dir / 'images'}: no images found (supported: {', '.join(imageio.IMAGE_SUFFIXES)}); "
                             "add your images, or remove the empty folder to use the synthetic data set")
    if not examples:
        print(f"ingest: no images under {raw_dir}/images; using the built-in synthetic data set")
        examples = synthetic_examples(params, seed)
    rows, binarized, empty = [], [], []
    with atomic_path(out_dir, directory=True) as staging:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        for example in progress(examples, "ingest"):
            rows.append(_write_example(example, staging, binarized, empty))
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        write_csv(staging / "manifest.csv", manifest)
    labeled = int(manifest["labeled"].sum())
    print(f"ingest: {len(manifest)} images, {labeled} with masks, {len(manifest) - labeled} unlabeled")
    if binarized:
        print(f"ingest: {len(binarized)} masks were not strictly 0/255 and were binarised by `pixel > 0`: "
              + ", ".join(binarized[:10]) + (" …" if len(binarized) > 10 else ""))
    if empty:
        print(f"ingest: warning: {len(empty)} masks are all background: " + ", ".join(empty[:10])
              + (" …" if len(empty) > 10 else ""))
    return manifest


def _write_example(example: Example, staging: Path, binarized: list, empty: list) -> dict:
    image = example.load_image()
    digest = hashlib.sha1(image.tobytes())
    row = {"id": example.image_id, "source": example.source, "height": image.shape[0],
           "width": image.shape[1], "channels": 1 if image.ndim == 2 else 3, "labeled": False,
           "foreground_fraction": float("nan")}
    imageio.write_png(staging / "images" / f"{example.image_id}.png", image)
    if example.load_mask is not None:
        mask, was_changed = binarize_mask(example.load_mask(), example.source)
        if mask.shape != image.shape[:2]:
            raise ActivesegError(f"{example.source}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                 f"{image.shape[1]}x{image.shape[0]}; give the mask the image's size")
        if was_changed:
            binarized.append(example.image_id)
        fraction = float((mask > 0).mean())
        if fraction == 0.0:
            empty.append(example.image_id)
        digest.update(mask.tobytes())
        imageio.write_png(staging / "masks" / f"{example.image_id}.png", mask)
        row.update(labeled=True, foreground_fraction=round(fraction, 6))
    row["checksum"] = digest.hexdigest()
    return row


def read_manifest(ingested_dir: str | Path) -> pd.DataFrame:
    path = Path(ingested_dir) / "manifest.csv"
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro ingest` first")
    return pd.read_csv(path, dtype={"id": str})
