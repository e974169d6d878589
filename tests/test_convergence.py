"""The one stopping rule (activeseg.convergence): plateau, ceiling, explicit epochs, time budget."""

import pytest

from activeseg import convergence
from activeseg.convergence import Convergence, StoppingRule
from activeseg.params import TrainParams
from activeseg.runtime import keras


def _run(rule: StoppingRule, val_dice: list[float], clock=None, monkeypatch=None) -> tuple[Convergence, int]:
    """Feeds a made-up validation-Dice history to the rule's callbacks, as fit would; returns the
    rule and the number of epochs run before it stopped training."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    rule_callbacks = Convergence(rule, 0.01, steps_per_epoch=4, announce=False)
    callbacks = keras.callbacks.CallbackList(rule_callbacks.callbacks, model=model)
    model.stop_training = False
    callbacks.on_train_begin()
    epochs = 0
    for epoch, dice in enumerate(val_dice[:rule.ceiling]):
        callbacks.on_epoch_begin(epoch)
        if clock is not None:
            clock.advance()
        callbacks.on_epoch_end(epoch, {"val_dice": dice, "loss": 1 - dice})
        epochs = epoch + 1
        if model.stop_training:
            break
    return rule_callbacks, epochs


RISE_THEN_FLAT = [0.3, 0.5, 0.6, 0.7] + [0.7005] * 30  # + 0.0005: below MIN_DELTA, not a rise


def test_a_plateau_stops_before_the_ceiling_and_lowers_the_rate_first():
    rule = StoppingRule(ceiling=30, patience=5, lr_patience=2)
    stopped, epochs = _run(rule, RISE_THEN_FLAT)
    assert epochs == 4 + 5  # the best epoch (4), then 5 without a rise of MIN_DELTA
    assert stopped.stopped_by(epochs) == "plateau"
    assert float(stopped.callbacks[0].model.optimizer.learning_rate) < 0.01  # halved on the way


def test_a_curve_still_rising_runs_to_the_ceiling():
    rising = [0.1 + 0.02 * epoch for epoch in range(12)]
    stopped, epochs = _run(StoppingRule(ceiling=12, patience=3, lr_patience=2), rising)
    assert epochs == 12 and stopped.stopped_by(epochs) == "ceiling"


def test_an_explicit_epochs_trains_exactly_that_many_on_a_plateau():
    stopped, epochs = _run(StoppingRule(ceiling=20, on_plateau=False, patience=2, lr_patience=1), RISE_THEN_FLAT)
    assert epochs == 20 and stopped.stopped_by(epochs) == "ceiling"


class _Clock:
    """time.monotonic for the rule: each epoch takes 40 s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self) -> None:
        self.now += 40.0

    def __call__(self) -> float:
        return self.now


def test_the_time_budget_cuts_the_run_and_says_so(monkeypatch, capsys):
    clock = _Clock()
    monkeypatch.setattr(convergence.time, "monotonic", clock)
    rule = StoppingRule.of(TrainParams(time_budget=3.0), epochs=30)  # 3 min: 4 epochs of 40 s, not 5
    stopped, epochs = _run(rule, [0.1 + 0.02 * epoch for epoch in range(30)], clock)
    assert epochs == 4 and stopped.stopped_by(epochs) == "time_budget"
    line = capsys.readouterr().out.strip()
    assert line.startswith("train: stopped by train.time_budget (3 min) after 4 epochs") and "\n" not in line


@pytest.mark.parametrize("budget, seconds", [("auto", 0.0), (0.0, 0.0), (2.5, 150.0)])
def test_time_budget_auto_and_0_mean_none(budget, seconds):
    rule = StoppingRule.of(TrainParams(time_budget=budget), epochs=5)
    assert rule.time_budget_seconds == seconds
    assert (Convergence(rule, 0.01, 4, announce=False).time_budget is None) == (seconds == 0)


def test_the_estimate_names_the_ceiling_and_the_time():
    text = convergence.describe(StoppingRule(ceiling=60), steps_per_epoch=30, ms_per_step=200)
    assert text.startswith("up to 60 epochs of 30 steps (200 ms a step), about 6.0 min on this machine")
    assert "stops earlier on a plateau" in text
    assert "up to" not in convergence.describe(StoppingRule(ceiling=4, on_plateau=False), 30, 200)


def test_smoothing_follows_the_moving_average_so_one_lucky_epoch_is_not_the_best():
    from activeseg.convergence import SMOOTHED, SmoothedDice

    smoother, seen = SmoothedDice(0.5), []
    for epoch, value in enumerate([0.5, 0.9, 0.6, 0.7, 0.8, 0.85]):  # epoch 2's 0.9 is a spike
        logs = {"val_dice": value}
        smoother.on_epoch_end(epoch, logs)
        seen.append(logs[SMOOTHED])
    assert seen[:3] == pytest.approx([0.5, 0.7, 0.65])
    assert max(range(len(seen)), key=seen.__getitem__) == 5  # the last epoch, not the spike



def test_with_smoothing_the_rule_follows_the_smoothed_value():
    rule = StoppingRule(ceiling=5, smoothing=0.5)
    callbacks = Convergence(rule, 0.001, 10, announce=False).callbacks
    assert type(callbacks[0]).__name__ == "SmoothedDice"  # first: the others read what it adds
    assert {callback.monitor for callback in callbacks[1:3]} == {"val_dice_smoothed"}
    assert StoppingRule(ceiling=5).monitor == "val_dice"


def test_at_the_rate_floor_lr_patience_epochs_without_a_rise_stop_the_run(monkeypatch):
    """Creeping up by just over MIN_DELTA every few epochs keeps early stopping's patience from
    running out (the soybean default run rode to its ceiling so); once the rate is at its floor,
    lr_patience epochs without a better Dice end the run on the plateau."""
    creeping = [0.5, 0.6, 0.7] + [0.7 + 0.0011 * (epoch // 4) for epoch in range(80)]  # a rise every 4th epoch
    rule = StoppingRule(ceiling=80, patience=10, lr_patience=3)
    stopped, epochs = _run(rule, creeping)
    assert epochs < 80 and stopped.stopped_by(epochs) == "plateau" and stopped.rate_floor.fired
    floor = 0.01 * convergence.MIN_LR_FRACTION
    assert float(stopped.callbacks[0].model.optimizer.learning_rate) == pytest.approx(floor)
    explicit, explicit_epochs = _run(StoppingRule(ceiling=40, on_plateau=False, patience=10, lr_patience=3), creeping)
    assert explicit_epochs == 40 and explicit.rate_floor is None   # an explicit epochs trains them all
    # without the floor's stop, the same curve runs to the ceiling: early stopping's patience never runs out
    monkeypatch.setattr(convergence.RateFloorStop, "on_epoch_end", lambda self, epoch, logs=None: None)
    _, unstopped_epochs = _run(rule, creeping)
    assert unstopped_epochs == 80
