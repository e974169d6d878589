"""Training: each loss, the seeded input pipeline, the best model written, the cascade switch,
``__ignore__`` pixels left out of loss, validation Dice and crops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from activeseg.errors import ActivesegError
from activeseg.metrics import keras_dice, pack_targets
from activeseg.model import load_model
from activeseg.params import LOSSES, TrainParams, load_params
from activeseg.precision import Choice
from activeseg.preprocess import SplitArrays, Transform
from activeseg.runtime import seed_everything
from activeseg.training import (HISTORY_COLUMNS, TrainingRun, build_loss, stall_warning, steps_per_epoch, train,
                                training_dataset, training_summary, validation_arrays)

REPO = Path(__file__).resolve().parents[1]
TINY = TrainParams(architecture="unet_plain", plain_filters=4, batch_size=4, dropout=0.1, precision="float32")
TRANSFORM = Transform(32, 1, "zscore", (0.5,), (0.25,))


def _blobs(count: int, seed: int) -> SplitArrays:
    """Bright squares on a dark noisy background: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, 32, 32, 1), np.uint8)
    for index in range(count):
        row, col = rng.integers(2, 18, 2)
        masks[index, row:row + 12, col:col + 12] = 1
    images = np.clip(masks * 160 + rng.normal(50, 20, masks.shape), 0, 255).astype(np.uint8)
    return SplitArrays(np.array([f"b{seed}_{i}" for i in range(count)]), images, masks, np.ones(count, bool))


@pytest.mark.parametrize("expression", [*LOSSES, "bce+dice", "focal+jaccard"])
def test_each_loss_prefers_the_right_answer(expression):
    loss = build_loss(expression)
    truth = np.zeros((1, 8, 8, 1), np.float32)
    truth[:, 2:6, 2:6] = 1
    right = np.clip(truth, 0.05, 0.95)
    wrong = 1.0 - right
    assert float(loss(truth, right)) < float(loss(truth, wrong))
    assert np.isfinite(float(loss(truth, right)))


def test_input_pipeline_is_seeded_and_crops():
    data = _blobs(6, 0)
    params = dataclasses.replace(TINY, crop_size=16)
    first = [batch for batch, _ in zip(training_dataset(data, TRANSFORM, params, seed=3), range(3))]
    again = [batch for batch, _ in zip(training_dataset(data, TRANSFORM, params, seed=3), range(3))]
    other = [batch for batch, _ in zip(training_dataset(data, TRANSFORM, params, seed=4), range(3))]
    images, targets = first[0]
    masks = targets[..., :1]
    assert images.shape == (4, 16, 16, 1) and targets.shape == (4, 16, 16, 2)  # mask and ignore mask
    assert set(np.unique(masks.numpy())) <= {0.0, 1.0}
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.array_equal(first[0][0].numpy(), other[0][0].numpy())
    # the image and its mask are cropped at the same place: normalised foreground is bright
    foreground = masks.numpy().astype(bool)
    if foreground.any() and (~foreground).any():
        assert images.numpy()[foreground].mean() > images.numpy()[~foreground].mean()


def _rare_foreground(count: int = 20) -> SplitArrays:
    """64-px tiles of which only two hold a small lesion, in a corner: uniform 16-px crops rarely see it."""
    masks = np.zeros((count, 64, 64, 1), np.uint8)
    masks[0, 2:8, 2:8] = 1
    masks[1, 50:60, 54:62] = 1
    images = (masks * 200 + 20).astype(np.uint8)
    return SplitArrays(np.array([f"t{i}" for i in range(count)]), images, masks, np.ones(count, bool))


def _foreground_share(params: TrainParams, data: SplitArrays, batches: int = 50) -> float:
    masks = [targets.numpy()[..., 0] for _, (_, targets) in zip(range(batches),
                                                                  training_dataset(data, TRANSFORM, params, seed=3))]
    return float(np.concatenate(masks).any(axis=(1, 2)).mean())


