"""Acquisition: scoring unlabeled images by how much their mask would teach the model.

Pixel scores come from T samples of each image's prediction (``query.sampling``):

- ``head_dropout``: T Monte-Carlo dropout passes (Gal & Ghahramani 2016; Di Scandalea et al.
  2019). The U-Net's features are computed once per batch and only the dropout-and-head tail runs
  T times (see :func:`activeseg.model.split_at_dropout`), so T passes cost about one ``predict``
  (measured in ``bench/scoring_cost.py``).
- ``tta``: test-time augmentation, T = 8: the model (dropout off) predicts each of the 8 flips and
  quarter turns of the image (:func:`dihedral`), and each prediction is turned back
  (:func:`undo_dihedral`) so the 8 samples are aligned pixel for pixel. Where the model's answer
  depends on the orientation it is unsure (Wang et al. 2019, arXiv 1807.07356); this needs no
  dropout, so it works with any trained model, at the cost of 8 ``predict`` calls.
- ``mc_network``: T Monte-Carlo passes of the whole network, every dropout layer on and batch norm
  in inference mode (:func:`activeseg.model.mc_network`), as Di Scandalea et al. 2019 (arXiv
  1907.05143, section 2.2) do; with ``train.dropout_placement: encoder`` or ``encoder_decoder``
  the samples then differ in the features, not only in the read-out. About T ``predict`` calls' cost.

Strategies, per pixel, with ``p_t`` the foreground probability of pass t and ``p`` their mean:

- ``mc_dropout``: variance of ``p_t`` over the T passes (population variance, divisor T);
  at most 0.25.
- ``entropy``: binary entropy of ``p`` (natural log); at most ln 2.
- ``bald``: entropy of ``p`` minus the mean entropy of each ``p_t`` (mutual information between
  the prediction and the dropout mask); at most ln 2, never negative.
- ``margin``: ``1 - |2p - 1|``, one minus the gap between the two class probabilities; highest
  where they are closest. For two classes least confidence, ``1 - max(p, 1 - p)``, is exactly half
  of it, so the two rank images identically and only ``margin`` is offered.
- ``random``: a seeded uniform number per image, the baseline every strategy must beat.
- ``random_foreground`` (simulation only: it reads the oracle masks, :func:`foreground_aware_pick`):
  nnActive's foreground-aware random baseline (Lüth et al., TMLR 2025), which no strategy there
  beat reliably: a third of the picks among pool items holding foreground, a third among items
  holding a foreground border, a third uniformly.

Reduction of pixel scores to one score per image: ``mean`` over all pixels;
``foreground_border``: mean over the predicted foreground (``p > 0.5``) dilated by 2 pixels
(a 5x5 square), so large empty backgrounds do not dilute the score (0 when nothing is predicted);
or ``distance_weighted``: the mean of the pixel scores weighted by the Euclidean distance
transform of the predicted foreground (each predicted pixel's distance to the nearest predicted
background pixel, divided by the image's largest such distance), so the thin band along every
predicted boundary, uncertain in every image, weighs little and the score measures doubt inside
the objects (Di Scandalea et al. 2019, arXiv 1907.05143, section 2; as ``compute_uncertain`` in
neuropoly/deep-active-learning ``ceal/utils.py``, which min-max scales the transform of the
prediction). 0 when nothing is predicted; an image predicted foreground everywhere has no
boundary and weight 1 everywhere.

Picking the K images to annotate (:func:`pick`): the top K by score, or, with
``candidates_per_pick`` C > 1, the top C*K grouped into K clusters by k-means on an embedding of
each image (mean and standard deviation over pixels of the features the dropout layer receives)
and the best-scored image of each cluster. Top-K alone tends to take K near-duplicates (the same
kind of hard image) in one round; clustering the candidates is the diverse mini-batch of
Zhdanov 2019 (arXiv 1901.05954), close to the representativeness step of Yang et al. 2017's
suggestive annotation. ``random`` is never clustered: it is the baseline.

Whether a score finds the images the model gets wrong (:func:`score_error_agreement`), where the
masks are known (the simulation's pool): per image the true error is 1 - Dice of the model's plain
prediction against the mask; the Spearman rank correlation of score with error, and the error
lift of the K top-scored images (their mean error over the pool's), 1 being no better than chance.
A score can only save labels if it ranks hard images first, and this shows it from one trained
model, long before learning curves over many do.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Optional

import cv2
import numpy as np

from activeseg.progress import progress

EPSILON = 1e-7
# The largest value each pixel score can take: uncertainty maps are drawn on this fixed scale so
# that two exported images can be compared by eye.
SCORE_MAXIMUM = {"mc_dropout": 0.25, "entropy": float(np.log(2)), "bald": float(np.log(2)), "margin": 1.0,
                 "random": float(np.log(2))}


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
        # Jensen makes this non-negative; clipping near 0 and 1 can leave a -1e-7, hence the floor.
        return np.maximum(binary_entropy(mean) - binary_entropy(samples).mean(axis=0), 0.0)
    if strategy == "margin":
        return 1.0 - np.abs(2.0 * mean - 1.0)
    if strategy == "random":
        # random ranks images by a coin; the map shown to the annotator is still where the model is unsure
        return binary_entropy(mean)
    raise ValueError(f"unknown strategy {strategy!r}")


def distance_weights(probability: np.ndarray) -> np.ndarray:
    """``(H, W)`` weights in [0, 1]: the Euclidean distance of each predicted-foreground pixel
    (``p > 0.5``) to the nearest predicted-background pixel over the largest such distance."""
    foreground = (probability > 0.5).astype(np.uint8)
    if not foreground.any():
        return np.zeros(probability.shape, np.float32)
    if foreground.all():
        return np.ones(probability.shape, np.float32)
    distance = cv2.distanceTransform(foreground, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance / distance.max()


def reduce_scores(scores: np.ndarray, mean_probability: np.ndarray, reduction: str) -> np.ndarray:
    """``(N, H, W)`` pixel scores to ``(N,)`` image scores."""
    if reduction == "mean":
        return scores.reshape(len(scores), -1).mean(axis=1)
    if reduction == "distance_weighted":
        return np.array([float((score * distance_weights(probability)).mean())
                         for score, probability in zip(scores, mean_probability)])
    if reduction == "foreground_border":
        kernel = np.ones((5, 5), np.uint8)
        image_scores = np.zeros(len(scores))
        for index, (score, probability) in enumerate(zip(scores, mean_probability)):
            region = cv2.dilate((probability > 0.5).astype(np.uint8), kernel) > 0
            image_scores[index] = float(score[region].mean()) if region.any() else 0.0
        return image_scores
    raise ValueError(f"unknown reduction {reduction!r}")


_SPLIT_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MC_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _mc_model(model):
    """The compiled whole-network Monte-Carlo pass of ``model``, built once per model."""
    if model not in _MC_MODELS:
        from activeseg.runtime import tf

        from activeseg.model import mc_network

        sampler = mc_network(model)
        _MC_MODELS[model] = tf.function(lambda images: sampler(images), reduce_retracing=True)
    return _MC_MODELS[model]


def _network_samples(model, batch: np.ndarray, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(samples (T, B, H, W), embeddings (B, 2F))`` of T whole-network passes over the batch; the
    embedding is each pass's (mean, std) of the features, averaged. One call per pass: the T
    copies as one batch of T times the size ran 1.6x slower than T ``predict`` calls on CPU."""
    sampler, batch = _mc_model(model), tf_constant(batch)
    samples, embeddings = [], []
    for _ in range(passes):
        features, probabilities = (output.numpy() for output in sampler(batch))
        samples.append(probabilities[..., 0])
        embeddings.append(np.concatenate([features.mean(axis=(1, 2)), features.std(axis=(1, 2))], axis=1))
    return np.stack(samples), np.mean(embeddings, axis=0)


