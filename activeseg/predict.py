"""Prediction on new images: masks (optionally probability maps and overlays) at each image's
original size, through exactly the training transform.

The transform is rebuilt from the ``stats.json`` that preprocess wrote
(:class:`activeseg.preprocess.Transform`), the model's probabilities are resized back to the
image's own size (bilinear) and thresholded there. The inputs, model and stats are checked before
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
from activeseg.evaluation import COLOURS
from activeseg.preprocess import Transform
from activeseg.progress import progress


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
    given = (transform.size, transform.size, transform.channels)
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


def _predict_batches(model, transform: Transform, images: list[Path], staging: Path, options: PredictOptions):
    """Predict and write batch by batch; yields each image once its outputs are written."""
    for batch in _batches(images, options.batch_size):
        originals = [transform.scale_intensity(imageio.read_native(path)) for path in batch]
        inputs = transform.normalize(np.stack([transform.resize_image(image) for image in originals]))
        probabilities = model.predict(inputs, batch_size=options.batch_size, verbose=0)[..., 0]
        for path, image, probability in zip(batch, originals, probabilities):
            full = probability_at_original_size(probability, image.shape[:2])
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
