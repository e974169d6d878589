"""Intensity / resize / normalize: the one transform from a canonical image to what the model sees.

A canonical image (8- or 16-bit) is first scaled to uint8 by ``preprocess.intensity`` (``8bit``:
16-bit divided by 257; ``minmax`` / ``percentile``: each image's own range or percentiles
stretched to 0..255, so a 12-bit camera keeps its grey levels), then resized. Arrays are stored
compactly as uint8 (``(N, S, S, C)`` images, ``(N, S, S, 1)`` 0/1 masks and 0/1 ``ignore`` masks
of the Labelme ``__ignore__`` regions, resized like the masks) and normalised on the fly by
:class:`Transform`, which train, active-query, evaluate and predict all build from the same
``stats.json``, so every consumer applies exactly the same transform.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from activeseg import imageio
from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path, write_json, write_npz
from activeseg.params import PreprocessParams
from activeseg.progress import progress
from activeseg.tiling import TileGrid, rescale, tile_id

# With tiles the model trains and validates on tiles and the query ranks tiles; evaluate reads
# the test images at their original size.
TILED_SPLITS = ("train", "val", "pool")


@dataclasses.dataclass(frozen=True)
class Transform:
    """Intensity scaling, size, channels and normalisation, with the training split's statistics."""

    size: int
    channels: int
    normalization: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    intensity: str = "8bit"
    percentiles: tuple[float, float] = (0.5, 99.5)
    tile_size: int = 0  # > 0: the model sees tiles of this side of the image resampled by ``scale``
    tile_overlap: int = 0
    scale: float = 1.0

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """A canonical (8- or 16-bit, gray or RGB) image to the stored ``(size, size, channels)`` uint8."""
        return self.resize_image(self.scale_intensity(image))

    def scale_intensity(self, image: np.ndarray) -> np.ndarray:
        """An 8- or 16-bit image to uint8 by ``intensity``, at its own size.

        ``minmax`` and ``percentile`` take the bounds over all of the image's pixels and channels
        (per channel would shift colours); a flat image has no range to stretch and becomes 0.
        """
        if self.intensity == "8bit":
            return image if image.dtype == np.uint8 else (image // 257).astype(np.uint8)
        if self.intensity == "minmax":
            low, high = float(image.min()), float(image.max())
        else:
            low, high = (float(v) for v in np.percentile(image, self.percentiles))
        if high <= low:
            return np.zeros(image.shape, np.uint8)
        scaled = (image.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
        return np.round(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)

    def to_channels(self, image: np.ndarray) -> np.ndarray:
        """A gray or RGB image with ``channels`` channels, ``(H, W, channels)``, at its own size."""
        if image.ndim == 2 and self.channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.ndim == 3 and self.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return image.reshape(image.shape[:2] + (self.channels,))

    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """Any gray/RGB uint8 image to ``(size, size, channels)`` uint8."""
        image = self.to_channels(image)
        interpolation = cv2.INTER_AREA if min(image.shape[:2]) >= self.size else cv2.INTER_LINEAR
        resized = cv2.resize(image, (self.size, self.size), interpolation=interpolation)
        return resized.reshape(self.size, self.size, self.channels)

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """A 0/255 mask to ``(size, size, 1)`` 0/1 uint8 (nearest neighbour keeps it binary)."""
        resized = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return (resized > 127).astype(np.uint8)[..., None]

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 batch to the model's float32 input."""
        scaled = images.astype(np.float32) / 255.0
        if self.normalization == "zscore":
            scaled = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return scaled

    def normalized(self, images: np.ndarray) -> "NormalizedImages":
        """``images`` as the model's input, normalised slice by slice when sliced (a pool of many
        tiles never exists as float32 all at once)."""
        return NormalizedImages(self, images)

    def normalize_tensor(self, images):
        """The same as :meth:`normalize` as TensorFlow ops, for ``tf.data`` input pipelines."""
        from activeseg.runtime import tf

        scaled = tf.cast(images, tf.float32) / 255.0
        if self.normalization == "zscore":
            scaled = (scaled - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        return scaled

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["percentiles"] = list(self.percentiles)
        return data

    @classmethod
    def load(cls, stats_json: str | Path) -> "Transform":
        path = Path(stats_json)
        if not path.is_file():
            raise ActivesegError(f"{path}: not found; run `dvc repro preprocess` first")
        data = json.loads(path.read_text())
        # stats.json from before preprocess.intensity existed: those runs scaled 16-bit by 1/257
        return cls(size=data["size"], channels=data["channels"], normalization=data["normalization"],
                   mean=tuple(data["mean"]), std=tuple(data["std"]), intensity=data.get("intensity", "8bit"),
                   percentiles=tuple(data.get("percentiles", (0.5, 99.5))), tile_size=data.get("tile_size", 0),
                   tile_overlap=data.get("tile_overlap", 0), scale=data.get("scale", 1.0))


class NormalizedImages:
    """A uint8 batch seen through :meth:`Transform.normalize`: ``len``, ``shape`` and slicing as
    the float32 array would have them, each slice normalised when it is taken."""

    def __init__(self, transform: Transform, images: np.ndarray):
        self.transform, self.images = transform, images
        self.shape = images.shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> np.ndarray:
        return self.transform.normalize(self.images[index])


@dataclasses.dataclass
class SplitArrays:
    """One split as arrays; ``masks`` holds zeros where ``has_mask`` is False. ``ignore`` is 1 on
    pixels left out of loss and metrics (Labelme ``__ignore__``); None means none are."""

    ids: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    ignore: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ignore is None:
            self.ignore = np.zeros_like(self.masks)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids) -> "SplitArrays":
        """The images with these ids, in this order."""
        index = [int(np.flatnonzero(self.ids == image_id)[0]) for image_id in ids]
        return SplitArrays(self.ids[index], self.images[index], self.masks[index], self.has_mask[index],
                           self.ignore[index])


def save_arrays(path: str | Path, arrays: SplitArrays) -> None:
    write_npz(path, ids=arrays.ids, images=arrays.images, masks=arrays.masks, has_mask=arrays.has_mask,
              ignore=arrays.ignore)


def load_arrays(path: str | Path) -> SplitArrays:
    path = Path(path)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro` to create it")
    with np.load(path) as data:
        return SplitArrays(ids=data["ids"], images=data["images"], masks=data["masks"], has_mask=data["has_mask"],
                           ignore=data["ignore"] if "ignore" in data.files else None)


def load_split_arrays(prepared_dir: str | Path, split: str) -> SplitArrays:
    return load_arrays(Path(prepared_dir) / f"{split}.npz")


def read_canonical(ingested_dir: str | Path, image_id: str, has_mask: bool):
    """An ingested image as stored (8- or 16-bit), its 0/255 mask and its 0/255 ``__ignore__``
    mask at the original size; the masks are None where there is none."""
    ingested_dir = Path(ingested_dir)
    image = imageio.read_native(ingested_dir / "images" / f"{image_id}.png")
    if not has_mask:
        return image, None, None
    ignore_png = ingested_dir / "ignore" / f"{image_id}.png"
    return (image, imageio.read_image(ingested_dir / "masks" / f"{image_id}.png"),
            imageio.read_image(ignore_png) if ignore_png.is_file() else None)


def _tiles_and_padding(transform: Transform, image_id: str, image: np.ndarray, mask: np.ndarray | None,
                       ignore: np.ndarray | None) -> tuple[SplitArrays, np.ndarray]:
    """:func:`cut_tiles`, and the tiles' ``(N, T, T, 1)`` reflection padding (1 = padding)."""
    image = rescale(transform.to_channels(transform.scale_intensity(image)), transform.scale)
    binary = [None if m is None else rescale((m > 127).astype(np.uint8), transform.scale, cv2.INTER_NEAREST)
              for m in (mask, ignore)]
    grid = TileGrid(image.shape[0], image.shape[1], transform.tile_size, transform.tile_overlap)
    ids, images, masks, ignores, paddings = [], [], [], [], []
    for (y, x), tile, valid in grid.tiles(image):
        ids.append(tile_id(image_id, y, x))
        images.append(tile)
        paddings.append(1 - valid)
        masks.append(np.zeros_like(valid) if binary[0] is None else grid.cut(binary[0], y, x)[0])
        ignores.append((1 - valid) if binary[1] is None else np.maximum(grid.cut(binary[1], y, x)[0], 1 - valid))
    return (SplitArrays(np.array(ids, str), np.stack(images), np.stack(masks)[..., None],
                        np.full(len(ids), mask is not None), np.stack(ignores)[..., None]),
            np.stack(paddings)[..., None])


def cut_tiles(transform: Transform, image_id: str, image: np.ndarray, mask: np.ndarray | None,
              ignore: np.ndarray | None) -> SplitArrays:
    """A canonical image (and its 0/255 masks) at ``transform.scale`` as tiles: ids
    :func:`activeseg.tiling.tile_id`, 0/1 masks, and ``ignore`` set on the reflection padding too,
    so the padding counts in no loss or metric."""
    return _tiles_and_padding(transform, image_id, image, mask, ignore)[0]


def _unlabeled_tiles_to_pool(tiles: SplitArrays, padding: np.ndarray) -> tuple[SplitArrays, SplitArrays]:
    """``(labeled, unlabeled)``: the tiles with at least one labeled pixel, and the entirely ignored
    ones as pool tiles (no mask, only their padding ignored). An image annotated tile by tile
    (:mod:`activeseg.tile_labels`) is ignored outside its annotated tiles: its other tiles carry no
    label and wait in the pool for their turn."""
    unlabeled = tiles.ignore.reshape(len(tiles), -1).all(axis=1)
    kept = ~unlabeled
    return (SplitArrays(tiles.ids[kept], tiles.images[kept], tiles.masks[kept], tiles.has_mask[kept],
                        tiles.ignore[kept]),
            SplitArrays(tiles.ids[unlabeled], tiles.images[unlabeled], np.zeros_like(tiles.masks[unlabeled]),
                        np.zeros(int(unlabeled.sum()), bool), padding[unlabeled]))


def _concatenate(parts: list[SplitArrays], transform: Transform) -> SplitArrays:
    if not parts:
        shape = (0, transform.tile_size, transform.tile_size)
        return SplitArrays(np.array([], str), np.zeros(shape + (transform.channels,), np.uint8),
                           np.zeros(shape + (1,), np.uint8), np.array([], bool))
    return SplitArrays(*(np.concatenate([getattr(part, name) for part in parts])
                         for name in ("ids", "images", "masks", "has_mask", "ignore")))


def _tiled_split(ingested_dir: Path, rows: pd.DataFrame, transform: Transform, split: str
                 ) -> tuple[SplitArrays, list[SplitArrays]]:
    """One split cut into tiles, and (train) the tiles of queried images that carry no label, for the pool."""
    queried = rows["queried"].astype(bool) if "queried" in rows else pd.Series(False, index=rows.index)
    parts, unlabeled = [], []
    entries = list(zip(rows["id"], rows["has_mask"], queried))
    for image_id, has_mask, was_queried in progress(entries, f"preprocess {split} (tiles)"):
        tiles, padding = _tiles_and_padding(transform, image_id, *read_canonical(ingested_dir, image_id, has_mask))
        if split == "train" and was_queried:
            tiles, returned = _unlabeled_tiles_to_pool(tiles, padding)
            unlabeled.append(returned)
        parts.append(tiles)
    return _concatenate(parts, transform), unlabeled


def _split_arrays(ingested_dir: Path, rows: pd.DataFrame, transform: Transform, split: str) -> SplitArrays:
    """One split's images at ``transform.size``."""
    entries = list(zip(rows["id"], rows["has_mask"]))
    size, channels = transform.size, transform.channels
    images = np.zeros((len(rows), size, size, channels), np.uint8)
    masks = np.zeros((len(rows), size, size, 1), np.uint8)
    ignore = np.zeros_like(masks)
    for index, (image_id, has_mask) in enumerate(progress(entries, f"preprocess {split}")):
        image, mask, ignored = read_canonical(ingested_dir, image_id, has_mask)
        images[index] = transform.prepare_image(image)
        if mask is not None:
            masks[index] = transform.resize_mask(mask)
        if ignored is not None:
            ignore[index] = transform.resize_mask(ignored)
    return SplitArrays(rows["id"].to_numpy(str), images, masks, rows["has_mask"].to_numpy(bool), ignore)


def preprocess(ingested_dir: str | Path, split_frame: pd.DataFrame, params: PreprocessParams,
               out_dir: str | Path) -> Transform:
    """Scale and resize (or tile) every split, compute normalisation statistics on train, write
    arrays and stats. With tiles, the tiles of a queried training image that carry no label (an
    image annotated tile by tile) join the pool."""
    unfitted = Transform(  # everything but the training statistics, which need the arrays it makes
        params.size, params.channels, params.normalization, (0.0,), (1.0,), params.intensity,
        tuple(params.percentiles), params.tile_size, params.tile_overlap, params.scale)
    arrays, unlabeled_tiles = {}, []
    for split in ("train", "val", "test", "pool"):
        rows = split_frame[split_frame["split"] == split]
        if params.tile_size and split in TILED_SPLITS:
            arrays[split], unlabeled = _tiled_split(Path(ingested_dir), rows, unfitted, split)
            unlabeled_tiles += unlabeled
        else:
            arrays[split] = _split_arrays(Path(ingested_dir), rows, unfitted, split)
    if unlabeled_tiles:
        arrays["pool"] = _concatenate([arrays["pool"], *unlabeled_tiles], unfitted)
    train_pixels = arrays["train"].images.reshape(-1, params.channels).astype(np.float64) / 255.0
    transform = dataclasses.replace(
        unfitted, mean=tuple(round(float(v), 6) for v in train_pixels.mean(axis=0)),
        std=tuple(round(max(float(v), 1e-3), 6) for v in train_pixels.std(axis=0)))
    with atomic_path(out_dir, directory=True) as staging:
        for split, data in arrays.items():
            save_arrays(staging / f"{split}.npz", data)
        write_json(staging / "stats.json", transform.to_json())
    return transform
