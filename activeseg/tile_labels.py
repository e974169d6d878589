"""Tile annotations: a queried tile's Labelme file and the label it gives its source image.

With ``preprocess.tile_size`` the query ranks tiles, and the export writes each picked tile as
an image of its own, ``<image id>@y<Y>_x<X>.png`` (:func:`activeseg.tiling.tile_id`: the tile of
the image resampled by ``preprocess.scale``, the reflection padding cropped off, so the
annotator sees only real pixels), with its Labelme file. That file records where the tile lies
under the top-level key ``activeseg_tile`` (``{"image", "y", "x", "scale", "tile_size"}``), not
in ``flags``: Labelme shows flags as check boxes and saves them back as true/false, while it
keeps unknown top-level keys as they were.

Ingest reads such a file as a label of the SOURCE image (:func:`source_labels`): a mask of the
original size holding the tile's shapes (drawn as Labelme draws them on the tile, then mapped
back by 1/scale) and an ``__ignore__`` region covering everything outside the tile, so the rest
of the image counts in no loss and no metric. Several annotated tiles of one image give one
label: each tile's block is filled in turn (a later file wins where tiles overlap), the union of
their blocks un-ignored. Preprocess then puts the image's tiles that carry a label in train and
returns the entirely ignored ones to the pool.

The block of original pixels a tile owns is the one preprocess's nearest-neighbour rescale
samples into that tile (:func:`activeseg.tiling.source_indices`), so the tile comes back from
preprocess exactly as drawn at scale 1, and to within the resampling of a pixel otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

import numpy as np

from activeseg import labelme
from activeseg.errors import ActivesegError
from activeseg.tiling import scaled_shape, source_indices

TILE_KEY = "activeseg_tile"


@dataclasses.dataclass(frozen=True)
class TilePlacement:
    """Which tile of which image: its top-left corner ``(y, x)`` and side in the image resampled
    by ``scale``."""

    image_id: str
    y: int
    x: int
    scale: float
    tile_size: int

    def record(self) -> dict:
        """The JSON value of :data:`TILE_KEY` in an exported tile's Labelme file."""
        return {"image": self.image_id, "y": self.y, "x": self.x, "scale": self.scale, "tile_size": self.tile_size}

    def extent(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of the tile inside the resampled ``height`` x ``width`` image."""
        scaled_height, scaled_width = scaled_shape(height, width, self.scale)
        return min(self.tile_size, scaled_height - self.y), min(self.tile_size, scaled_width - self.x)


def placement(label_file: labelme.LabelmeFile) -> Optional[TilePlacement]:
    """The tile a Labelme file annotates, or None for a file of a whole image."""
    record = label_file.other.get(TILE_KEY)
    if record is None:
        return None
    fix = (f"re-export the tile with the query stage, or give {TILE_KEY} the keys image (text), y and x "
           "(whole numbers >= 0), scale (> 0) and tile_size (> 0)")

    def whole(key: str, least: int) -> bool:
        value = record.get(key)
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    scale = record.get("scale") if isinstance(record, dict) else None
    if not (isinstance(record, dict) and isinstance(record.get("image"), str) and record["image"]
            and whole("y", 0) and whole("x", 0) and whole("tile_size", 1)
            and isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise ActivesegError(f"{label_file.path}: {TILE_KEY} is {str(record)[:80]}, not a tile's place; {fix}")
    return TilePlacement(record["image"], record["y"], record["x"], float(scale), record["tile_size"])


def _axis_block(start: int, count: int, length: int, scaled_length: int) -> tuple[int, int, np.ndarray]:
    """Along one axis, the original pixels ``[low, high)`` of the tile that covers resampled
    pixels ``[start, start + count)``, and for each the tile pixel it gets.

    Resampled pixel i takes original pixel ``source[i]``; the block runs from the first pixel
    the tile samples up to the first the next tile samples (the first and last tiles to the
    image's edge), so without overlap the blocks of a row of tiles cover it, each pixel once. An
    original pixel that an enlarging scale shares between two tiles belongs to neither (it stays
    ignored rather than take one tile's label)."""
    source = source_indices(length, scaled_length)
    end = start + count
    low = 0 if start == 0 else int(source[start]) + int(source[start - 1] == source[start])
    high = length if end == scaled_length else int(source[end])  # shared with the next tile: left out
    positions = np.arange(low, max(high, low))
    inside = source[start:end]
    return low, max(high, low), np.clip(np.searchsorted(inside, positions, side="right") - 1, 0, count - 1)


def source_labels(files: Iterable[labelme.LabelmeFile], height: int, width: int,
                  foreground_labels: Optional[Iterable[str]] = None, line_width: int = labelme.LINE_WIDTH,
                  point_size: int = labelme.POINT_SIZE,
                  earlier: Optional[tuple[np.ndarray, np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
    """The 0/255 mask and 0/255 ``__ignore__`` mask, ``height`` x ``width``, that the annotated
    tiles ``files`` (each with a :func:`placement`) give their source image: each tile's shapes
    in its block, every pixel outside the blocks ignored, or as ``earlier`` (mask, ignore) had it
    (an image queried whole before, whose ``__ignore__`` left a tile unlabeled)."""
    mask = np.zeros((height, width), np.uint8) if earlier is None else earlier[0].copy()
    ignore = np.full((height, width), 255, np.uint8) if earlier is None else earlier[1].copy()
    for label_file in files:
        where = placement(label_file)
        scaled_height, scaled_width = scaled_shape(height, width, where.scale)
        rows, columns = where.extent(height, width)
        if rows < 1 or columns < 1:
            raise ActivesegError(
                f"{label_file.path}: the tile at y={where.y}, x={where.x} lies outside its image '{where.image_id}' "
                f"({scaled_width}x{scaled_height} pixels at scale {where.scale:g}); re-export the tile with the "
                f"query stage or fix y and x in {TILE_KEY}")
        if (label_file.image_height, label_file.image_width) not in ((None, None), (rows, columns)):
            raise ActivesegError(
                f"{label_file.path}: annotates a {label_file.image_width}x{label_file.image_height} image, but the "
                f"tile at y={where.y}, x={where.x} of '{where.image_id}' at scale {where.scale:g} is "
                f"{columns}x{rows}; the image changed since the export: re-export the tile with the query stage")
        tile_mask, tile_ignore = labelme.rasterize(label_file, rows, columns, foreground_labels, line_width, point_size)
        top, bottom, tile_rows = _axis_block(where.y, rows, height, scaled_height)
        left, right, tile_columns = _axis_block(where.x, columns, width, scaled_width)
        block = np.ix_(tile_rows, tile_columns)
        mask[top:bottom, left:right] = tile_mask[block]
        ignore[top:bottom, left:right] = tile_ignore[block]
    return mask, ignore
