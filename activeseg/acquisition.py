"""Acquisition: scoring unlabeled images by how much their mask would teach the model.

Pixel scores come from T Monte-Carlo dropout passes (Gal & Ghahramani 2016; Di Scandalea et al.
2019). The U-Net's features are computed once per batch and only the dropout-and-head tail runs
T times (see :func:`activeseg.model.split_at_dropout`), so T passes cost about one ``predict``.

Strategies, per pixel, with ``p_t`` the foreground probability of pass t and ``p`` their mean:

- ``mc_dropout``: variance of ``p_t`` over passes.
- ``entropy``: binary entropy of ``p`` (natural log).
- ``bald``: entropy of ``p`` minus the mean entropy of each ``p_t`` (mutual information).
- ``margin``: ``1 - |2p - 1|``, highest where the two classes are closest.
- ``random``: a seeded uniform number per image, the baseline every strategy must beat.

Reduction of pixel scores to one score per image: ``mean`` over all pixels, or
``foreground_border``: mean over the predicted foreground (``p > 0.5``) dilated by 2 pixels,
so large empty backgrounds do not dilute the score (0 when nothing is predicted).
"""

from __future__ import annotations

import cv2
import numpy as np

EPSILON = 1e-7


def binary_entropy(probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, EPSILON, 1 - EPSILON)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def pixel_scores(strategy: str, samples: np.ndarray) -> np.ndarray:
    """``samples``: ``(T, N, H, W)`` foreground probabilities; returns ``(N, H, W)`` scores."""
    mean = samples.mean(axis=0)
    if strategy == "mc_dropout":
        return samples.var(axis=0)
    if strategy == "entropy":
        return binary_entropy(mean)
    if strategy == "bald":
        return binary_entropy(mean) - binary_entropy(samples).mean(axis=0)
    if strategy == "margin":
        return 1.0 - np.abs(2.0 * mean - 1.0)
    raise ValueError(f"unknown strategy {strategy!r}")


def reduce_scores(scores: np.ndarray, mean_probability: np.ndarray, reduction: str) -> np.ndarray:
    """``(N, H, W)`` pixel scores to ``(N,)`` image scores."""
    if reduction == "mean":
        return scores.reshape(len(scores), -1).mean(axis=1)
    if reduction == "foreground_border":
        kernel = np.ones((5, 5), np.uint8)
        image_scores = np.zeros(len(scores))
        for index, (score, probability) in enumerate(zip(scores, mean_probability)):
            region = cv2.dilate((probability > 0.5).astype(np.uint8), kernel) > 0
            image_scores[index] = float(score[region].mean()) if region.any() else 0.0
        return image_scores
    raise ValueError(f"unknown reduction {reduction!r}")


def mc_samples(model, images: np.ndarray, passes: int, batch_size: int):
    """Yield ``(start, samples)`` per batch, ``samples`` being ``(T, B, H, W)`` probabilities."""
    from activeseg.model import split_at_dropout

    feature_model, head = split_at_dropout(model)
    for start in range(0, len(images), batch_size):
        features = feature_model(images[start:start + batch_size], training=False)
        samples = np.stack([head(features, training=True).numpy()[..., 0] for _ in range(passes)])
        yield start, samples


def score_pool(model, images: np.ndarray, strategy: str, passes: int, reduction: str,
               batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image scores ``(N,)`` and the mean pixel score maps ``(N, H, W)`` for normalised images."""
    if strategy == "random":
        rng = np.random.default_rng(seed)
        return rng.random(len(images)), np.zeros(images.shape[:3], np.float32)
    image_scores = np.zeros(len(images))
    maps = np.zeros(images.shape[:3], np.float32)
    for start, samples in mc_samples(model, images, passes, batch_size):
        scores = pixel_scores(strategy, samples)
        image_scores[start:start + len(scores)] = reduce_scores(scores, samples.mean(axis=0), reduction)
        maps[start:start + len(scores)] = scores
    return image_scores, maps


def rank(ids: np.ndarray, scores: np.ndarray, strategy: str):
    """A ranking table, most informative first; ties broken by id so the order is stable."""
    import pandas as pd

    table = pd.DataFrame({"id": ids.astype(str), "score": scores, "strategy": strategy})
    table = table.sort_values(["score", "id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    return table
