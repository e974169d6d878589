"""The number format of training (``train.precision``): float32, or Keras' ``mixed_bfloat16``.

``mixed_bfloat16`` computes the layers in bfloat16 and keeps the weights, the segmentation head
(its convolution and sigmoid, :mod:`activeseg.model`) and so the loss in float32. On CPUs with
bfloat16 matrix instructions (Intel AMX, AVX-512-BF16) oneDNN runs such convolutions much faster;
elsewhere bfloat16 is emulated and slower. ``auto`` therefore picks bfloat16 only on a CPU that
has those instructions *and* where a short probe, a few steps of the run's own model in the run's
own ``tf.data`` input pipeline, measures it at least :data:`MIN_SPEEDUP` times faster (on two
cores the input pipeline competes for the cores and can eat the gain), and says why.

The probe runs at training time, not in the plan stage: it measures this machine, so keeping it
out of ``data/plan.json`` keeps the plan a pure function of the data (DVC's cache holds across
machines). Whatever was trained, :func:`float32_copy` gives the model that is saved: the same
weights under float32 everywhere, so it loads and predicts the same on a machine without bfloat16.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Callable

from activeseg.runtime import keras

FLOAT32, BFLOAT16 = "float32", "mixed_bfloat16"
MIN_SPEEDUP = 1.15    # below this the measured gain is within the probe's noise on a shared 2-core CPU
PROBE_WARMUP = 2      # steps not timed: the first traces the graph, the second settles oneDNN's kernels
PROBE_STEPS = 6       # steps timed per format and round
PROBE_ROUNDS = 2      # rounds, the formats alternating; each format's fastest round counts: one
                      # round of 6 steps measured the same default run 1.29x and then 0.97x (AMD
                      # Zen 4), so a single round let the probe's noise pick the format
BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512-BF16"}  # /proc/cpuinfo flag → name


@dataclasses.dataclass(frozen=True)
class Choice:
    """The format used, why, and the probe's ms per step of each format it measured."""

    policy: str
    reason: str
    ms_per_step: dict[str, float] = dataclasses.field(default_factory=dict)


def bf16_instructions(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The bfloat16 instruction sets this CPU has (names of :data:`BF16_FLAGS`); [] if unknown."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    return [name for flag, name in BF16_FLAGS.items() if flag in flags]


@contextlib.contextmanager
def policy(name: str):
    """Keras' global dtype policy set to ``name`` inside, restored afterwards."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class _StepTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.ends.append(time.perf_counter())


def ms_per_step(model: keras.Model, data, steps: int = PROBE_STEPS) -> float:
    """ms per training step of the compiled ``model`` on ``data``, over ``steps`` steps after
    :data:`PROBE_WARMUP` untimed ones (a model fitted before is not traced again)."""
    timer = _StepTimer()
    model.fit(data, steps_per_epoch=PROBE_WARMUP + steps, epochs=1, verbose=0, callbacks=[timer])
    return (timer.ends[-1] - timer.ends[PROBE_WARMUP - 1]) / steps * 1000


def probe_ms_per_step(build: Callable[[], keras.Model], data, steps: int = PROBE_STEPS) -> float:
    """:func:`ms_per_step` of the model ``build`` returns (compiled), built under the current dtype policy."""
    return ms_per_step(build(), data, steps)


def choose(requested: str, build: Callable[[], keras.Model], data, who: str = "train",
           instructions: list[str] | None = None) -> Choice:
    """The format to train in: ``requested`` unless it is ``auto``, else as the module says.
    ``build`` makes and compiles the run's model; ``data`` is its training ``tf.data`` stream."""
    if requested != "auto":
        choice = Choice(requested, "set in params.yaml")
    else:
        instructions = bf16_instructions() if instructions is None else instructions
        if not instructions:
            choice = Choice(FLOAT32, "this CPU has no bfloat16 instructions (AMX-BF16 or AVX-512-BF16)")
        else:
            print(f"{who}: train.precision auto: this CPU has {' and '.join(instructions)}; timing "
                  f"{PROBE_ROUNDS} x {PROBE_STEPS} steps in float32 and in bfloat16, alternately", flush=True)
            formats = (FLOAT32, BFLOAT16)
            models, rounds = {}, {name: [] for name in formats}
            for name in formats:
                with policy(name):  # a layer's format is fixed when it is built
                    models[name] = build()
            for index in range(PROBE_ROUNDS):
                for name in formats if index % 2 == 0 else formats[::-1]:
                    rounds[name].append(ms_per_step(models[name], data))
            measured = {name: round(min(times), 1) for name, times in rounds.items()}
            speedup = measured[FLOAT32] / measured[BFLOAT16]
            pick = BFLOAT16 if speedup >= MIN_SPEEDUP else FLOAT32
            choice = Choice(pick, f"{' and '.join(instructions)}; bfloat16 {measured[BFLOAT16]:.0f} ms a step "
                                  f"against float32 {measured[FLOAT32]:.0f} ({speedup:.2f}x, "
                                  f"{'>=' if pick == BFLOAT16 else '<'} {MIN_SPEEDUP}x)", measured)
    print(f"{who}: precision {choice.policy}: {choice.reason}", flush=True)
    return choice


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` itself if it is all float32, else the same layers and weights with every layer's
    dtype policy float32 (what is saved: it predicts the same on any CPU)."""
    config = model.get_config()
    if not _to_float32(config):
        return model
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _to_float32(config) -> bool:
    """Rewrites every non-float32 dtype policy in a Keras config to float32; True if any was."""
    changed = False
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name") != FLOAT32:
            config["config"]["name"] = FLOAT32
            return True
        for value in config.values():
            changed |= _to_float32(value)
    elif isinstance(config, list):
        for value in config:
            changed |= _to_float32(value)
    return changed
