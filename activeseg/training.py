"""Training: the input pipeline, losses from params, Keras callbacks, the best model by validation Dice.

The training images stay uint8 in memory and flow through a seeded ``tf.data`` pipeline that
shuffles, optionally cuts random crops (``train.crop_size``: cheaper steps, more of them;
``train.foreground_crop_fraction`` of them around foreground, for rare foreground), normalises with the project's :class:`~activeseg.preprocess.Transform` and prefetches, so the
model never waits for data. Targets carry the ``__ignore__`` mask as a second channel (see
:func:`activeseg.metrics.pack_targets`), so loss and validation Dice leave those pixels out and
random crops cut mask and ignore mask together. Training runs until validation Dice stops
rising (the one rule of :mod:`activeseg.convergence`), in the number format of
:mod:`activeseg.precision`, and the model written is the epoch with the best validation Dice.
With ``train.cascade`` the coarse stage is trained first, then frozen under the fine stage.

Per-epoch metrics go to MLflow through MLflow's own Keras callback (when a run is active) and to
a CSV table that DVC plots; :func:`training_summary` adds ``val_dice_improved``, false (with
:func:`stall_warning` naming causes and params) when validation Dice never rose above its first epoch's. The model is built and trained under the ``train.distribute``
strategy (see :mod:`activeseg.distribute`). With ``train.resume`` the run backs itself up every
epoch (see :func:`resumable_fit`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from activeseg.convergence import MIN_DELTA, SMOOTHED, Convergence, StoppingRule
from activeseg.distribute import make_strategy
from activeseg.metrics import keras_dice, pack_targets, unpack_targets
from activeseg.model import build_cascade, build_coarse, build_unet, load_model, save_model
from activeseg.params import TrainParams
from activeseg.precision import Choice, float32_copy
from activeseg.precision import choose as choose_precision
from activeseg.precision import policy as precision_policy
from activeseg.preprocess import SplitArrays, Transform
from activeseg.runtime import keras, seed_everything, segmentation_models, tf

HISTORY_COLUMNS = ("epoch", "loss", "dice", "val_loss", "val_dice", SMOOTHED, "learning_rate")


def build_loss(expression: str):
    """``bce``, ``dice``, ``focal``, ``jaccard`` or a sum of them such as ``bce+dice``, of packed
    targets (:func:`activeseg.metrics.pack_targets`): ignored pixels weigh nothing."""
    sm = segmentation_models()
    by_name = {"bce": sm.losses.BinaryCELoss, "dice": sm.losses.DiceLoss,
               "focal": sm.losses.BinaryFocalLoss, "jaccard": sm.losses.JaccardLoss}
    parts = [by_name[part.strip()]() for part in expression.split("+")]
    summed = parts[0]
    for part in parts[1:]:
        summed = summed + part

    def loss(y_true, y_pred):
        return summed(*unpack_targets(y_true, y_pred))

    return loss


def steps_per_epoch(params: TrainParams, images: int) -> int:
    """``train.steps_per_epoch``, or one pass over the training images when it is 0."""
    return params.steps_per_epoch or max(1, math.ceil(images / params.batch_size))


def training_dataset(train_set: SplitArrays, transform: Transform, params: TrainParams, seed: int,
                     prefetch_batches: int = 1) -> tf.data.Dataset:
    """Endless seeded batches: shuffle, random crop (if ``crop_size``), normalise, prefetch.
    With ``foreground_crop_fraction`` that share of the samples comes from the images (tiles) that
    hold foreground, each cropped around one of its foreground pixels (see :func:`_foreground_share`)."""
    labeled = train_set.has_mask
    images = train_set.images[labeled]
    # packed as uint8 (not pack_targets' float32): the set stays as small in memory as the arrays
    targets = np.concatenate([train_set.masks[labeled], train_set.ignore[labeled]], axis=-1)
    crop = params.crop_size if 0 < params.crop_size < images.shape[1] else 0  # images or tiles
    channels = transform.channels
    height, width = images.shape[1:3]

    def foreground_crop(image_and_target, index):
        # nnU-Net's foreground oversampling: a random foreground pixel (not under __ignore__) is the
        # crop's centre, moved inwards where the crop would leave the image
        target = image_and_target[..., channels:]
        foreground = tf.cast(tf.where((target[..., 0] > 0) & (target[..., 1] == 0)), tf.int32)
        pick = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64) + 1, index]),
                                           maxval=tf.shape(foreground)[0], dtype=tf.int32)
        top_left = tf.minimum(tf.maximum(foreground[pick] - crop // 2, 0), [height - crop, width - crop])
        return tf.slice(image_and_target, tf.concat([top_left, [0]], axis=0), [crop, crop, channels + 2])

    def prepare(index, example):
        image, target, centred = example
        image = transform.normalize_tensor(image)
        target = tf.cast(target, tf.float32)
        if crop:
            both = tf.concat([image, target], axis=-1)
            # A stateless crop keyed on (seed, position in the stream) is reproducible and differs per step.
            uniform = lambda: tf.image.stateless_random_crop(  # noqa: E731
                both, (crop, crop, channels + 2), seed=tf.stack([tf.constant(seed, tf.int64), index]))
            both = tf.cond(centred, lambda: foreground_crop(both, index), uniform) if share else uniform()
            image, target = both[..., :channels], both[..., channels:]
        return image, target

    def endless(images: np.ndarray, targets: np.ndarray, centred: bool, stream_seed: int) -> tf.data.Dataset:
        dataset = tf.data.Dataset.from_tensor_slices((images, targets))
        dataset = dataset.shuffle(len(images), seed=stream_seed, reshuffle_each_iteration=True).repeat()
        return dataset.map(lambda image, target: (image, target, tf.constant(centred)))

    share, holding = _foreground_share(params.foreground_crop_fraction, targets)
    dataset = endless(images, targets, False, seed)
    if share:
        dataset = tf.data.Dataset.sample_from_datasets(
            [dataset, endless(images[holding], targets[holding], True, seed + 1)],
            weights=[1.0 - share, share], seed=seed)
    dataset = dataset.enumerate()
    # One serial map thread and no autotuning: on a 2-core CPU AUTOTUNE's extra threads took
    # cores from the training step itself (pipeline at 0.72x in-memory speed, 1.06x without them).
    dataset = dataset.map(prepare, num_parallel_calls=1, deterministic=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    dataset = dataset.batch(params.batch_size)
    return (dataset.prefetch(prefetch_batches) if prefetch_batches else dataset).with_options(options)


def _foreground_share(fraction: float, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """The share of samples to draw from the images holding foreground, and which those are: the
    fraction asked for, or 0 when no image holds any."""
    holding = ((targets[..., 0] > 0) & (targets[..., 1] == 0)).any(axis=(1, 2))
    return (fraction if holding.any() else 0.0), holding


def validation_arrays(val_set: SplitArrays, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images and packed targets (mask and ignore mask) of the labeled images."""
    labeled = val_set.has_mask
    return transform.normalize(val_set.images[labeled]), pack_targets(val_set.masks[labeled], val_set.ignore[labeled])


