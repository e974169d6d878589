"""Prediction on new images: masks (optionally probability maps and overlays) at each image's
original size, through exactly the training transform.

The transform is rebuilt from the ``stats.json`` that preprocess wrote
(:class:`activeseg.preprocess.Transform`). Resize mode: the model's probabilities of the resized
image are resized back to the image's own size (bilinear) and thresholded there. Tile mode
(``preprocess.tile_size``): a sliding window of tiles over the whole image (resampled by
``preprocess.scale``), predicted tile batch by tile batch and blended where tiles overlap
(:func:`activeseg.tiling.sliding_window`), so a large image never has its tiles' stack in memory.
Evaluate predicts its test images through the same functions. The inputs, model and stats are checked before
any prediction, and the outputs are staged and moved into place only once all of them exist, so
a bad file stops the command with one line naming it and leaves the output folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from activeseg import imageio
from activeseg.errors import ActivesegError
from activeseg.evaluation import COLOURS, predict_probabilities
from activeseg.preprocess import SplitArrays, Transform, read_canonical
from activeseg.progress import progress
from activeseg.tiling import rescale, sliding_window


@dataclass(frozen=True)
class PredictOptions:
    threshold: float = 0.5
    probabilities: bool = False
    overlays: bool = False
    batch_size: int = 8


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder's images, sorted, not recursive)."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in imageio.IMAGE_SUFFIXES)
            if not images:
                raise ActivesegError(f"{item}: no images ({', '.join(imageio.IMAGE_SUFFIXES)}) in this folder; "
                                     "pass a folder of images or the image files themselves")
            found += images
        elif item.is_file():
            if item.suffix.lower() not in imageio.IMAGE_SUFFIXES:
                raise ActivesegError(f"{item}: not a supported image type; use one of "
                                     f"{', '.join(imageio.IMAGE_SUFFIXES)}")
            found.append(item)
        else:
            raise ActivesegError(f"{item}: no such file or folder; check the path")
    by_stem: dict[str, Path] = {}
    for path in found:
        if path.stem in by_stem and by_stem[path.stem].resolve() != path.resolve():
            raise ActivesegError(f"{path}: same name as {by_stem[path.stem]}, so their masks would overwrite "
                                 "each other; rename one or predict them separately")
        by_stem[path.stem] = path
    return list(by_stem.values())


def load_transform(stats_json: str | Path) -> Transform:
    try:
        return Transform.load(stats_json)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise ActivesegError(f"{stats_json}: not a preprocess stats.json; pass data/prepared/stats.json "
                             "from the pipeline that trained the model") from None


def check_compatible(model, transform: Transform, model_path: str | Path, stats_json: str | Path) -> None:
    """The model must take the transform's size and channels (catches a stats.json of another run)."""
    expected = tuple(model.input_shape[1:])
    side = transform.tile_size or transform.size
    given = (side, side, transform.channels)
    if any(want is not None and want != have for want, have in zip(expected, given)) or len(expected) != 3:
        raise ActivesegError(f"{stats_json}: gives inputs of shape {given} but {model_path} expects {expected}; "
                             "pass the stats.json of the run that trained this model")


