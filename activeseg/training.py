"""Training: the input pipeline, losses from params, Keras callbacks, the best model by validation Dice.

The training images stay uint8 in memory and flow through a seeded ``tf.data`` pipeline that
shuffles, optionally cuts random crops (``train.crop_size``: cheaper steps, more of them),
normalises with the project's :class:`~activeseg.preprocess.Transform` and prefetches, so the
model never waits for data. Adam's rate is halved when validation Dice stalls, training stops
early when it stops improving, and the model written is the epoch with the best validation Dice.
With ``train.cascade`` the coarse stage is trained first, then frozen under the fine stage.

Per-epoch metrics go to MLflow through MLflow's own Keras callback (when a run is active) and to
a CSV table that DVC plots.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from activeseg.metrics import keras_dice
from activeseg.model import build_cascade, build_coarse, build_unet, load_model, save_model
from activeseg.params import TrainParams
from activeseg.preprocess import SplitArrays, Transform
from activeseg.runtime import keras, segmentation_models, tf

HISTORY_COLUMNS = ("epoch", "loss", "dice", "val_loss", "val_dice", "learning_rate")


def build_loss(expression: str):
    """``bce``, ``dice``, ``focal``, ``jaccard`` or a sum of them such as ``bce+dice``."""
    sm = segmentation_models()
    by_name = {"bce": sm.losses.BinaryCELoss, "dice": sm.losses.DiceLoss,
               "focal": sm.losses.BinaryFocalLoss, "jaccard": sm.losses.JaccardLoss}
    parts = [by_name[part.strip()]() for part in expression.split("+")]
    loss = parts[0]
    for part in parts[1:]:
        loss = loss + part
    return loss


def steps_per_epoch(params: TrainParams, images: int) -> int:
    """``train.steps_per_epoch``, or one pass over the training images when it is 0."""
    return params.steps_per_epoch or max(1, math.ceil(images / params.batch_size))


def training_dataset(train_set: SplitArrays, transform: Transform, params: TrainParams, seed: int) -> tf.data.Dataset:
    """Endless seeded batches: shuffle, random crop (if ``crop_size``), normalise, prefetch."""
    labeled = train_set.has_mask
    images, masks = train_set.images[labeled], train_set.masks[labeled]
    crop = params.crop_size if 0 < params.crop_size < transform.size else 0
    channels = transform.channels

    def prepare(index, example):
        image, mask = example
        image = transform.normalize_tensor(image)
        mask = tf.cast(mask, tf.float32)
        if crop:
            # A stateless crop keyed on (seed, position in the stream) is reproducible and differs per step.
            both = tf.image.stateless_random_crop(tf.concat([image, mask], axis=-1), (crop, crop, channels + 1),
                                                  seed=tf.stack([tf.constant(seed, tf.int64), index]))
            image, mask = both[..., :channels], both[..., channels:]
        return image, mask

    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat().enumerate()
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(params.batch_size).prefetch(tf.data.AUTOTUNE)


def validation_arrays(val_set: SplitArrays, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    labeled = val_set.has_mask
    return transform.normalize(val_set.images[labeled]), val_set.masks[labeled].astype(np.float32)


def _fit(model: keras.Model, params: TrainParams, epochs: int, data: tf.data.Dataset, steps: int,
         validation: tuple[np.ndarray, np.ndarray], checkpoint: Path, extra_callbacks=()) -> pd.DataFrame:
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=build_loss(params.loss),
                  metrics=[keras_dice()])
    callbacks = [
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_dice", mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=params.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="max", factor=0.5,
                                          patience=params.lr_patience, min_lr=params.learning_rate / 64),
        *extra_callbacks,
    ]
    history = model.fit(data, steps_per_epoch=steps, validation_data=validation,
                        validation_batch_size=params.batch_size, epochs=epochs, shuffle=False, callbacks=callbacks,
                        verbose=2)
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    return table[[column for column in HISTORY_COLUMNS if column in table.columns]]


def train(params: TrainParams, epochs: int, transform: Transform, train_set: SplitArrays,
          val_set: SplitArrays, model_path: str | Path, extra_callbacks=(), seed: int = 42) -> pd.DataFrame:
    """Fit a fresh model and write the best epoch's model to ``model_path``; returns the history
    (of the full-resolution stage, for a cascade)."""
    data = training_dataset(train_set, transform, params, seed)
    steps = steps_per_epoch(params, int(train_set.has_mask.sum()))
    validation = validation_arrays(val_set, transform)
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".checkpoint-") as scratch:
        if params.cascade:
            print(f"train: cascade stage 1 of 2, coarse U-Net at 1/{params.cascade_factor} resolution")
            _fit(build_coarse(params, transform.channels), params, epochs, data, steps, validation,
                 Path(scratch) / "coarse.keras")
            coarse = load_model(Path(scratch) / "coarse.keras")
            print("train: cascade stage 2 of 2, full-resolution U-Net fed the coarse probability map")
            model = build_cascade(params, transform.channels, coarse)
        else:
            model = build_unet(params, None, transform.channels)
        checkpoint = Path(scratch) / "best.keras"
        history = _fit(model, params, epochs, data, steps, validation, checkpoint, extra_callbacks)
        save_model(load_model(checkpoint), model_path)
    return history