def test_foreground_crop_fraction_raises_the_share_of_crops_with_foreground():
    data = _rare_foreground()
    uniform = dataclasses.replace(TINY, crop_size=16)
    assert _foreground_share(uniform, data) < 0.05                      # 2 of 20 tiles, 1-2% of their crops
    third = _foreground_share(dataclasses.replace(uniform, foreground_crop_fraction=1 / 3), data)
    assert 0.25 < third < 0.42                                           # 200 crops: about a third
    assert _foreground_share(dataclasses.replace(uniform, foreground_crop_fraction=1.0), data) == 1.0
    # without crops it draws the tiles that hold foreground; with none anywhere, it is uniform
    whole = dataclasses.replace(TINY, foreground_crop_fraction=0.5)
    assert 0.4 < _foreground_share(whole, data) < 0.65
    data.masks[:] = 0
    assert _foreground_share(dataclasses.replace(uniform, foreground_crop_fraction=0.5), data, batches=3) == 0.0


def test_foreground_crops_are_seeded_and_keep_the_ignore_mask_under_the_image():
    data = _rare_foreground()
    data.ignore = data.masks.copy()
    data.ignore[0] = 0                     # tile 1's lesion is all __ignore__: only tile 0's counts as foreground
    params = dataclasses.replace(TINY, crop_size=16, foreground_crop_fraction=1.0)
    first = [batch for batch, _ in zip(training_dataset(data, TRANSFORM, params, seed=3), range(2))]
    again = [batch for batch, _ in zip(training_dataset(data, TRANSFORM, params, seed=3), range(2))]
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    images, targets = (np.concatenate([batch[part].numpy() for batch in first]) for part in (0, 1))
    assert targets[..., 0].any(axis=(1, 2)).all() and not targets[..., 1].any()    # tile 0, every time
    np.testing.assert_array_equal(images[..., 0] > 0, targets[..., 0] > 0)          # image and mask cut alike


@pytest.mark.parametrize("expression", [*LOSSES, "bce+dice"])
def test_predictions_under_ignored_pixels_change_neither_loss_nor_validation_dice(expression):
    rng = np.random.default_rng(0)
    masks = (rng.random((2, 8, 8, 1)) < 0.4).astype(np.uint8)
    ignore = np.zeros_like(masks)
    ignore[:, 2:5, 2:6] = 1                       # over foreground and background alike
    targets = pack_targets(masks, ignore)
    predicted = rng.uniform(0.05, 0.95, masks.shape).astype(np.float32)
    under_ignore = np.where(ignore > 0, 1.0 - predicted, predicted).astype(np.float32)
    elsewhere = np.where((ignore == 0) & (masks > 0), 0.01, predicted).astype(np.float32)
    loss, dice = build_loss(expression), keras_dice()
    for function in (loss, dice):
        assert float(function(targets, under_ignore)) == float(function(targets, predicted))
        assert float(function(targets, elsewhere)) != float(function(targets, predicted))
    # no gradient flows from an ignored pixel
    import tensorflow as tf

    prediction = tf.Variable(predicted)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(targets), prediction)
    gradient = tape.gradient(value, prediction).numpy()
    assert not gradient[ignore > 0].any() and gradient[ignore == 0].any()


def test_crops_and_validation_carry_the_ignore_mask():
    data = _blobs(6, 0)
    data.ignore = data.masks.copy()               # ignore exactly the foreground: the crop must keep them equal
    params = dataclasses.replace(TINY, crop_size=16)
    _, targets = next(iter(training_dataset(data, TRANSFORM, params, seed=3)))
    np.testing.assert_array_equal(targets.numpy()[..., 0], targets.numpy()[..., 1])
    assert targets.numpy()[..., 1].any()
    _, val_targets = validation_arrays(data, TRANSFORM)
    np.testing.assert_array_equal(val_targets, pack_targets(data.masks, data.ignore))