def tf_constant(array: np.ndarray):
    from activeseg.runtime import tf

    return tf.constant(array)


def _split_model(model):
    """The feature model and the compiled head of ``model``, built once per model: rebuilding
    them would retrace both graphs on every call (each simulation round scores the pool)."""
    if model not in _SPLIT_MODELS:
        from activeseg.runtime import tf

        from activeseg.model import split_at_dropout

        feature_model, head = split_at_dropout(model)
        _SPLIT_MODELS[model] = (feature_model, tf.function(head, reduce_retracing=True))
    return _SPLIT_MODELS[model]


# The 8 symmetries of the square as (quarter turns, flipped first): identity first.
DIHEDRAL = [(turns, flipped) for flipped in (False, True) for turns in range(4)]


def dihedral(images: np.ndarray, turns: int, flipped: bool) -> np.ndarray:
    """``(B, H, W, ...)`` images mirrored left-right (if ``flipped``), then turned ``turns``
    quarter turns counter-clockwise; square images keep their shape."""
    images = images[:, :, ::-1] if flipped else images
    return np.rot90(images, turns, axes=(1, 2))


def undo_dihedral(images: np.ndarray, turns: int, flipped: bool) -> np.ndarray:
    """The inverse of :func:`dihedral`: turn back, then mirror back."""
    images = np.rot90(images, -turns, axes=(1, 2))
    return images[:, :, ::-1] if flipped else images


