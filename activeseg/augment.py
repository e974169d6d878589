"""Augment: an albumentations pipeline written in params.yaml, applied to image and masks alike.

The pipeline is albumentations' own serialised form (``A.to_dict`` / ``A.from_dict``), so any
transform albumentations has can be used without code here. The augmented training set holds
every original training image followed by ``variants`` seeded variants of each. A variant whose
size changed (a crop) is resized back, so crops zoom in whatever ``preprocess.size`` is; a
transform's ``size: auto`` is the input side itself (a crop then keeps full resolution whatever
size the plan chose, rather than being made at a fixed size and blurred back up). The
``__ignore__`` mask rides along as a second mask target, so it keeps the mask's geometry.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from activeseg.errors import ActivesegError
from activeseg.params import AUTO
from activeseg.preprocess import SplitArrays
from activeseg.progress import progress


def _input_sized(description, side: int | None):
    """The description with every ``size: auto`` replaced by ``[side, side]``."""
    if isinstance(description, dict):
        return {key: ([side, side] if key == "size" and value == AUTO and side else _input_sized(value, side))
                for key, value in description.items()}
    if isinstance(description, list):
        return [_input_sized(item, side) for item in description]
    return description


def build_pipeline(pipeline: dict, seed: int, side: int | None = None) -> A.Compose:
    """``pipeline`` is what ``A.to_dict`` gives (the ``__version__`` key is optional); ``side`` is
    the training images' side, which a transform's ``size: auto`` stands for."""
    pipeline = _input_sized(pipeline, side)
    try:
        transform = A.from_dict({"transform": pipeline["transform"]} if "transform" in pipeline
                                else {"transform": pipeline})
    except Exception as error:  # albumentations raises many kinds on a bad description
        raise ActivesegError(f"params.yaml: `augment.pipeline` is not a valid albumentations pipeline "
                             f"({type(error).__name__}: {error}); write it as A.to_dict would") from None
    if not isinstance(transform, A.Compose):
        transform = A.Compose([transform])
    transform.set_random_seed(seed)
    return transform


def _resize_back(array: np.ndarray, shape: tuple, interpolation: int) -> np.ndarray:
    if array.shape == shape:
        return array
    if array.ndim != 3 or array.shape[-1] != shape[-1]:
        raise ActivesegError(f"params.yaml: `augment.pipeline` turns {shape} arrays into {array.shape}; "
                             "keep the number of channels")
    return cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation).reshape(shape)


def augment(train: SplitArrays, pipeline: A.Compose, variants: int) -> SplitArrays:
    """Originals first, then ``variants`` augmented copies of each labeled training image."""
    labeled = train.has_mask
    images, masks, ignores = [train.images[labeled]], [train.masks[labeled]], [train.ignore[labeled]]
    ids = [train.ids[labeled]]
    for variant in progress(range(variants), "augment variants"):
        variant_images, variant_masks, variant_ignores = [], [], []
        for image, mask, ignore in zip(train.images[labeled], train.masks[labeled], train.ignore[labeled]):
            # padding fills masks with 0: new border pixels count as background, as they did before
            result = pipeline(image=image, mask=mask, masks=[ignore])
            variant_images.append(_resize_back(result["image"], image.shape, cv2.INTER_LINEAR))
            variant_masks.append(_resize_back(result["mask"], mask.shape, cv2.INTER_NEAREST))
            variant_ignores.append(_resize_back(np.asarray(result["masks"][0]), ignore.shape, cv2.INTER_NEAREST))
        images.append(np.stack(variant_images) if variant_images else train.images[:0])
        masks.append(np.stack(variant_masks) if variant_masks else train.masks[:0])
        ignores.append(np.stack(variant_ignores) if variant_ignores else train.ignore[:0])
        ids.append(np.char.add(train.ids[labeled], f"#aug{variant + 1}"))
    all_ids = np.concatenate(ids)
    return SplitArrays(all_ids, np.concatenate(images), np.concatenate(masks), np.ones(len(all_ids), bool),
                       np.concatenate(ignores))


def preview_grid(augmented: SplitArrays, originals: int, variants: int, path: str | Path, columns: int = 4) -> None:
    """A PNG with, per row, one original and its variants, the mask outlined in red."""
    from activeseg.imageio import write_png

    shown = min(originals, columns)
    tiles = []
    for row in range(shown):
        cells = []
        for variant in range(variants + 1):
            index = variant * originals + row
            image = augmented.images[index]
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.shape[-1] == 1 else image.copy()
            contours, _ = cv2.findContours(augmented.masks[index][..., 0].astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(rgb, contours, -1, (255, 0, 0), 1)
            cells.append(np.pad(rgb, ((1, 1), (1, 1), (0, 0)), constant_values=255))
        tiles.append(np.concatenate(cells, axis=1))
    write_png(path, np.concatenate(tiles, axis=0))