def compiled(model: keras.Model, params: TrainParams, example: tuple[np.ndarray, np.ndarray] | None = None
             ) -> keras.Model:
    """``model`` compiled as every training compiles it: Adam, the loss of params, Dice; with an
    ``example`` batch (images, packed targets), its optimizer, loss and metrics built too."""
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=build_loss(params.loss),
                  metrics=[keras_dice()])
    if example is not None:
        # Without a tf.distribute strategy Keras creates Adam's slots and the metrics' variables
        # inside the first traced step, and tf.function then traces that step twice (the first
        # trace only to create them): the first epoch's start-up was twice what it need be (a
        # tiny U-Net: 3.9 s -> 2.1 s). Keras' own build from symbolic inputs (its fit does this
        # under a strategy) makes them up front.
        model._symbolic_build(data_batch=example)
    return model


def example_batch(validation: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One (image, packed target) of the validation arrays: the shapes :func:`compiled` builds for."""
    return validation[0][:1], validation[1][:1]


def _fit(model: keras.Model, params: TrainParams, rule: StoppingRule, data: tf.data.Dataset, steps: int,
         validation: tuple[np.ndarray, np.ndarray], checkpoint: Path, extra_callbacks=(),
         resumed: "Resumed | None" = None, who: str = "train") -> tuple[pd.DataFrame, str]:
    """Train under the convergence rule; the history table and what stopped the run."""
    resumed = resumed or Resumed(pd.DataFrame(), [])
    convergence = Convergence(rule, params.learning_rate, steps, who)
    best_so_far = resumed.best(rule.monitor)
    if convergence.rate_floor is not None and best_so_far is not None:
        convergence.rate_floor.best = best_so_far
    if convergence.smoother and rule.monitor in resumed.history and len(resumed.history):
        # the average goes on from the finished epochs (even where their best model was lost)
        convergence.smoother.average = float(resumed.history[rule.monitor].iloc[-1])
    callbacks = [
        *convergence.callbacks,  # first: with smoothing, the checkpoint reads the value it adds
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=rule.monitor, mode="max", save_best_only=True,
                                        initial_value_threshold=best_so_far),
        *extra_callbacks,
        *resumed.callbacks,
    ]
    history = compiled(model, params, example_batch(validation)).fit(
        data, steps_per_epoch=steps, validation_data=validation, validation_batch_size=params.batch_size,
        epochs=rule.ceiling, shuffle=False, callbacks=callbacks, verbose=2)
    table = pd.concat([resumed.history, pd.DataFrame(history.history)], ignore_index=True)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    stopped_by = convergence.stopped_by(len(table))
    if stopped_by == "plateau":
        wait = (f"{rule.lr_patience} epochs at the lowest learning rate"
                if convergence.rate_floor is not None and convergence.rate_floor.fired
                else f"{rule.patience} epochs")
        print(f"{who}: stopped by the plateau rule after {len(table)} epochs: validation Dice has not risen by "
              f"{MIN_DELTA} in {wait}", flush=True)
    return table[[column for column in HISTORY_COLUMNS if column in table.columns]], stopped_by


@dataclasses.dataclass
class TrainingRun:
    """What :func:`train` did: the history table (of the full-resolution stage for a cascade),
    what stopped it (``plateau``, ``ceiling`` or ``time_budget``), its steps and number format."""

    history: pd.DataFrame
    stopped_by: str
    steps_trained: int
    precision: Choice


def training_summary(run: TrainingRun, train_images: int) -> dict:
    """``metrics/train.json``: the best epoch, what stopped training and after how many steps, the
    number format, and whether validation Dice ever rose above its first epoch's (a run of one
    epoch cannot show that it did)."""
    history = run.history
    # the epoch whose model was kept: the best by the value the rule followed
    best = history.loc[history[SMOOTHED if SMOOTHED in history else "val_dice"].idxmax()]
    return {"best_val_dice": round(float(best["val_dice"]), 6), "best_epoch": int(best["epoch"]),
            "epochs_run": int(len(history)), "stopped_by": run.stopped_by, "steps_trained": run.steps_trained,
            "precision": run.precision.policy, "train_images": int(train_images),
            "val_dice_improved": bool(history["val_dice"].iloc[1:].gt(history["val_dice"].iloc[0]).any())}


def stall_warning(summary: dict) -> str | None:
    """One line naming the likely causes and the params to change when validation Dice never rose."""
    if summary["val_dice_improved"]:
        return None
    if summary["epochs_run"] == 1:
        return ("train: warning: one epoch only, so validation Dice cannot be seen to improve; raise `epochs` "
                "to know whether the model learns")
    return (f"train: warning: validation Dice never rose above its first epoch's in {summary['epochs_run']} epochs "
            f"(best {summary['best_val_dice']:.4f}): the model is not learning. Likely causes: a learning rate too "
            "high or too low (`train.learning_rate`), rare foreground (`train.loss: bce+dice` or `focal`), too few "
            "labeled or validation images (`split.initial_labeled`, `split.val_count`), early stopping too eager "
            "(`train.early_stopping_patience`) or masks that do not match their images (`ingest.mask_rule`)")


def train(params: TrainParams, epochs: int, transform: Transform, train_set: SplitArrays,
          val_set: SplitArrays, model_path: str | Path, extra_callbacks=(), seed: int = 42,
          strategy: "tf.distribute.Strategy | None" = None, on_plateau: bool = True) -> TrainingRun:
    """Fit a fresh model under the convergence rule (:mod:`activeseg.convergence`: at most
    ``epochs``, fewer on a plateau unless ``on_plateau`` is False, i.e. ``epochs`` was set
    explicitly) in ``train.precision`` (:mod:`activeseg.precision`), and write the best epoch's
    model, in float32, to ``model_path``. ``strategy``: one already made from
    ``params.distribute`` (a multi-worker one must exist before any TF op)."""
    strategy = strategy or make_strategy(params.distribute)
    data = training_dataset(train_set, transform, params, seed)
    steps = steps_per_epoch(params, int(train_set.has_mask.sum()))
    validation = validation_arrays(val_set, transform)
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(params, epochs, seed, transform, train_set, val_set)
    rule = StoppingRule.of(params, epochs, on_plateau)
    with strategy.scope(), \
            resumable_fit(model_path.parent / CHECKPOINT_DIR, fingerprint, params.resume) as (scratch, resumed):
        choice = choose_precision(params.precision,
                                  lambda: compiled(build_unet(params, None, transform.channels), params,
                                                   example_batch(validation)), data)
        seed_everything(seed)  # the probe built models: the run's own starts from the seed's state
        with precision_policy(choice.policy):
            if params.cascade:
                print(f"train: cascade stage 1 of 2, coarse U-Net at 1/{params.cascade_factor} resolution")
                _fit(build_coarse(params, transform.channels), params, rule, data, steps, validation,
                     Path(scratch) / "coarse.keras", who="train (coarse stage)")
                coarse = load_model(Path(scratch) / "coarse.keras")
                print("train: cascade stage 2 of 2, full-resolution U-Net fed the coarse probability map")
                model = build_cascade(params, transform.channels, coarse)
            else:
                model = build_unet(params, None, transform.channels)
            checkpoint = Path(scratch) / "best.keras"
            history, stopped_by = _fit(model, params, rule, data, steps, validation, checkpoint, extra_callbacks,
                                       resumed)
            best = load_model(checkpoint)
        save_model(float32_copy(best), model_path)
    return TrainingRun(history, stopped_by, int(len(history) * steps), choice)


# --- Checkpoints and resume (train.resume) ---------------------------------------------------
# DVC deletes a stage's outputs before running it, so the backup lives beside them in an
# undeclared, git-ignored folder that DVC leaves alone. Keras' own BackupAndRestore keeps the
# weights, optimizer state and epoch; CSVLogger keeps the finished epochs' history, so the
# resumed run's history table and best model cover the whole run (its MLflow run, a new one,
# has the curves from the resume on). A fingerprint of the train params, epochs, transform and
# arrays makes a backup from other params or data start afresh.

CHECKPOINT_DIR = "checkpoints"


class Resumed:
    """What a backup brings back: finished epochs' history, their best val Dice, the callbacks."""

    def __init__(self, history: pd.DataFrame, callbacks: list):
        self.history = history
        self.callbacks = callbacks
        self.best_saved = True  # False: no best model on disk, so the first resumed epoch saves one afresh

    def best(self, column: str) -> float | None:
        """The best ``column`` of the finished epochs, the value a new best model must beat (None: any)."""
        if not self.best_saved or column not in self.history or not len(self.history):
            return None
        return float(self.history[column].max())