def mc_samples(model, images: np.ndarray, passes: int, batch_size: int, description: str = "score pool",
               sampling: str = "head_dropout"):
    """Yield ``(start, samples, embeddings)`` per batch, ``samples`` being ``(T, B, H, W)``
    probabilities and ``embeddings`` ``(B, 2F)``: the mean and standard deviation over pixels of
    the F feature channels the dropout layer receives (what :func:`pick` clusters).

    ``head_dropout``: T = ``passes`` passes of the dropout-and-head tail; ``passes=1`` gives the
    plain prediction (dropout off). ``tta``: T = 8, one plain prediction per :data:`DIHEDRAL`
    view, turned back (``passes`` is ignored). ``mc_network``: T = ``passes`` passes of the whole
    network with its dropout on (:func:`_network_samples`). All run as compiled graphs
    (``predict_on_batch`` and a ``tf.function``), as ``predict`` does; run eagerly, op by op, they
    were several times slower on CPU."""
    from activeseg.runtime import tf

    feature_model, head = _split_model(model)
    starts = range(0, len(images), batch_size)
    for start in progress(starts, f"{description} ({batch_size} images a step)"):
        batch = images[start:start + batch_size]
        if sampling == "mc_network" and passes > 1:
            yield start, *_network_samples(model, batch, passes)
            continue
        features = feature_model.predict_on_batch(batch)
        embeddings = np.concatenate([features.mean(axis=(1, 2)), features.std(axis=(1, 2))], axis=1)
        if sampling == "tta":
            samples = [head(tf.constant(features), False).numpy()[..., 0]]
            for turns, flipped in DIHEDRAL[1:]:
                view = feature_model.predict_on_batch(np.ascontiguousarray(dihedral(batch, turns, flipped)))
                samples.append(undo_dihedral(head(tf.constant(view), False).numpy()[..., 0], turns, flipped))
            yield start, np.stack(samples), embeddings
            continue
        features = tf.constant(features)
        samples = np.stack([head(features, passes > 1).numpy()[..., 0] for _ in range(passes)])
        yield start, samples, embeddings


@dataclasses.dataclass
class PoolScores:
    """What scoring the pool gives: one score per image, and per pixel the strategy's score map
    and the mean foreground probability (what the exported polygons are drawn from), and per image
    the feature embedding :func:`pick` clusters (None: no clustering possible)."""

    scores: np.ndarray
    maps: np.ndarray
    probabilities: np.ndarray
    embeddings: Optional[np.ndarray] = None

    @classmethod
    def empty(cls, image_shape) -> "PoolScores":
        """The scores of an empty pool (every image labeled): nothing to rank, no model needed."""
        no_maps = np.zeros((0, *image_shape), np.float32)
        return cls(np.zeros(0), no_maps, no_maps.copy())


