"""Training: losses from params, Keras callbacks, the best model by validation Dice.

Per-epoch metrics go to MLflow through MLflow's own Keras callback (when a run is active) and to
a CSV table that DVC plots. The model written is the epoch with the best validation Dice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from activeseg.metrics import keras_dice
from activeseg.model import build_unet, load_model, save_model
from activeseg.params import TrainParams
from activeseg.preprocess import SplitArrays, Transform
from activeseg.runtime import keras, segmentation_models

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


def train(params: TrainParams, epochs: int, transform: Transform, train_set: SplitArrays,
          val_set: SplitArrays, model_path: str | Path, extra_callbacks=()) -> pd.DataFrame:
    """Fit a fresh U-Net and write the best epoch's model to ``model_path``; returns the history."""
    model = build_unet(params, transform.size, transform.channels)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=build_loss(params.loss),
                  metrics=[keras_dice()])
    x_train, y_train = transform.normalize(train_set.images), train_set.masks.astype(np.float32)
    x_val, y_val = transform.normalize(val_set.images), val_set.masks.astype(np.float32)
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".checkpoint-") as scratch:
        checkpoint = Path(scratch) / "best.keras"
        callbacks = [
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_dice", mode="max", save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=params.early_stopping_patience),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                              patience=max(1, params.early_stopping_patience // 2)),
            *extra_callbacks,
        ]
        history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                            batch_size=params.batch_size, shuffle=True, callbacks=callbacks, verbose=2)
        save_model(load_model(checkpoint), model_path)
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    return table[[column for column in HISTORY_COLUMNS if column in table.columns]]
