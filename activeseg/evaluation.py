"""Evaluation: test-set metrics (pooled and per image), the trivial baseline, the
precision / recall vs threshold curve, and overlays of the worst and best test images.

Pooled metrics count every pixel of every test image at once (they equal ``sklearn.metrics`` on
the flattened masks); ``mean_*`` metrics average the per-image scores. ``trivial_dice`` is what
the better of two models that learned nothing would score, predicting foreground everywhere or
background everywhere (0 unless the test masks are all empty); ``beats_trivial`` is false, and
:func:`failure_warning` says why and what to change, when the Dice is not clearly above it.
Empty masks and empty predictions follow the convention in :mod:`activeseg.metrics`. Pixels
of ``__ignore__`` regions count in none of it (metrics, curve, foreground fraction) and are grey,
uncoloured, in the overlays' prediction panel.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from activeseg.imageio import write_png
from activeseg.metrics import METRIC_NAMES, confusion_counts, scores_from_counts, threshold_curve
from activeseg.outputs import atomic_path

# Thresholds of the precision / recall curve: fine enough to see the trade-off, small enough to
# read as a table and to diff between experiments.
CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))

# Prediction panel colours (RGB): true positives, false positives, false negatives.
COLOURS = {"TP": (0, 200, 0), "FP": (230, 0, 0), "FN": (0, 80, 255)}
IGNORED_GREY = (128, 128, 128)  # pixels of __ignore__ regions, which no metric counts
OVERLAY_MIN_SIDE = 160  # small model inputs are enlarged (nearest neighbour) to stay readable
# A Dice this close to the trivial baseline is within the noise of a small test set: not a model
# that learned the task.
TRIVIAL_MARGIN = 0.02


def predict_probabilities(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Foreground probabilities ``(N, H, W)`` for normalised images, dropout off.

    The model is called batch by batch, not through ``model.predict``: that traces a graph first,
    which cost more than predicting a small test set (2.2 CPU seconds against 0.7 for 14 images
    at 64 px, the same probabilities) and is paid again for every model the simulation trains."""
    if len(images) == 0:
        return np.zeros(images.shape[:3], np.float32)
    return np.concatenate([np.asarray(model(images[start:start + batch_size], training=False))[..., 0]
                           for start in range(0, len(images), batch_size)])