def score_pool(model, images: np.ndarray, strategy: str, passes: int, reduction: str,
               batch_size: int, seed: int, sampling: str = "head_dropout",
               padding: Optional[np.ndarray] = None, keep_maps: bool = True) -> PoolScores:
    """Score ``(N, S, S, C)`` normalised images (or a view that normalises the slices taken of
    it, :meth:`activeseg.preprocess.Transform.normalized`); memory is two float32 ``(N, S, S)``
    maps, none with ``keep_maps=False`` (then ``maps`` and ``probabilities`` are None: a pool of
    many tiles scores in the memory of its tiles, and the picked few are scored again for theirs).
    ``sampling``: ``head_dropout``, ``tta`` or ``mc_network`` (see :func:`mc_samples`).
    ``padding`` (``(N, S, S[, 1])``, 1 on a tile's reflection padding): those pixels score 0, so
    a tile's score is its real pixels' doubt per tile area and an edge tile that is mostly
    mirrored padding, little to annotate, ranks by the little it holds.

    ``random`` runs the model once without dropout (for the maps and polygons only) and draws the
    image scores from ``seed``."""
    image_scores = np.zeros(len(images))
    maps = np.zeros(images.shape[:3], np.float32) if keep_maps else None
    probabilities = np.zeros(images.shape[:3], np.float32) if keep_maps else None
    embeddings = None
    plain = strategy == "random"
    for start, samples, batch_embeddings in mc_samples(model, images, 1 if plain else passes, batch_size,
                                                       sampling="head_dropout" if plain else sampling):
        scores = pixel_scores(strategy, samples)
        if padding is not None:
            scores = scores * (1 - padding[start:start + len(scores)].reshape(scores.shape))
        mean = samples.mean(axis=0)
        image_scores[start:start + len(scores)] = reduce_scores(scores, mean, reduction)
        if keep_maps:
            maps[start:start + len(scores)] = scores
            probabilities[start:start + len(scores)] = mean
        if embeddings is None:
            embeddings = np.zeros((len(images), batch_embeddings.shape[1]), np.float32)
        embeddings[start:start + len(scores)] = batch_embeddings
    if strategy == "random":
        image_scores = np.random.default_rng(seed).random(len(images))
    return PoolScores(image_scores, maps, probabilities, embeddings)


def rank(ids: np.ndarray, scores: np.ndarray, strategy: str, tiles: bool = False, seed: int = 0):
    """A ranking table (id, score, rank, strategy), most informative first. Ties are broken by a
    shuffle seeded with ``seed`` (the same ids and seed give the same order, whatever order they
    come in): ties are common where a weak model predicts nothing on many tiles, and breaking
    them by id would send the annotator the first tiles of the alphabetically first images.
    ``tiles``: the ids are tile ids, and the source image and the tile's position (y, x at
    ``preprocess.scale``) follow the id."""
    import pandas as pd

    from activeseg.tiling import parse_tile_id

    table = pd.DataFrame({"id": np.asarray(ids).astype(str), "score": scores, "strategy": strategy})
    table = table.sort_values("id", kind="stable").reset_index(drop=True)
    table["tie_break"] = np.random.default_rng(seed).permutation(len(table))
    table = table.sort_values(["score", "tie_break"], ascending=[False, True]).drop(columns="tie_break")
    table = table.reset_index(drop=True)
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    if tiles:
        places = [parse_tile_id(tile) for tile in table["id"]]
        for column, (name, values) in enumerate(zip(("source", "y", "x"), zip(*places) if places else ([],) * 3)):
            table.insert(1 + column, name, pd.Series(values, dtype=int if name != "source" else object))
    return table


def pick(ranking, ids: np.ndarray, embeddings: Optional[np.ndarray], count: int, candidates_per_pick: int,
         seed: int) -> list[str]:
    """The ``count`` ids to annotate, best first: the top of ``ranking`` (from :func:`rank`), or
    with ``candidates_per_pick`` > 1 the best-ranked image of each of ``count`` k-means clusters
    of the top ``count * candidates_per_pick`` (``embeddings`` row i belongs to ``ids[i]``; the
    clustering is seeded with ``seed``)."""
    ranked = ranking["id"].astype(str).tolist()
    candidates = ranked[: count * max(candidates_per_pick, 1)]
    if (candidates_per_pick <= 1 or count <= 1 or len(candidates) <= count or embeddings is None
            or ranking["strategy"].iloc[0] == "random"):
        return ranked[:count]
    row = {image_id: index for index, image_id in enumerate(np.asarray(ids).astype(str))}
    features = embeddings[[row[image_id] for image_id in candidates]].astype(np.float32)
    # standardised, so that no feature channel dominates the distances by its scale alone
    features = (features - features.mean(axis=0)) / np.maximum(features.std(axis=0), 1e-6)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)
    _, clusters, _ = cv2.kmeans(features, count, None, criteria, 5, cv2.KMEANS_PP_CENTERS)
    chosen, seen = [], set()
    for image_id, cluster in zip(candidates, clusters.ravel()):   # candidates are best first
        if cluster not in seen:
            seen.add(cluster)
            chosen.append(image_id)
    # k-means can leave a cluster empty (identical embeddings): fill up with the best of the rest
    chosen += [image_id for image_id in candidates if image_id not in chosen][: count - len(chosen)]
    return [image_id for image_id in ranked if image_id in set(chosen)]


