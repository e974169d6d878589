"""Evaluate: the stage's outputs, their agreement with scikit-learn, MLflow logging, overlays."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score, precision_score, recall_score

from activeseg.evaluation import (COLOURS, CURVE_THRESHOLDS, IGNORED_GREY, evaluate, failure_warning, overlay,
                                  threshold_table, write_overlays)
from activeseg.imageio import read_image, write_png
from activeseg.preprocess import SplitArrays, Transform, load_split_arrays, save_arrays
from conftest import REPO_ROOT, project_env, tiny_params_dict


def synthetic_test_split(count=5, size=32, seed=1) -> SplitArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size, 1), np.uint8)
    for index in range(count - 1):  # the last image has an empty mask
        y, x = rng.integers(0, size - 10, 2)
        masks[index, y:y + 10, x:x + 10] = 1
    return SplitArrays(np.array([f"img{i}" for i in range(count)]), images, masks, np.ones(count, bool))


def test_overlay_colours_true_false_positives_and_negatives():
    truth = np.zeros((16, 16), bool)
    predicted = np.zeros((16, 16), bool)
    truth[0:8, 0:8] = True        # top-left: truth
    predicted[0:8, 4:12] = True   # overlaps columns 4..7 (TP); 8..11 false positive; 0..3 false negative
    picture = overlay(np.full((16, 16, 3), 128, np.uint8), truth, predicted, "caption")
    scale = 10                    # 16 px panels are enlarged to at least 160 px
    header, panel_width, gap = 40, 16 * scale, 4
    assert picture.shape == (header + 16 * scale, 3 * panel_width + 2 * gap, 3)

    def prediction_pixel(row, column):
        return picture[header + row * scale + 5, 2 * (panel_width + gap) + column * scale + 5].astype(int)

    for (row, column), name in (((2, 5), "TP"), ((2, 10), "FP"), ((2, 1), "FN")):
        pixel = prediction_pixel(row, column)
        assert int(np.argmax(pixel)) == int(np.argmax(COLOURS[name])), (name, pixel)
    assert prediction_pixel(12, 12).tolist() == [128, 128, 128]  # true negative: the image itself
    ignored = np.zeros((16, 16), bool)
    ignored[:, 8:] = True         # the false positives' columns and a true negative's
    picture = overlay(np.full((16, 16, 3), 20, np.uint8), truth, predicted, "caption", ignored)
    for row, column in ((2, 10), (12, 12)):  # left out of the metrics: grey, not red
        expected = (0.4 * 20 + 0.6 * np.array(IGNORED_GREY)).astype(np.uint8)
        assert prediction_pixel(row, column).tolist() == expected.tolist()
    assert int(np.argmax(prediction_pixel(2, 5))) == int(np.argmax(COLOURS["TP"]))


def test_overlays_worst_and_best_named_by_rank(tmp_path):
    split = synthetic_test_split()
    probabilities = np.where(split.masks[..., 0] > 0, 0.9, 0.1).astype(np.float32)
    probabilities[0] = 0.9  # image 0 over-segmented: the worst
    _, table = evaluate(split.ids, split.masks, probabilities, 0.5)
    write_overlays(tmp_path / "overlays", table, split.ids, split.images, split.masks, probabilities, 0.5, 2)
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == [
        "best1.png", "best2.png", "worst1.png", "worst2.png"]
    assert table["id"].iloc[0] == "img0" and table["dice"].is_monotonic_increasing
    assert read_image(tmp_path / "overlays" / "worst1.png").shape[2] == 3
    write_overlays(tmp_path / "all", table, split.ids, split.images, split.masks, probabilities, 0.5, 50)
    assert len(list((tmp_path / "all").iterdir())) == 2 * len(split.ids)  # capped at the images there are


def test_trivial_baseline_is_the_better_of_all_foreground_and_all_background():
    split = synthetic_test_split()
    exact = split.masks[..., 0].astype(np.float32)
    summary, _ = evaluate(split.ids, split.masks, exact, 0.5)
    assert summary["beats_trivial"] is True and failure_warning(summary) is None
    empty = np.zeros_like(split.masks)  # all background is a perfect score on empty masks
    summary, _ = evaluate(split.ids, empty, np.full(exact.shape, 0.1, np.float32), 0.5)
    assert summary["trivial_dice"] == 1.0 and summary["beats_trivial"] is False


def foreground_everywhere_model(path, size=32, channels=3):
    """A model that learned nothing: probability ~1 at every pixel."""
    import keras

    from activeseg.model import save_model

    model = keras.Sequential([keras.Input((size, size, channels)),
                              keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer="zeros",
                                                  bias_initializer=keras.initializers.Constant(5.0))])
    save_model(model, path)
    return path


def test_threshold_table_is_the_curve_dvc_plots():
    split = synthetic_test_split()
    probabilities = np.random.default_rng(2).random(split.masks.shape[:3]).astype(np.float32)
    table = threshold_table(split.masks, probabilities)
    assert list(table.columns) == ["threshold", "precision", "recall", "f1"]
    assert table["threshold"].tolist() == list(CURVE_THRESHOLDS)
    row = table[table["threshold"] == 0.5].iloc[0]
    truth, predicted = split.masks.ravel(), (probabilities > 0.5).ravel()
    assert row["precision"] == pytest.approx(precision_score(truth, predicted), abs=1e-6)
    assert row["recall"] == pytest.approx(recall_score(truth, predicted), abs=1e-6)


def test_probabilities_are_the_models_without_tracing_a_predict_graph(untrained_model):
    """model.predict traces a graph first, which cost the evaluate stage more than predicting a
    small test set: the batches go through the model directly, with the same probabilities."""
    from activeseg.evaluation import predict_probabilities
    from activeseg.model import load_model

    model = load_model(untrained_model[0])
    images = np.random.default_rng(0).random((5, 32, 32, 3), np.float32)
    probabilities = predict_probabilities(model, images, batch_size=2)
    assert model.predict_function is None  # nothing traced
    assert probabilities.shape == (5, 32, 32)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0)[..., 0], atol=1e-6)


def test_the_evaluate_stages_test_maps_trace_no_predict_graph(untrained_model, tmp_path):
    from activeseg.imageio import write_png
    from activeseg.model import load_model
    from activeseg.predict import split_probability_maps

    model_path, stats_path = untrained_model
    model, transform = load_model(model_path), Transform.load(stats_path)
    split = synthetic_test_split(count=3)
    for folder, arrays in (("images", split.images), ("masks", split.masks[..., 0] * 255)):
        for image_id, array in zip(split.ids, arrays):
            write_png(tmp_path / folder / f"{image_id}.png", array)
    maps = list(split_probability_maps(model, transform, split, tmp_path, batch_size=2))
    assert model.predict_function is None  # nothing traced
    expected = model.predict(transform.normalize(split.images), verbose=0)[..., 0]
    # batches of 2 against one of 3: the kernels sum in another order
    np.testing.assert_allclose(np.stack([entry[-1] for entry in maps]), expected, atol=1e-5)


@pytest.fixture
def evaluate_inputs(tmp_path, untrained_model):
    """A folder with params.yaml, data/prepared/{stats.json,test.npz}, a model, a run record."""
    model_path, stats_path = untrained_model
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(evaluate__overlays=2)))
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "stats.json").write_text(stats_path.read_text())
    split = synthetic_test_split()
    split.ignore[:, :16, :16] = 1  # an __ignore__ region in every image
    save_arrays(prepared / "test.npz", split)
    write_ingested(tmp_path / "data" / "ingested", split)
    return tmp_path, model_path


def write_ingested(folder, split: SplitArrays) -> None:
    """The split's images, masks and __ignore__ masks as ingest writes them (what evaluate reads at
    the original size)."""
    for index, image_id in enumerate(split.ids):
        write_png(folder / "images" / f"{image_id}.png", split.images[index])
        write_png(folder / "masks" / f"{image_id}.png", split.masks[index, ..., 0] * 255)
        if split.ignore[index].any():
            write_png(folder / "ignore" / f"{image_id}.png", split.ignore[index, ..., 0] * 255)


def run_evaluate_stage(folder, model_path, env):
    command = [sys.executable, str(REPO_ROOT / "stages" / "evaluate.py"), "--prepared", "data/prepared",
               "--ingested", "data/ingested",
               "--model", str(model_path), "--run-record", "run.json", "--metrics", "metrics/evaluate.json",
               "--per-image", "metrics/per_image.csv", "--curve", "metrics/threshold_curve.csv",
               "--overlays", "metrics/overlays"]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_evaluate_stage_outputs_agree_with_sklearn_and_land_in_the_mlflow_run(evaluate_inputs):
    from mlflow import MlflowClient

    from activeseg.model import load_model

    folder, model_path = evaluate_inputs
    store = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.create_experiment("activeseg", artifact_location=(folder / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id)
    (folder / "run.json").write_text(json.dumps({"run_id": run_id}))
    env = {**project_env(REPO_ROOT), "MLFLOW_TRACKING_URI": store}

    result = run_evaluate_stage(folder, model_path, env)
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((folder / "metrics" / "evaluate.json").read_text())
    per_image = pd.read_csv(folder / "metrics" / "per_image.csv")
    transform = Transform.load(folder / "data" / "prepared" / "stats.json")
    test = load_split_arrays(folder / "data" / "prepared", "test")
    predicted = load_model(model_path).predict(transform.normalize(test.images), verbose=0)[..., 0] > 0.5
    counted = test.ignore[..., 0] == 0  # metrics and curve leave the __ignore__ regions out
    assert summary["precision"] != pytest.approx(precision_score(test.masks.ravel(), predicted.ravel()), abs=1e-3)
    truth, predicted = test.masks[..., 0][counted], predicted[counted]
    assert summary["dice"] == pytest.approx(f1_score(truth, predicted, zero_division=0), abs=1e-6)
    assert summary["precision"] == pytest.approx(precision_score(truth, predicted, zero_division=0), abs=1e-6)
    assert summary["images"] == 5 and set(per_image["id"]) == set(test.ids)
    assert list(per_image.columns) == ["id", "dice", "f1", "precision", "recall", "iou", "foreground_fraction"]
    assert per_image["dice"].is_monotonic_increasing  # worst first
    curve = pd.read_csv(folder / "metrics" / "threshold_curve.csv")
    assert len(curve) == len(CURVE_THRESHOLDS)
    assert curve.loc[curve["threshold"] == 0.5, "recall"].item() == pytest.approx(
        recall_score(truth, predicted, zero_division=0), abs=1e-6)
    assert len(list((folder / "metrics" / "overlays").glob("*.png"))) == 4

    run = client.get_run(run_id)
    assert run.data.metrics["test_dice"] == pytest.approx(summary["dice"], abs=1e-6)
    assert run.data.metrics["test_trivial_dice"] == pytest.approx(summary["trivial_dice"], abs=1e-6)
    logged = {item.path for item in client.list_artifacts(run_id, "evaluation")}
    assert logged >= {"evaluation/per_image.csv", "evaluation/threshold_curve.csv",
                      "evaluation/threshold_curve.png", "evaluation/overlays"}
    overlays = {item.path for item in client.list_artifacts(run_id, "evaluation/overlays")}
    assert "evaluation/overlays/worst1.png" in overlays and "evaluation/overlays/best2.png" in overlays


def test_evaluate_stage_without_a_model_is_one_line_naming_it(evaluate_inputs):
    folder, _ = evaluate_inputs
    (folder / "run.json").write_text(json.dumps({"run_id": None}))
    result = run_evaluate_stage(folder, folder / "models" / "missing.keras", project_env(REPO_ROOT))
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "missing.keras" in last_line and "dvc repro train" in last_line
    assert not (folder / "metrics" / "evaluate.json").exists()


def test_a_model_predicting_foreground_everywhere_is_reported_as_a_failure(evaluate_inputs, tmp_path):
    from mlflow import MlflowClient

    folder, _ = evaluate_inputs
    model_path = foreground_everywhere_model(tmp_path / "everywhere.keras")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("activeseg")).info.run_id
    client.set_terminated(run_id)
    (folder / "run.json").write_text(json.dumps({"run_id": run_id}))
    result = run_evaluate_stage(folder, model_path, {**project_env(REPO_ROOT), "MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((folder / "metrics" / "evaluate.json").read_text())
    assert summary["dice"] == pytest.approx(summary["trivial_dice"]) and summary["beats_trivial"] is False
    warning = [line for line in result.stdout.splitlines() if line.startswith("evaluate: warning:")]
    assert len(warning) == 1 and "trivial baseline" in warning[0]
    assert all(param in warning[0] for param in ("`epochs`", "`train.learning_rate`", "`train.loss"))
    run = client.get_run(run_id)
    assert run.data.tags["beats_trivial"] == "false" and "test_beats_trivial" not in run.data.metrics


def test_evaluate_stage_scores_the_upsampled_prediction_against_the_original_masks(evaluate_inputs):
    """Originals of 64 px, model input 32 px: the truth is not downsampled (its 1-pixel lines would
    change), the prediction is upsampled to 64 px and scored there."""
    import cv2

    from activeseg.model import load_model

    folder, model_path = evaluate_inputs
    transform = Transform.load(folder / "data" / "prepared" / "stats.json")
    originals = synthetic_test_split(count=4, size=64, seed=3)
    originals.masks[:, ::5, :, 0] = 1  # thin lines: resizing them to 32 px would keep every other one
    originals.ignore[:, :, :8] = 1
    def resized(masks):
        return np.stack([transform.resize_mask(mask[..., 0] * 255) for mask in masks])

    prepared = SplitArrays(originals.ids, np.stack([transform.prepare_image(image) for image in originals.images]),
                           resized(originals.masks), originals.has_mask, resized(originals.ignore))
    save_arrays(folder / "data" / "prepared" / "test.npz", prepared)
    write_ingested(folder / "data" / "ingested", originals)
    (folder / "run.json").write_text(json.dumps({"run_id": None}))
    params = tiny_params_dict(evaluate__overlays=1)
    params["tracking"]["enabled"] = False
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_evaluate_stage(folder, model_path, project_env(REPO_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]

    small = load_model(model_path).predict(transform.normalize(prepared.images), verbose=0)[..., 0]
    upsampled = np.stack([cv2.resize(p, (64, 64), interpolation=cv2.INTER_LINEAR) for p in small]) > 0.5
    counted = originals.ignore[..., 0] == 0
    truth = originals.masks[..., 0]
    summary = json.loads((folder / "metrics" / "evaluate.json").read_text())
    assert summary["dice"] == pytest.approx(f1_score(truth[counted], upsampled[counted], zero_division=0), abs=1e-6)
    per_image = pd.read_csv(folder / "metrics" / "per_image.csv")
    expected_fraction = (truth & counted).sum(axis=(1, 2)) / counted.sum(axis=(1, 2))
    assert sorted(per_image["foreground_fraction"]) == pytest.approx(sorted(expected_fraction))
    worst = read_image(folder / "metrics" / "overlays" / "worst1.png")
    assert worst.shape[1] == 3 * 64 * 3 + 2 * 4  # 64 px panels, enlarged 3x to reach 160 px
