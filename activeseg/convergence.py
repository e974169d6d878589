"""When training ends: one rule for everything that trains (the train stage, every simulated round,
the simulation's full-pool reference, the benches).

Training runs until validation Dice has stopped rising: Adam's rate is halved after
``train.lr_patience`` epochs without a better validation Dice (by at least :data:`MIN_DELTA`),
then the run stops after ``train.early_stopping_patience`` such epochs, or sooner once the rate
is at its floor (:data:`MIN_LR_FRACTION` of the start) and ``train.lr_patience`` epochs there
bring no better Dice (:class:`RateFloorStop`: the rate would be lowered again but cannot, and
rises below the floor rate are too small to be worth their epochs): ``stopped_by: plateau``.
``epochs`` is the ceiling (``auto``: the plan's, high enough that the plateau, not the ceiling,
ends training on the reference data sets): reaching it is ``stopped_by: ceiling``. An explicit
``epochs`` trains exactly that many epochs (no plateau stop). ``train.time_budget`` (minutes)
ends a run at the first epoch end after which one more epoch would exceed it:
``stopped_by: time_budget``, said in one line. With ``train.val_dice_smoothing`` the rule (and the
train stage's choice of the model to keep) follows the exponential moving average of validation
Dice, :data:`SMOOTHED`, not each epoch's value.

:class:`Convergence` holds a run's rule and the Keras callbacks that carry it out (Keras' own
``EarlyStopping`` and ``ReduceLROnPlateau``, plus :class:`TimeBudget` and :class:`StepClock`,
which prints the expected time of the ceiling after a few measured steps), and afterwards says
what stopped the run.
"""

from __future__ import annotations

import dataclasses
import time

from activeseg.params import TrainParams
from activeseg.runtime import keras

MIN_DELTA = 1e-3          # a better validation Dice must beat the best by this much: noise below it
                          # would otherwise reset the patience for ever on a flat curve
MIN_LR_FRACTION = 1 / 64  # the rate is never halved below learning_rate / 64 (six halvings)
CLOCK_STEPS = 5           # steps timed (after the first, which traces the graph) for the estimate
STOPPED_BY = ("plateau", "ceiling", "time_budget")


@dataclasses.dataclass(frozen=True)
class StoppingRule:
    """``ceiling`` epochs at most; ``on_plateau`` False trains exactly ``ceiling`` (an explicit
    ``epochs``); ``time_budget_seconds`` 0 is none."""

    ceiling: int
    on_plateau: bool = True
    patience: int = 10
    lr_patience: int = 3
    time_budget_seconds: float = 0.0
    smoothing: float = 0.0

    @classmethod
    def of(cls, params: TrainParams, epochs: int, on_plateau: bool = True) -> "StoppingRule":
        budget = params.time_budget
        return cls(ceiling=int(epochs), on_plateau=on_plateau, patience=params.early_stopping_patience,
                   lr_patience=params.lr_patience,
                   time_budget_seconds=0.0 if budget == "auto" else float(budget) * 60,
                   smoothing=params.val_dice_smoothing)

    @property
    def monitor(self) -> str:
        """The logged value the rule and the best-model choice follow."""
        return SMOOTHED if self.smoothing else "val_dice"


SMOOTHED = "val_dice_smoothed"


class SmoothedDice(keras.callbacks.Callback):
    """Adds :data:`SMOOTHED` to each epoch's logs, before the callbacks after it read them: the
    exponential moving average of ``val_dice`` (``smoothing`` x the average so far + the rest x
    this epoch's)."""

    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing, self.average = smoothing, None

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None and "val_dice" in logs:
            value = float(logs["val_dice"])
            self.average = value if self.average is None else \
                self.smoothing * self.average + (1 - self.smoothing) * value
            logs[SMOOTHED] = self.average


class RateFloorStop(keras.callbacks.Callback):
    """Stops once ``patience`` epochs trained at the rate's ``floor`` have brought no better
    ``monitor`` (by ``min_delta``); a better value at the floor starts the count again. Placed
    before ReduceLROnPlateau, it reads the rate the epoch was trained with."""

    def __init__(self, monitor: str, floor: float, patience: int, min_delta: float = MIN_DELTA) -> None:
        super().__init__()
        self.monitor, self.floor, self.patience, self.min_delta = monitor, floor, patience, min_delta
        self.best, self.epochs_at_floor, self.fired = -float("inf"), 0, False

    def on_epoch_end(self, epoch, logs=None) -> None:
        if not logs or self.monitor not in logs:
            return
        value = float(logs[self.monitor])
        improved = value > self.best + self.min_delta
        if improved:
            self.best = value
        at_floor = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)) <= self.floor * (1 + 1e-6)
        self.epochs_at_floor = 0 if improved or not at_floor else self.epochs_at_floor + 1
        if self.epochs_at_floor >= self.patience and not self.model.stop_training:
            self.model.stop_training, self.fired = True, True


