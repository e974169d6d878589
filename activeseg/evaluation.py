"""Evaluation: test-set metrics (pooled and per image), the trivial baseline, and overlays.

Pooled metrics count every pixel of every test image at once; ``mean_*`` metrics average the
per-image scores. ``trivial_dice`` is what predicting foreground everywhere would score, so a
model that learned nothing is easy to spot.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from activeseg.imageio import write_png
from activeseg.metrics import METRIC_NAMES, per_image_scores, pooled_scores
from activeseg.outputs import atomic_path


def predict_probabilities(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Foreground probabilities ``(N, H, W)`` for normalised images, dropout off."""
    if len(images) == 0:
        return np.zeros(images.shape[:3], np.float32)
    return model.predict(images, batch_size=batch_size, verbose=0)[..., 0]


def evaluate(ids: np.ndarray, truth: np.ndarray, probabilities: np.ndarray, threshold: float
             ) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics and a per-image table sorted worst Dice first."""
    truth = truth.reshape(probabilities.shape).astype(bool)
    predicted = probabilities > threshold
    summary = pooled_scores(truth, predicted)
    per_image = per_image_scores(truth, predicted)
    for name in METRIC_NAMES:
        summary[f"mean_{name}"] = float(per_image[name].mean())
    summary["trivial_dice"] = pooled_scores(truth, np.ones_like(truth))["dice"]
    summary["threshold"] = threshold
    summary["images"] = int(len(ids))
    table = pd.DataFrame({"id": ids.astype(str), **{name: per_image[name] for name in METRIC_NAMES},
                          "foreground_fraction": truth.reshape(len(truth), -1).mean(axis=1)})
    table = table.sort_values(["dice", "id"], kind="stable").reset_index(drop=True)
    return summary, table


def overlay(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Image | ground truth | prediction, with true positives green, false positives red and
    false negatives blue in the prediction panel."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.shape[-1] == 1 else image.copy()
    truth_panel = rgb.copy()
    truth_panel[truth] = (0.5 * truth_panel[truth] + [0, 127, 0]).astype(np.uint8)
    prediction_panel = rgb.copy()
    for region, colour in ((truth & predicted, (0, 200, 0)), (~truth & predicted, (230, 0, 0)),
                           (truth & ~predicted, (0, 80, 255))):
        prediction_panel[region] = (0.4 * prediction_panel[region] + 0.6 * np.array(colour)).astype(np.uint8)
    gap = np.full((rgb.shape[0], 2, 3), 255, np.uint8)
    return np.concatenate([rgb, gap, truth_panel, gap, prediction_panel], axis=1)


def write_overlays(out_dir: str | Path, table: pd.DataFrame, ids: np.ndarray, images: np.ndarray,
                   truth: np.ndarray, probabilities: np.ndarray, threshold: float, count: int) -> None:
    """PNG overlays of the ``count`` worst and ``count`` best test images."""
    index_of = {image_id: index for index, image_id in enumerate(ids.astype(str))}
    worst = [(f"worst{rank + 1}", image_id) for rank, image_id in enumerate(table["id"][:count])]
    best = [(f"best{rank + 1}", image_id) for rank, image_id in enumerate(table["id"][::-1][:count])]
    with atomic_path(out_dir, directory=True) as staging:
        for label, image_id in worst + best:
            index = index_of[image_id]
            picture = overlay(images[index], truth[index].reshape(probabilities.shape[1:]).astype(bool),
                              probabilities[index] > threshold)
            write_png(staging / f"{label}_{image_id}.png", picture)
