"""Segmentation metrics: Dice, F1, precision, recall and IoU from pixel counts.

Convention for empty cases: a ratio whose denominator is zero is 1.0 when nothing was there to
find and nothing was predicted (a perfect empty prediction), and 0.0 otherwise. So an empty mask
predicted empty scores 1.0 on every metric; an empty mask with any predicted pixel scores 0.0
precision / Dice / IoU (and 0.0 recall); a non-empty mask predicted empty scores 0.0 on all.
This is ``sklearn.metrics``' ``zero_division=1.0`` when both are empty and ``0.0`` otherwise.
For binary masks Dice equals F1; both are reported because users look for both names.

The NumPy functions take an optional ``ignore`` array (1 or True on pixels to leave out, the
Labelme ``__ignore__`` regions): those pixels count as neither true, false nor missed, whatever
the prediction there, so an image scores as if they were not there. The Keras metric and the
training loss get the same mask packed into their targets (:func:`pack_targets`).
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("dice", "f1", "precision", "recall", "iou")


def confusion_counts(truth: np.ndarray, predicted: np.ndarray, axis=None, ignore=None) -> dict[str, np.ndarray]:
    """True/false positives and false negatives of boolean arrays, summed over ``axis``, leaving
    out the pixels where ``ignore`` is set."""
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    if ignore is not None:
        counted = ~ignore.reshape(truth.shape).astype(bool)
        truth, predicted = truth & counted, predicted & counted
    return {"tp": np.sum(truth & predicted, axis=axis, dtype=np.int64),
            "fp": np.sum(~truth & predicted, axis=axis, dtype=np.int64),
            "fn": np.sum(truth & ~predicted, axis=axis, dtype=np.int64)}


def _ratio(numerator, denominator, nothing_there):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.where(nothing_there, 1.0, 0.0))


def scores_from_counts(tp, fp, fn) -> dict[str, np.ndarray]:
    tp, fp, fn = (np.asarray(v, np.float64) for v in (tp, fp, fn))
    nothing_there = (tp + fp + fn) == 0
    dice = _ratio(2 * tp, 2 * tp + fp + fn, nothing_there)
    return {"dice": dice, "f1": dice.copy(),
            "precision": _ratio(tp, tp + fp, nothing_there),
            "recall": _ratio(tp, tp + fn, nothing_there),
            "iou": _ratio(tp, tp + fp + fn, nothing_there)}


def pooled_scores(truth: np.ndarray, predicted: np.ndarray, ignore=None) -> dict[str, float]:
    """Scores over all pixels of all images at once."""
    counts = confusion_counts(truth, predicted, ignore=ignore)
    return {name: float(value) for name, value in scores_from_counts(**counts).items()}


def per_image_scores(truth: np.ndarray, predicted: np.ndarray, ignore=None) -> dict[str, np.ndarray]:
    """Scores of each image of a ``(N, …)`` batch."""
    axes = tuple(range(1, truth.ndim))
    return scores_from_counts(**confusion_counts(truth, predicted, axis=axes, ignore=ignore))


def threshold_curve(truth: np.ndarray, probabilities: np.ndarray, thresholds, ignore=None) -> dict[str, np.ndarray]:
    """Pooled precision, recall and F1 at each threshold (a pixel is foreground above it)."""
    truth = truth.reshape(probabilities.shape).astype(bool)
    counts = [confusion_counts(truth, probabilities > threshold, ignore=ignore) for threshold in thresholds]
    scores = scores_from_counts(*(np.array([c[key] for c in counts]) for key in ("tp", "fp", "fn")))
    return {"threshold": np.asarray(thresholds, np.float64),
            **{name: scores[name] for name in ("precision", "recall", "f1")}}


def keras_dice(threshold: float = 0.5):
    """A Keras metric named ``dice``: Dice of the thresholded prediction, pooled over the batch.
    ``y_true`` is a training target of :func:`pack_targets`: ignored pixels count for nothing."""
    from activeseg.runtime import keras

    def dice(y_true, y_pred):
        y_true, y_pred = unpack_targets(y_true, y_pred)
        truth = keras.ops.cast(y_true > 0.5, "float32")
        predicted = keras.ops.cast(y_pred > threshold, "float32")
        intersection = keras.ops.sum(truth * predicted)
        total = keras.ops.sum(truth) + keras.ops.sum(predicted)
        return keras.ops.where(total > 0, 2.0 * intersection / keras.ops.maximum(total, 1.0), 1.0)

    return dice


# Keras passes a loss or metric only (y_true, y_pred), so the ignore mask travels inside y_true as
# a second channel. Zeroing truth and prediction there makes every count-based loss or metric
# (Dice, Jaccard, tp/fp/fn) skip those pixels and gives BCE / focal there a constant, so neither
# value nor gradient depends on the prediction under an ignored pixel.
def pack_targets(masks: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """``(N, H, W, 1)`` masks and ignore masks → the ``(N, H, W, 2)`` float32 training target."""
    return np.concatenate([masks, ignore], axis=-1).astype(np.float32)


def unpack_targets(y_true, y_pred):
    """A packed target and a prediction → ``(truth, prediction)``, both zero on ignored pixels.
    A one-channel target is a plain mask: nothing ignored."""
    if y_true.shape[-1] == 1:
        return y_true, y_pred
    counted = 1.0 - y_true[..., 1:2]
    return y_true[..., :1] * counted, y_pred * counted