class TimeBudget(keras.callbacks.Callback):
    """Stops at the end of the epoch after which one more (as long as the slowest so far) would
    pass the budget; ``fired`` says whether it did."""

    def __init__(self, seconds: float, who: str) -> None:
        super().__init__()
        self.seconds, self.who, self.fired = seconds, who, False
        self._start = self._epoch_start = 0.0
        self._longest = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None) -> None:
        now = time.monotonic()
        self._longest = max(self._longest, now - self._epoch_start)
        if now - self._start + self._longest > self.seconds and not self.model.stop_training:
            self.model.stop_training, self.fired = True, True
            print(f"{self.who}: stopped by train.time_budget ({self.seconds / 60:g} min) after {epoch + 1} epochs "
                  f"({(now - self._start) / 60:.1f} min); raise it or set it to 0 to train until validation Dice "
                  "stops rising", flush=True)


class StepClock(keras.callbacks.Callback):
    """Times :data:`CLOCK_STEPS` steps after the first and prints what the ceiling would cost."""

    def __init__(self, rule: StoppingRule, steps_per_epoch: int, who: str) -> None:
        super().__init__()
        self.rule, self.steps_per_epoch, self.who = rule, steps_per_epoch, who
        self.ms_per_step: float | None = None
        self._step, self._start = 0, 0.0

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._step += 1
        if self._step == 1:
            self._start = time.monotonic()
        elif self._step == 1 + CLOCK_STEPS and self.ms_per_step is None:
            self.ms_per_step = (time.monotonic() - self._start) / CLOCK_STEPS * 1000
            print(f"{self.who}: {describe(self.rule, self.steps_per_epoch, self.ms_per_step)}", flush=True)


def describe(rule: StoppingRule, steps_per_epoch: int, ms_per_step: float) -> str:
    """``up to 60 epochs of 30 steps, about 6 min on this machine; stops earlier on a plateau``."""
    minutes = rule.ceiling * steps_per_epoch * ms_per_step / 60000
    text = (f"{'up to ' if rule.on_plateau else ''}{rule.ceiling} epochs of {steps_per_epoch} steps "
            f"({ms_per_step:.0f} ms a step), about {minutes:.1f} min on this machine (without validation)")
    if rule.on_plateau:
        text += "; stops earlier on a plateau of validation Dice"
    if rule.time_budget_seconds:
        text += f"; at most train.time_budget {rule.time_budget_seconds / 60:g} min"
    return text


class Convergence:
    """A run's :class:`StoppingRule` as Keras callbacks; after ``fit``, :meth:`stopped_by`."""

    def __init__(self, rule: StoppingRule, learning_rate: float, steps_per_epoch: int, who: str = "train",
                 restore_best_weights: bool = False, announce: bool = True) -> None:
        self.rule = rule
        # without a plateau stop, patience beyond the ceiling: EarlyStopping then only keeps the best weights
        self.early_stopping = keras.callbacks.EarlyStopping(
            monitor=rule.monitor, mode="max", min_delta=MIN_DELTA,
            patience=rule.patience if rule.on_plateau else rule.ceiling + 1,
            restore_best_weights=restore_best_weights)
        self.time_budget = TimeBudget(rule.time_budget_seconds, who) if rule.time_budget_seconds else None
        self.clock = StepClock(rule, steps_per_epoch, who) if announce else None
        self.smoother = SmoothedDice(rule.smoothing) if rule.smoothing else None
        self.rate_floor = RateFloorStop(rule.monitor, learning_rate * MIN_LR_FRACTION, rule.lr_patience) \
            if rule.on_plateau else None
        self.callbacks = [  # the smoothing first: the callbacks after it (and Keras' History) read its value
            *([self.smoother] if self.smoother else []),
            self.early_stopping,
            *([self.rate_floor] if self.rate_floor else []),
            keras.callbacks.ReduceLROnPlateau(monitor=rule.monitor, mode="max", factor=0.5, min_delta=MIN_DELTA,
                                              patience=rule.lr_patience, min_lr=learning_rate * MIN_LR_FRACTION),
            *([self.time_budget] if self.time_budget else []),
            *([self.clock] if self.clock else []),
        ]

    def stopped_by(self, epochs_run: int) -> str:
        if self.time_budget is not None and self.time_budget.fired:
            return "time_budget"
        return "ceiling" if epochs_run >= self.rule.ceiling else "plateau"