def image_errors(truth: np.ndarray, probabilities: np.ndarray, threshold: float, ignore=None) -> np.ndarray:
    """Per image ``1 - Dice`` of the thresholded ``(N, H, W)`` probabilities against the masks,
    leaving out the pixels where ``ignore`` is set (as the test Dice does)."""
    from activeseg.metrics import per_image_scores

    if ignore is not None:
        ignore = ignore.reshape(probabilities.shape)
    return 1.0 - per_image_scores(truth.reshape(probabilities.shape).astype(bool), probabilities > threshold,
                                  ignore)["dice"]


def score_error_agreement(scores: np.ndarray, errors: np.ndarray, count: int) -> dict:
    """``spearman``: rank correlation of ``scores`` with ``errors`` (ties share their mean rank;
    None when either is constant, the correlation being undefined); ``error_lift``: the mean error
    of the ``count`` top-scored images (ties broken by position) over the mean error of all (None
    when the model gets every image right)."""
    import pandas as pd

    scores, errors = np.asarray(scores, np.float64), np.asarray(errors, np.float64)
    spearman = None
    if len(scores) >= 2 and np.ptp(scores) > 0 and np.ptp(errors) > 0:
        ranks = pd.DataFrame({"score": scores, "error": errors}).rank()
        spearman = float(np.corrcoef(ranks["score"], ranks["error"])[0, 1])
    top = np.argsort(-scores, kind="stable")[:count]
    mean_error = float(errors.mean()) if len(errors) else 0.0
    lift = float(errors[top].mean()) / mean_error if mean_error > 0 and len(top) else None
    return {"spearman": spearman, "error_lift": lift}


def foreground_aware_pick(masks: np.ndarray, count: int, seed: int) -> list[int]:
    """nnActive's ``random_foreground``: indices of ``count`` of the items whose (oracle) ``masks``
    are (N, H, W[, 1]), drawn without replacement: ceil(count / 3) among the items holding
    foreground, half the rest among the items holding a foreground border pixel (a foreground pixel
    next to background, 4-neighbourhood, inside the item), the rest uniformly; a group with too few
    items leaves its share to the uniform draw. Seeded: the same masks and seed give the same picks."""
    foreground = np.asarray(masks).reshape(len(masks), masks.shape[1], masks.shape[2]) > 0
    padded = np.pad(foreground, ((0, 0), (1, 1), (1, 1)), mode="edge")   # the item's edge is no border
    inner = (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:])
    holds = {"foreground": foreground.any(axis=(1, 2)), "border": (foreground & ~inner).any(axis=(1, 2))}
    rng = np.random.default_rng(seed)
    count = min(count, len(foreground))
    shares = {"foreground": math.ceil(count / 3)}
    shares["border"] = math.ceil((count - shares["foreground"]) / 2)
    chosen: list[int] = []
    for group in ("foreground", "border"):
        candidates = np.flatnonzero(holds[group] & ~np.isin(np.arange(len(foreground)), chosen))
        take = min(shares[group], len(candidates), count - len(chosen))
        chosen += [int(index) for index in rng.choice(candidates, take, replace=False)]
    rest = np.setdiff1d(np.arange(len(foreground)), chosen)
    chosen += [int(index) for index in rng.choice(rest, count - len(chosen), replace=False)]
    return chosen