def run_fingerprint(params: TrainParams, epochs: int, seed: int, transform: Transform, train_set: SplitArrays,
                    val_set: SplitArrays) -> str:
    digest = hashlib.sha256(json.dumps({"train": repr(params), "epochs": epochs, "seed": seed,
                                        "transform": repr(transform)},
                                       sort_keys=True).encode())
    for split in (train_set, val_set):
        for array in (split.images, split.masks, split.ignore):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def resumable_fit(directory: Path, fingerprint: str, resume: bool):
    """Yield ``(folder for the best model, Resumed)``. Without ``resume``, a throw-away folder.
    With it, ``directory`` survives a crash or kill and is deleted once training completes."""
    for leftover in directory.parent.glob(".checkpoint-*"):  # of a killed run (one stage writes here at a time)
        shutil.rmtree(leftover, ignore_errors=True)
    if not resume:
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".checkpoint-") as scratch:
            yield scratch, Resumed(pd.DataFrame(), [])
        return
    stamp = directory / "fingerprint.txt"
    if directory.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        print(f"train: {directory} holds a backup of other params or data; starting afresh")
        shutil.rmtree(directory)
    log, backup = directory / "history.csv", directory / "backup"
    history = pd.DataFrame()
    if log.is_file() and log.stat().st_size and (backup / "training_metadata.json").is_file():
        backed_up = json.loads((backup / "training_metadata.json").read_text())["epoch"]
        # a kill between the log line and the backup repeats that epoch: keep what the backup holds
        history = pd.read_csv(log)
        history = history[history["epoch"] < backed_up]
        print(f"train: resuming from the backup in {directory} after {len(history)} finished epochs")
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    if len(history):
        history.to_csv(log, index=False)
    else:
        log.unlink(missing_ok=True)
    callbacks = [keras.callbacks.CSVLogger(str(log), append=True),
                 keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True)]
    resumed = Resumed(history.drop(columns="epoch", errors="ignore"), callbacks)
    best = directory / "best.keras"
    if not (best.is_file() and zipfile.is_zipfile(best)):  # never saved, or killed while saving it:
        best.unlink(missing_ok=True)                        # the first resumed epoch saves it afresh
        resumed.best_saved = False
    yield directory, resumed
    shutil.rmtree(directory)