def probability_at_original_size(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ``(S, S)`` probability map resized (bilinear) to the image's ``(H, W)``."""
    return cv2.resize(probabilities.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def prediction_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the predicted foreground tinted and outlined."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    colour = np.array(COLOURS["TP"], np.float32)
    rgb[mask] = (0.55 * rgb[mask] + 0.45 * colour).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in colour), 1)
    return rgb


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def probability_map(model, transform: Transform, image: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Foreground probabilities ``(H, W)`` float32 of one uint8 image (intensity already scaled)
    at its own size: the resized image's prediction resized back, or with tiles the blended
    sliding window."""
    if not transform.tile_size:
        inputs = transform.normalize(transform.resize_image(image)[None])
        return probability_at_original_size(model.predict_on_batch(inputs)[0, ..., 0], image.shape[:2])
    resampled = rescale(transform.to_channels(image), transform.scale)

    def predict_tiles(tiles: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(transform.normalize(tiles)))[..., 0]

    probabilities = sliding_window(resampled, transform.tile_size, transform.tile_overlap, predict_tiles, batch_size)
    return probabilities if transform.scale == 1.0 else probability_at_original_size(probabilities, image.shape[:2])


def split_probability_maps(model, transform: Transform, split: SplitArrays, ingested_dir: str | Path,
                           batch_size: int = 16):
    """For each image of a prepared split, ``(id, image, mask, ignore, probabilities)`` at the
    image's original size: the uint8 image, its bool mask and ``__ignore__`` mask (None when it has
    none) as ingested, and the model's probabilities. Without tiles the prepared arrays are
    predicted in batches as before and each map is resized back; with tiles each image is a
    sliding window. One image's maps exist at a time."""
    for first in range(0, len(split), batch_size):
        ids = split.ids[first:first + batch_size]
        batch = (None if transform.tile_size else
                 predict_probabilities(model, transform.normalize(split.images[first:first + batch_size]), batch_size))
        for index, image_id in enumerate(ids):
            native, mask, ignore = read_canonical(ingested_dir, str(image_id), bool(split.has_mask[first + index]))
            image = transform.scale_intensity(native)
            shape = image.shape[:2]
            probabilities = (probability_map(model, transform, image, batch_size) if batch is None
                             else probability_at_original_size(batch[index], shape))
            yield (str(image_id), image, np.zeros(shape, bool) if mask is None else mask > 127,
                   None if ignore is None else ignore > 127, probabilities)


def _predict_batches(model, transform: Transform, images: list[Path], staging: Path, options: PredictOptions):
    """Predict and write batch by batch (with tiles, image by image, tile batch by tile batch);
    yields each image once its outputs are written."""
    for batch in _batches(images, 1 if transform.tile_size else options.batch_size):
        originals = [transform.scale_intensity(imageio.read_native(path)) for path in batch]
        if transform.tile_size:
            maps = [probability_map(model, transform, originals[0], options.batch_size)]
        else:
            inputs = transform.normalize(np.stack([transform.resize_image(image) for image in originals]))
            maps = [probability_at_original_size(probability, image.shape[:2]) for image, probability in
                    zip(originals, model.predict(inputs, batch_size=options.batch_size, verbose=0)[..., 0])]
        for path, image, full in zip(batch, originals, maps):
            mask = full > options.threshold
            imageio.write_png(staging / "masks" / f"{path.stem}.png", mask.astype(np.uint8) * 255)
            if options.probabilities:
                imageio.write_png(staging / "probabilities" / f"{path.stem}.png",
                                  np.round(np.clip(full, 0, 1) * 255).astype(np.uint8))
            if options.overlays:
                imageio.write_png(staging / "overlays" / f"{path.stem}.png", prediction_overlay(image, mask))
            yield path


def predict_files(model, transform: Transform, images: list[Path], out_dir: str | Path,
                  options: PredictOptions = PredictOptions()) -> list[Path]:
    """Write ``masks/<stem>.png`` (0/255) for each image, and ``probabilities/<stem>.png``
    (probability × 255) and ``overlays/<stem>.png`` when asked; returns the mask paths."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".predict.", suffix=".tmp", dir=out_dir))
    wanted = ["masks"] + [name for name in ("probabilities", "overlays") if getattr(options, name)]
    succeeded = False
    try:
        for name in wanted:
            (staging / name).mkdir()
        for _ in progress(_predict_batches(model, transform, images, staging, options), "predict",
                          total=len(images)):
            pass
        for name in wanted:
            (out_dir / name).mkdir(exist_ok=True)
            for produced in (staging / name).iterdir():
                os.replace(produced, out_dir / name / produced.name)
        succeeded = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not succeeded:
            shutil.rmtree(out_dir, ignore_errors=True)
    return [out_dir / "masks" / f"{path.stem}.png" for path in images]


def predict(model_path: str | Path, stats_json: str | Path, inputs: list[str | Path], out_dir: str | Path,
            options: PredictOptions = PredictOptions()) -> list[Path]:
    """The ``activeseg predict`` command: validate, load, predict, write."""
    from activeseg.model import load_model

    if not 0.0 < options.threshold < 1.0:
        raise ActivesegError(f"--threshold {options.threshold}: must be between 0 and 1")
    if options.batch_size < 1:
        raise ActivesegError(f"--batch-size {options.batch_size}: must be at least 1")
    images = find_images(inputs)
    transform = load_transform(stats_json)
    model = load_model(model_path)
    check_compatible(model, transform, model_path, stats_json)
    return predict_files(model, transform, images, out_dir, options)
