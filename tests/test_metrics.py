"""Metrics: pooled and per-image scores agree with scikit-learn; the empty-mask convention holds."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from activeseg.evaluation import evaluate
from activeseg.metrics import per_image_scores, pooled_scores, threshold_curve


def sklearn_scores(truth: np.ndarray, predicted: np.ndarray, zero_division: float = 0.0) -> dict:
    y_true, y_pred = truth.ravel().astype(int), predicted.ravel().astype(int)
    kwargs = {"zero_division": zero_division}
    return {"precision": precision_score(y_true, y_pred, **kwargs), "recall": recall_score(y_true, y_pred, **kwargs),
            "f1": f1_score(y_true, y_pred, **kwargs), "dice": f1_score(y_true, y_pred, **kwargs),
            "iou": jaccard_score(y_true, y_pred, **kwargs)}


@pytest.fixture
def masks():
    rng = np.random.default_rng(0)
    truth = rng.random((6, 16, 16, 1)) < 0.3
    probabilities = np.clip(truth[..., 0] * 0.5 + rng.random((6, 16, 16)) * 0.6, 0, 1).astype(np.float32)
    return truth, probabilities


def test_pooled_scores_equal_sklearn_on_flattened_masks(masks):
    truth, probabilities = masks
    predicted = probabilities > 0.5
    ours = pooled_scores(truth[..., 0], predicted)
    for name, expected in sklearn_scores(truth, predicted).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12), name


def test_evaluate_summary_pooled_and_mean_equal_sklearn(masks):
    truth, probabilities = masks
    threshold = 0.6
    ids = np.array([f"img{i}" for i in range(len(truth))])
    summary, table = evaluate(ids, truth, probabilities, threshold)
    predicted = probabilities > threshold
    for name, expected in sklearn_scores(truth[..., 0], predicted).items():
        assert summary[name] == pytest.approx(expected, abs=1e-12), name
    per_image = [sklearn_scores(truth[i, ..., 0], predicted[i]) for i in range(len(truth))]
    for name in ("dice", "precision", "recall", "iou"):
        assert summary[f"mean_{name}"] == pytest.approx(np.mean([s[name] for s in per_image]), abs=1e-12)
    assert summary["trivial_dice"] == pytest.approx(f1_score(truth.ravel(), np.ones(truth.size, int)))
    assert summary["images"] == 6 and summary["threshold"] == threshold
    by_id = table.set_index("id")
    for i, image_id in enumerate(ids):
        assert by_id.loc[image_id, "dice"] == pytest.approx(per_image[i]["dice"])
        assert by_id.loc[image_id, "foreground_fraction"] == pytest.approx(truth[i].mean())


def test_threshold_curve_equals_sklearn_at_each_threshold(masks):
    truth, probabilities = masks
    thresholds = [0.1, 0.35, 0.5, 0.8, 0.99]
    curve = threshold_curve(truth, probabilities, thresholds)
    for index, threshold in enumerate(thresholds):
        expected = sklearn_scores(truth[..., 0], probabilities > threshold)
        for name in ("precision", "recall", "f1"):
            assert curve[name][index] == pytest.approx(expected[name], abs=1e-12), (name, threshold)
    assert np.all(np.diff(curve["recall"]) <= 0)  # recall can only fall as the threshold rises


@pytest.mark.parametrize("truth_on, predicted_on, expected", [
    (False, False, 1.0),   # nothing there, nothing predicted: perfect
    (False, True, 0.0),    # false alarm on an empty image
    (True, False, 0.0),    # everything missed
])
def test_empty_convention(truth_on, predicted_on, expected):
    truth = np.zeros((1, 8, 8), bool)
    predicted = np.zeros((1, 8, 8), bool)
    truth[0, 2:4, 2:4] = truth_on
    predicted[0, 2:5, 2:5] = predicted_on
    scores = per_image_scores(truth, predicted)
    pooled = pooled_scores(truth, predicted)
    for name in ("dice", "f1", "precision", "recall", "iou"):
        assert scores[name][0] == expected and pooled[name] == expected, name
    # the documented mapping: sklearn's zero_division=1 when both are empty, 0 otherwise
    zero_division = 1.0 if not (truth_on or predicted_on) else 0.0
    for name, value in sklearn_scores(truth, predicted, zero_division).items():
        assert pooled[name] == value, name


def test_per_image_mean_is_not_pooled_when_an_image_is_empty():
    truth = np.zeros((2, 4, 4), bool)
    truth[0, :2] = True           # image 0: 8 foreground pixels, found exactly
    predicted = truth.copy()
    predicted[1, 0, 0] = True     # image 1: empty, one false positive
    assert per_image_scores(truth, predicted)["dice"].tolist() == [1.0, 0.0]
    assert pooled_scores(truth, predicted)["dice"] == pytest.approx(16 / 17)


def _flipped(probabilities: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where, 1.0 - probabilities, probabilities).astype(np.float32)


def _every_metric(truth, probabilities, ignore) -> dict:
    ids = np.array([f"img{i}" for i in range(len(truth))])
    summary, table = evaluate(ids, truth, probabilities, 0.5, ignore)
    curve = threshold_curve(truth, probabilities, [0.2, 0.5, 0.8], ignore)
    return {**summary, **{f"table_{name}": table[name].tolist() for name in table.columns if name != "id"},
            **{f"curve_{name}": values.tolist() for name, values in curve.items()}}


def test_predictions_under_ignored_pixels_change_no_metric(masks):
    truth, probabilities = masks
    ignore = np.zeros(truth.shape, np.uint8)
    ignore[:, 4:10, 4:10] = 1                 # over foreground and background alike
    ignored, counted = ignore[..., 0].astype(bool), ~ignore[..., 0].astype(bool)
    scores = _every_metric(truth, probabilities, ignore)
    assert scores == _every_metric(truth, _flipped(probabilities, ignored), ignore)
    changed = _every_metric(truth, _flipped(probabilities, counted & (np.arange(16) < 3)), ignore)
    differing = {name for name in scores if scores[name] != changed[name]}
    assert differing >= {"dice", "f1", "precision", "recall", "iou", "mean_dice", "mean_iou", "table_dice",
                         "curve_precision", "curve_recall", "curve_f1"}
    # the ignored pixels are simply not there: sklearn on the counted pixels agrees
    predicted = probabilities > 0.5
    for name, expected in sklearn_scores(truth[..., 0][counted], predicted[counted]).items():
        assert scores[name] == pytest.approx(expected, abs=1e-12), name
    assert scores["trivial_dice"] == pytest.approx(f1_score(truth[..., 0][counted], np.ones(counted.sum(), int)))
    assert scores["table_foreground_fraction"][0] == pytest.approx(truth[0, ..., 0][counted[0]].mean())
