"""Tiles: the grid that cuts a large image into model-sized tiles, and the stitching that blends
the tiles' predictions back into one map of the image's size.

A grid of side ``tile_size`` tiles starts at the top-left corner and steps by ``tile_size -
overlap``; tiles reaching past the bottom or right edge (and every tile of an image smaller than a
tile) are filled there by mirror reflection of the image, and their ``valid`` mask (1 = a pixel of
the image) marks that padding so it counts in no loss and no metric. Stitching keeps two
accumulators of the image's size, the weighted sum of the tiles' probabilities and the sum of the
weights, never the stack of tiles: where tiles overlap, each pixel is the weighted mean of every
tile covering it, with a weight that falls towards a tile's borders (Gaussian or linear ramp, as
MONAI's sliding-window inference blends), because a fully convolutional network sees least
context, and errs most, at a tile's edge. Every weight is positive, so stitching a constant (a
mask's own tiles) gives back exactly that constant.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

BLEND_MODES = ("gaussian", "linear")
# MONAI's default: sigma = 1/8 of the tile side keeps the centre's weight near 1 and the border's
# small but positive.
GAUSSIAN_SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3  # the border of a Gaussian weight, clamped so that no covered pixel has weight 0


def tile_id(image_id: str, y: int, x: int) -> str:
    """The id of the tile of ``image_id`` whose top-left corner is at row ``y``, column ``x``."""
    return f"{image_id}@y{y}_x{x}"


def tile_source(tile: str) -> str:
    """The id of the image a :func:`tile_id` was cut from."""
    return tile.rsplit("@", 1)[0]


_TILE_ID = re.compile(r"(?P<image>.+)@y(?P<y>\d+)_x(?P<x>\d+)")


def parse_tile_id(tile: str) -> Optional[tuple[str, int, int]]:
    """``(image id, y, x)`` of a :func:`tile_id`, or None for an id that names no tile."""
    match = _TILE_ID.fullmatch(tile)
    return (match["image"], int(match["y"]), int(match["x"])) if match else None


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """The tiles of one ``height`` x ``width`` image; positions are the tiles' top-left corners."""

    height: int
    width: int
    tile_size: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"overlap {self.overlap} must be at least 0 and below tile_size {self.tile_size}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image of {self.height} x {self.width} pixels has no tiles")

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    def starts(self, length: int) -> list[int]:
        """Tile starts along one axis: as few as cover ``length`` pixels at this stride."""
        count = max(1, math.ceil((length - self.overlap) / self.stride))
        return [index * self.stride for index in range(count)]

    @property
    def positions(self) -> list[tuple[int, int]]:
        """``(y, x)`` of every tile, row by row."""
        return [(y, x) for y in self.starts(self.height) for x in self.starts(self.width)]

    def __len__(self) -> int:
        return len(self.starts(self.height)) * len(self.starts(self.width))

    def valid_extent(self, y: int, x: int) -> tuple[int, int]:
        """Rows and columns of the tile at ``(y, x)`` that lie inside the image (the rest is padding)."""
        return min(self.tile_size, self.height - y), min(self.tile_size, self.width - x)

    def cut(self, image: np.ndarray, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """The tile at ``(y, x)`` (reflection-padded past the image's edge) and its ``valid`` mask
        (uint8, 1 inside the image, 0 on padding)."""
        rows, columns = self.valid_extent(y, x)
        tile = image[y:y + rows, x:x + columns]
        padding = [(0, self.tile_size - rows), (0, self.tile_size - columns)] + [(0, 0)] * (image.ndim - 2)
        # symmetric (edge pixel repeated) rather than reflect: it also pads a 1-pixel-wide image
        tile = np.pad(tile, padding, mode="symmetric") if rows < self.tile_size or columns < self.tile_size else tile
        valid = np.zeros((self.tile_size, self.tile_size), np.uint8)
        valid[:rows, :columns] = 1
        return np.ascontiguousarray(tile), valid

    def tiles(self, image: np.ndarray) -> Iterator[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
        """``((y, x), tile, valid)`` for every tile of ``image``, row by row."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"image of shape {image.shape[:2]} given to a grid of {(self.height, self.width)}")
        for y, x in self.positions:
            yield (y, x), *self.cut(image, y, x)


def blend_weight(tile_size: int, overlap: int, mode: str = "gaussian") -> np.ndarray:
    """The ``(tile_size, tile_size)`` float32 weight of a tile's prediction in the stitched map.

    Without overlap every pixel has one tile and the weight is 1. ``gaussian``: MONAI's centred
    Gaussian (sigma 1/8 of the side), clamped at ``MIN_WEIGHT``; ``linear``: rises from the border
    over the ``overlap`` pixels that neighbouring tiles share, 1 in between."""
    if mode not in BLEND_MODES:
        raise ValueError(f"blend mode {mode!r}: use one of {', '.join(BLEND_MODES)}")
    if overlap == 0:
        return np.ones((tile_size, tile_size), np.float32)
    offsets = np.arange(tile_size, dtype=np.float64)
    if mode == "gaussian":
        centred = offsets - (tile_size - 1) / 2.0
        profile = np.exp(-centred ** 2 / (2 * (GAUSSIAN_SIGMA_SCALE * tile_size) ** 2))
    else:
        distance_to_border = np.minimum(offsets, tile_size - 1 - offsets)
        profile = np.minimum(distance_to_border + 1, overlap + 1) / (overlap + 1)
    weight = np.outer(profile, profile)
    return np.maximum(weight / weight.max(), MIN_WEIGHT).astype(np.float32)


class Stitcher:
    """Accumulates tile predictions of one image into a weighted mean map of the image's size."""

    def __init__(self, grid: TileGrid, weight: np.ndarray):
        self.grid, self.weight = grid, weight
        self.weighted_sum = np.zeros((grid.height, grid.width), np.float32)
        self.weight_sum = np.zeros((grid.height, grid.width), np.float32)

    def add(self, prediction: np.ndarray, y: int, x: int) -> None:
        """One tile's ``(tile_size, tile_size)`` prediction at ``(y, x)``; its padding is dropped."""
        rows, columns = self.grid.valid_extent(y, x)
        weight = self.weight[:rows, :columns]
        self.weighted_sum[y:y + rows, x:x + columns] += weight * prediction[:rows, :columns]
        self.weight_sum[y:y + rows, x:x + columns] += weight

    def result(self) -> np.ndarray:
        """The stitched ``(height, width)`` float32 map (the accumulators are reused for it)."""
        if not self.weight_sum.all():
            raise RuntimeError("stitch: some pixels were covered by no tile")
        np.divide(self.weighted_sum, self.weight_sum, out=self.weighted_sum)
        return self.weighted_sum


def stitch(grid: TileGrid, predictions, weight: np.ndarray | None = None) -> np.ndarray:
    """The map of ``(position, prediction)`` pairs covering ``grid``, blended."""
    stitcher = Stitcher(grid, blend_weight(grid.tile_size, grid.overlap) if weight is None else weight)
    for (y, x), prediction in predictions:
        stitcher.add(prediction, y, x)
    return stitcher.result()


def sliding_window(image: np.ndarray, tile_size: int, overlap: int,
                   predict_batch: Callable[[np.ndarray], np.ndarray], batch_size: int,
                   mode: str = "gaussian") -> np.ndarray:
    """``predict_batch`` (``(B, T, T, C)`` tiles → ``(B, T, T)`` probabilities) over every tile of
    ``image``, ``batch_size`` tiles at a time, blended into a ``(H, W)`` float32 map.

    At most one batch of tiles and its predictions exist at once besides the two accumulators,
    so the peak memory is about ``8 * H * W`` bytes plus the batch's, whatever the image's size."""
    grid = TileGrid(image.shape[0], image.shape[1], tile_size, overlap)
    stitcher = Stitcher(grid, blend_weight(tile_size, overlap, mode))
    positions = grid.positions
    for first in range(0, len(positions), batch_size):
        batch_positions = positions[first:first + batch_size]
        tiles = np.stack([grid.cut(image, y, x)[0] for y, x in batch_positions])
        for (y, x), prediction in zip(batch_positions, predict_batch(tiles)):
            stitcher.add(prediction, y, x)
    return stitcher.result()


def scaled_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """The ``(height, width)`` that :func:`rescale` gives an image of this size."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def source_indices(length: int, scaled_length: int) -> np.ndarray:
    """For each of the ``scaled_length`` pixels along one axis of a nearest-neighbour
    :func:`rescale`, the index of the original pixel it takes (OpenCV's own rounding, asked of
    OpenCV, so that a mask mapped back by it survives preprocess's rescale exactly)."""
    positions = np.arange(length, dtype=np.float32).reshape(length, 1)
    return cv2.resize(positions, (1, scaled_length), interpolation=cv2.INTER_NEAREST)[:, 0].astype(np.int64)


def rescale(image: np.ndarray, scale: float, interpolation: int | None = None) -> np.ndarray:
    """``image`` resampled by ``scale`` (area averaging when shrinking, bilinear when enlarging);
    scale 1 returns it as it is."""
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = scaled_shape(height, width, scale)[::-1]
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation).reshape(size[::-1] + image.shape[2:])