def evaluate(ids: np.ndarray, truth: np.ndarray, probabilities: np.ndarray, threshold: float,
             ignore: np.ndarray | None = None) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics and a per-image table sorted worst Dice first; ``ignore`` (1 = left out)
    as in :mod:`activeseg.metrics`."""
    truth = truth.reshape(probabilities.shape).astype(bool)
    ignore = None if ignore is None else ignore.reshape(truth.shape).astype(bool)
    maps = ((image_id, truth[index], probabilities[index], None if ignore is None else ignore[index])
            for index, image_id in enumerate(ids.astype(str)))
    summary, table, _ = evaluate_maps(maps, threshold, thresholds=())
    return summary, table


def evaluate_maps(maps, threshold: float, thresholds=CURVE_THRESHOLDS
                  ) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """:func:`evaluate` and :func:`threshold_table` of ``(id, truth, probabilities, ignore)``
    images of any sizes, one at a time: only pixel counts are kept, so a test set of large images
    never has to be in memory at once. Returns the summary, the per-image table and the curve."""
    ids, counts, curve_counts, trivial = [], [], np.zeros((len(thresholds), 3), np.int64), np.zeros(3, np.int64)
    counted_pixels, foreground_pixels = [], []
    for image_id, truth, probabilities, ignore in maps:
        truth = truth.astype(bool)
        counted = np.ones_like(truth) if ignore is None else ~ignore.astype(bool)
        image_counts = confusion_counts(truth, probabilities > threshold, ignore=ignore)
        ids.append(image_id)
        counts.append([image_counts[key] for key in ("tp", "fp", "fn")])
        for row, curve_threshold in enumerate(thresholds):
            curve_counts[row] += [value for value in confusion_counts(
                truth, probabilities > curve_threshold, ignore=ignore).values()]
        counted_pixels.append(int(counted.sum()))
        foreground_pixels.append(int((truth & counted).sum()))
        trivial += [foreground_pixels[-1], counted_pixels[-1] - foreground_pixels[-1], 0]
    counts = np.array(counts, np.int64).reshape(-1, 3)
    total = counts.sum(axis=0)
    summary = {name: float(value) for name, value in scores_from_counts(*total).items()}
    per_image = scores_from_counts(*counts.T)
    for name in METRIC_NAMES:
        summary[f"mean_{name}"] = float(per_image[name].mean()) if len(ids) else 0.0
    # the better of foreground everywhere (``trivial``) and background everywhere (every
    # foreground pixel missed)
    summary["trivial_dice"] = max(float(scores_from_counts(*trivial)["dice"]),
                                  float(scores_from_counts(0, 0, trivial[0])["dice"]))
    summary["beats_trivial"] = bool(summary["dice"] > summary["trivial_dice"] + TRIVIAL_MARGIN)
    summary["threshold"] = threshold
    summary["images"] = len(ids)
    table = pd.DataFrame({"id": np.array(ids, str), **{name: per_image[name] for name in METRIC_NAMES},
                          "foreground_fraction": np.array(foreground_pixels, np.int64)
                          / np.maximum(np.array(counted_pixels, np.int64), 1)})
    table = table.sort_values(["dice", "id"], kind="stable").reset_index(drop=True)
    curve_scores = scores_from_counts(*curve_counts.T)
    curve = pd.DataFrame({"threshold": np.asarray(thresholds, np.float64),
                          **{name: curve_scores[name] for name in ("precision", "recall", "f1")}}).round(6)
    return summary, table, curve


def failure_warning(summary: dict) -> str | None:
    """One line naming the likely causes and the params to change, when the test Dice does not
    clearly beat the trivial baseline; None when it does."""
    if summary["beats_trivial"]:
        return None
    return (f"evaluate: warning: test Dice {summary['dice']:.4f} is not clearly above the trivial baseline "
            f"{summary['trivial_dice']:.4f} (all foreground or all background, whichever is higher; margin "
            f"{TRIVIAL_MARGIN}): the model has not learned the task. Likely causes: too little training "
            "(raise `epochs`, `train.steps_per_epoch`), a learning rate too high or too low "
            "(`train.learning_rate`), rare foreground (`train.loss: bce+dice` or `focal`), a threshold off the "
            "probabilities (`evaluate.threshold`, see metrics/threshold_curve.csv), too few labeled images "
            "(`split.initial_labeled`, annotate a query round) or masks that do not match their images "
            "(`ingest.mask_rule`, data/ingested/masks)")


def threshold_table(truth: np.ndarray, probabilities: np.ndarray, thresholds=CURVE_THRESHOLDS,
                    ignore: np.ndarray | None = None) -> pd.DataFrame:
    """Pooled precision, recall and F1 at each threshold: the data of the DVC plot."""
    return pd.DataFrame(threshold_curve(truth, probabilities, thresholds, ignore)).round(6)


def threshold_figure(table: pd.DataFrame, threshold: float):
    """The same curve as a matplotlib figure, for MLflow (which shows images, not CSV plots)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), layout="constrained")
    axes = figure.add_subplot()
    for name in ("precision", "recall", "f1"):
        axes.plot(table["threshold"], table[name], marker=".", label=name)
    axes.axvline(threshold, color="grey", linestyle=":", label=f"evaluate.threshold {threshold:g}")
    axes.set(xlabel="threshold", ylabel="score (pooled over test pixels)", ylim=(0, 1.02), xlim=(0, 1))
    axes.legend(loc="lower left", fontsize="small")
    return figure


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], colour=(0, 0, 0)) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def overlay(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, caption: str = "",
            ignored: np.ndarray | None = None) -> np.ndarray:
    """Image | ground truth | prediction, under a caption; in the prediction panel true positives
    are green, false positives red, false negatives blue and ``ignored`` pixels grey."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 or image.shape[-1] == 1 else image.copy()
    rgb = rgb.reshape(truth.shape + (3,))
    truth_panel = rgb.copy()
    truth_panel[truth] = (0.5 * truth_panel[truth] + [0, 127, 0]).astype(np.uint8)
    prediction_panel = rgb.copy()
    counted = np.ones_like(truth) if ignored is None else ~ignored
    for region, colour in ((truth & predicted & counted, COLOURS["TP"]), (~truth & predicted & counted, COLOURS["FP"]),
                           (truth & ~predicted & counted, COLOURS["FN"]), (~counted, IGNORED_GREY)):
        prediction_panel[region] = (0.4 * prediction_panel[region] + 0.6 * np.array(colour)).astype(np.uint8)
    scale = max(1, math.ceil(OVERLAY_MIN_SIDE / min(truth.shape)))
    panels = [cv2.resize(panel, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
              for panel in (rgb, truth_panel, prediction_panel)]
    height, width = panels[0].shape[:2]
    gap = np.full((height, 4, 3), 255, np.uint8)
    body = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    header = np.full((40, body.shape[1], 3), 255, np.uint8)
    _text(header, caption, (4, 15))
    for column, title in enumerate(("image", "ground truth")):
        _text(header, title, (4 + column * (width + 4), 34))
    x = 4 + 2 * (width + 4)
    for label, colour in COLOURS.items():
        _text(header, label, (x, 34), colour)
        x += 30
    return np.concatenate([header, body], axis=0)


def overlay_ids(table: pd.DataFrame, count: int) -> list[str]:
    """Ids of the ``count`` worst and ``count`` best images of an evaluate table."""
    count = min(count, len(table))
    return list(dict.fromkeys(list(table["id"].head(count)) + list(table["id"][::-1].head(count))))


def write_overlays(out_dir: str | Path, table: pd.DataFrame, ids: np.ndarray, images: np.ndarray,
                   truth: np.ndarray, probabilities: np.ndarray, threshold: float, count: int,
                   ignore: np.ndarray | None = None) -> None:
    """:func:`write_overlay_maps` of images held in equally sized arrays."""
    shape = probabilities.shape[1:]
    maps = {image_id: (images[index], truth[index].reshape(shape).astype(bool), probabilities[index],
                       None if ignore is None else ignore[index].reshape(shape).astype(bool))
            for index, image_id in enumerate(ids.astype(str))}
    write_overlay_maps(out_dir, table, maps, threshold, count)


def write_overlay_maps(out_dir: str | Path, table: pd.DataFrame, maps: dict, threshold: float, count: int) -> None:
    """PNG overlays of the ``count`` worst and ``count`` best test images; ``maps`` gives, for at
    least those (:func:`overlay_ids`), ``id → (image, truth, probabilities, ignore or None)``.

    Files are named by rank only (``worst1.png``, ``best1.png``), so ``dvc plots diff`` shows the
    same slot of two experiments side by side; the image id and its Dice are in the caption."""
    count = min(count, len(table))
    worst = [(f"worst{rank + 1}", row) for rank, row in enumerate(table.head(count).itertuples())]
    best = [(f"best{rank + 1}", row) for rank, row in enumerate(table[::-1].head(count).itertuples())]
    with atomic_path(out_dir, directory=True) as staging:
        for label, row in worst + best:
            image, truth, probabilities, ignored = maps[row.id]
            caption = f"{label}: {row.id}  Dice {row.dice:.3f}  (threshold {threshold:g})"
            write_png(staging / f"{label}.png", overlay(image, truth, probabilities > threshold, caption, ignored))