def test_steps_per_epoch_defaults_to_one_pass():
    assert steps_per_epoch(TINY, 10) == 3
    assert steps_per_epoch(dataclasses.replace(TINY, steps_per_epoch=7), 10) == 7


def test_train_learns_and_writes_the_best_model(tmp_path):
    seed_everything(1)
    params = dataclasses.replace(TINY, steps_per_epoch=6, learning_rate=0.01)
    history = train(params, 3, TRANSFORM, _blobs(12, 0), _blobs(4, 1), tmp_path / "m.keras", seed=1).history
    assert list(history.columns) == [column for column in HISTORY_COLUMNS if column != "val_dice_smoothed"]
    assert len(history) == 3
    model = load_model(tmp_path / "m.keras")
    # the BN statistics settle within a few steps, so validation is not far behind training
    assert history["val_dice"].max() > 0.5
    val = _blobs(4, 1)
    predicted = model.predict(TRANSFORM.normalize(val.images), verbose=0) > 0.5
    dice = 2 * (predicted & (val.masks > 0)).sum() / (predicted.sum() + val.masks.sum())
    assert dice == pytest.approx(history["val_dice"].max(), abs=0.05)  # the best epoch was kept


@pytest.mark.parametrize("val_dice, improved", [([0.3, 0.3, 0.2], False), ([0.3], False), ([0.3, 0.2, 0.5], True)])
def test_a_validation_dice_that_never_rose_is_reported(val_dice, improved):
    import pandas as pd

    history = pd.DataFrame({"epoch": range(1, len(val_dice) + 1), "val_dice": val_dice})
    summary = training_summary(TrainingRun(history, "ceiling", 3 * len(val_dice), Choice("float32", "test")), 12)
    assert summary["val_dice_improved"] is improved
    assert summary["best_val_dice"] == max(val_dice) and summary["best_epoch"] == 1 + val_dice.index(max(val_dice))
    warning = stall_warning(summary)
    assert (warning is None) == improved
    if not improved:
        assert warning.startswith("train: warning:")
        assert ("`epochs`" if len(val_dice) == 1 else "`train.learning_rate`") in warning


def test_training_is_repeatable_with_the_same_seed(tmp_path):
    params = dataclasses.replace(TINY, steps_per_epoch=2, crop_size=16)
    histories = []
    for run in range(2):
        seed_everything(5)
        histories.append(train(params, 1, TRANSFORM, _blobs(6, 0), _blobs(2, 1), tmp_path / f"{run}.keras",
                               seed=5).history)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)


def test_cascade_switch_trains_both_stages(tmp_path, capsys):
    seed_everything(2)
    params = dataclasses.replace(TINY, cascade=True, cascade_factor=2, steps_per_epoch=2)
    train(params, 1, TRANSFORM, _blobs(6, 0), _blobs(2, 1), tmp_path / "cascade.keras", seed=2)
    assert "cascade stage 2 of 2" in capsys.readouterr().out
    model = load_model(tmp_path / "cascade.keras")
    assert model.get_layer("coarse_stage").trainable is False
    assert model.get_layer("mc_dropout") is not None


@pytest.mark.parametrize("overrides, key", [
    ({"train": {"crop_size": 24, "architecture": "unet_plain"}}, "train.crop_size"),
    ({"preprocess": {"size": 64}, "train": {"architecture": "sm_unet", "cascade": True, "cascade_factor": 4}},
     "preprocess.size"),  # 64 is not a multiple of 128
    ({"train": {"architecture": "deeplab"}}, "train.architecture"),
    ({"train": {"batchnorm_momentum": 1.0}}, "train.batchnorm_momentum"),
    ({"train": {"foreground_crop_fraction": 1.5}}, "train.foreground_crop_fraction"),
])
def test_bad_train_params_name_the_key(overrides, key):
    import yaml

    from activeseg.params import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        raw[section].update(values)
    with pytest.raises(ActivesegError, match=key.replace(".", r"\.")):
        parse_params(raw)


