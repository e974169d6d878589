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
