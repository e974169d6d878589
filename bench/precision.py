"""float32 against mixed_bfloat16 on the ISBI bench model (issue 26, part 2): the speed of a
training step in the project's own tf.data input pipeline, and test Dice at the same convergence rule.

    python bench/precision.py [--params bench/params-isbi.yaml] [--rounds 3] [--steps 20]
    python bench/precision.py --speed-only            # the step times alone (minutes, not tens of)

Step times: both formats timed alternately, `--rounds` times, `--steps` steps each after
untimed warm-up steps (activeseg.precision.probe_ms_per_step, the probe `train.precision: auto`
uses), in one process, so the speedup is a ratio of medians measured side by side. Quality:
bench/isbi_quality.py's fixed split trained to convergence (epochs 40, a ceiling: the plateau
rule) once in each format. Writes bench/results/precision.json: {"cpu", "options": {"float32":
{"ms_per_step", "dice"}, "mixed_bfloat16": {...}}, "speedup", "dice_delta", ...}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from fresh_clone import cpu_model, machine, utc_now  # noqa: E402
from isbi_quality import bench_params_and_data, prepared, train_and_test  # noqa: E402


FORMATS = ("float32", "mixed_bfloat16")
BARS = {"speedup_on_amx": 1.5, "dice_delta": 0.01}


def step_times(params, data: Path, rounds: int, steps: int) -> dict[str, list[float]]:
    """ms per step of each format, alternately, in the run's own tf.data stream and model."""
    from activeseg.model import build_unet
    from activeseg.precision import policy, probe_ms_per_step
    from activeseg.runtime import seed_everything
    from activeseg.training import compiled, example_batch, training_dataset, validation_arrays

    seed_everything(params.seed)
    times: dict[str, list[float]] = {name: [] for name in FORMATS}
    with tempfile.TemporaryDirectory() as scratch:
        transform, augmented, val_set, _ = prepared(params, data, Path(scratch))
        validation = validation_arrays(val_set, transform)
        stream = training_dataset(augmented, transform, params.train, params.seed)
        for round_index in range(rounds):
            for name in FORMATS if round_index % 2 == 0 else reversed(FORMATS):
                with policy(name):
                    times[name].append(round(probe_ms_per_step(
                        lambda: compiled(build_unet(params.train, None, transform.channels), params.train,
                                         example_batch(validation)),
                        stream, steps), 1))
                print(f"precision: round {round_index + 1}/{rounds} {name}: {times[name][-1]} ms a step", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "bench" / "params-isbi.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "isbi2012-em"))
    parser.add_argument("-S", "--set", action="append", default=["epochs=40"],
                        help="override a param (default: epochs=40, the plan's ceiling)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--speed-only", action="store_true", help="skip the two trainings to convergence")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "precision.json"))
    args = parser.parse_args()
    params, data = bench_params_and_data(args.params, args.set, args.data)

    load_before = os.getloadavg()
    times = step_times(params, data, args.rounds, args.steps)
    options = {name: {"ms_per_step": statistics.median(times[name]), "ms_per_step_rounds": times[name]}
               for name in FORMATS}
    speedup = round(options["float32"]["ms_per_step"] / options["mixed_bfloat16"]["ms_per_step"], 3)
    print(f"precision: speedup {speedup}x (medians of {args.rounds} rounds)", flush=True)
    if not args.speed_only:
        for name in FORMATS:
            started = time.perf_counter()
            figures, _ = train_and_test(dataclasses.replace(params, train=dataclasses.replace(params.train,
                                                                                               precision=name)), data)
            options[name].update(dice=figures["test_dice"], epochs_run=figures["epochs_run"],
                                 stopped_by=figures["stopped_by"], best_val_dice=figures["best_val_dice"],
                                 train_wall_seconds=figures["train_wall_seconds"],
                                 seconds=round(time.perf_counter() - started, 1))
            print(f"precision: {name}: test Dice {figures['test_dice']:.4f}, {figures['epochs_run']} epochs "
                  f"({figures['stopped_by']})", flush=True)
    dice_delta = (round(abs(options["float32"]["dice"] - options["mixed_bfloat16"]["dice"]), 6)
                  if not args.speed_only else None)
    amx = "amx_bf16" in cpu_model()
    record = {
        "cpu": cpu_model(), "machine": machine(), "options": options, "speedup": speedup, "dice_delta": dice_delta,
        "steps_per_round": args.steps, "rounds": args.rounds, "params": os.path.relpath(args.params, REPO),
        "overrides": args.set, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "bars": BARS, "met": {"speedup": (speedup >= BARS["speedup_on_amx"]) if amx else "no AMX on this CPU: bar n/a",
                              "dice_delta": dice_delta is not None and dice_delta <= BARS["dice_delta"]},
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()], "date": utc_now(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