def test_benchmark_params_file_is_a_valid_params_file():
    params = load_params(REPO / "bench" / "params-isbi.yaml")
    assert params.train.architecture == "unet_plain" and params.preprocess.size == 256


def test_an_explicit_epochs_trains_exactly_that_many_and_says_what_stopped_it(tmp_path):
    seed_everything(3)
    params = dataclasses.replace(TINY, steps_per_epoch=2, early_stopping_patience=1, lr_patience=1)
    run = train(params, 3, TRANSFORM, _blobs(6, 0), _blobs(2, 1), tmp_path / "m.keras", seed=3, on_plateau=False)
    assert len(run.history) == 3 and run.stopped_by == "ceiling" and run.steps_trained == 6
    summary = training_summary(run, 6)
    assert (summary["stopped_by"], summary["steps_trained"], summary["precision"]) == ("ceiling", 6, "float32")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_each_precision_trains_saves_loads_and_predicts_in_float32(tmp_path, precision):
    from activeseg.runtime import keras

    seed_everything(4)
    params = dataclasses.replace(TINY, steps_per_epoch=4, learning_rate=0.01, precision=precision)
    run = train(params, 2, TRANSFORM, _blobs(12, 0), _blobs(4, 1), tmp_path / "m.keras", seed=4)
    assert run.precision.policy == precision
    assert keras.config.dtype_policy().name == "float32"  # the format was set for the run only
    model = load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in model._flatten_layers() if hasattr(layer, "dtype_policy")} \
        == {"float32"}  # loads and predicts the same on a CPU without bfloat16
    val = _blobs(4, 1)
    probabilities = model.predict(TRANSFORM.normalize(val.images), verbose=0)
    assert probabilities.dtype == np.float32
    predicted = probabilities > 0.5
    dice = 2 * (predicted & (val.masks > 0)).sum() / (predicted.sum() + val.masks.sum())
    assert dice == pytest.approx(run.history["val_dice"].max(), abs=0.05)  # the best epoch, in float32


@pytest.mark.parametrize("with_example", [True, False])
def test_the_training_step_is_traced_once_when_compiled_with_an_example_batch(with_example):
    # tf.function runs train_step's Python only while tracing: each call below is one trace
    from activeseg.model import build_unet
    from activeseg.runtime import tf
    from activeseg.training import compiled, example_batch

    seed_everything(0)
    images = np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32)
    targets = pack_targets((images > 0.5).astype(np.float32), np.zeros_like(images))
    model = build_unet(TINY, 32, 1)
    model = compiled(model, TINY, example_batch((images, targets)) if with_example else None)
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: (traces.append(1), train_step(data))[1]
    model.fit(tf.data.Dataset.from_tensor_slices((images, targets)).batch(4).repeat(), steps_per_epoch=2,
              epochs=1, verbose=0)
    # without the example Keras creates the optimizer's and metrics' variables in a first trace
    assert len(traces) == (1 if with_example else 2)



def test_with_val_dice_smoothing_the_kept_epoch_is_the_best_moving_average(tmp_path):
    params = dataclasses.replace(TINY, val_dice_smoothing=0.5, steps_per_epoch=2)
    run = train(params, 3, TRANSFORM, _blobs(8, 0), _blobs(4, 1), tmp_path / "model.keras", seed=0)
    smoothed, raw = run.history["val_dice_smoothed"], run.history["val_dice"]
    assert smoothed.iloc[0] == pytest.approx(raw.iloc[0])
    assert smoothed.iloc[1] == pytest.approx(0.5 * raw.iloc[0] + 0.5 * raw.iloc[1])
    summary = training_summary(run, 8)
    assert summary["best_epoch"] == int(run.history.loc[smoothed.idxmax(), "epoch"])
    assert "val_dice_smoothed" not in train(TINY, 1, TRANSFORM, _blobs(8, 0), _blobs(4, 1),
                                            tmp_path / "plain.keras", seed=0).history
