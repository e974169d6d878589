"""Does the default run's test Dice move with the seed or the CPU's numeric path? (issue 26, part 3)

    python bench/stability.py --venv .venv                       # seeds 1 2 3 (oneDNN on), seed 1 oneDNN off
    python bench/stability.py --venv .venv --seeds 2 --no-onednn-off   # one part; later parts merge in
    python bench/stability.py --venv .venv -S ingest.synthetic.count=320  # a design change tried (records apart)

A fresh clone of HEAD, params.yaml untouched but `seed`, runs `dvc exp run -S seed=N` on the
built-in data for each seed with TF_ENABLE_ONEDNN_OPTS=1, then the first seed again with
TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's other numeric path, a stand-in for a second CPU; forced, so
DVC's run cache does not hand back the first result). Each run's record goes to
bench/results/stability_runs/seed<N>_onednn<0|1>.json as soon as it finishes, so a session that ends
midway loses only the run under way; every invocation then merges all records there into
bench/results/stability.json: {"seeds", "dice", "dice_std", "onednn_off_on_delta", ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from fresh_clone import REPO, clone_head, finish, load_average, machine, revision, run_timed, user_environment, utc_now

RESULTS = REPO / "bench" / "results"
RUNS = RESULTS / "stability_runs"
BARS = {"dice_std": 0.01, "onednn_off_on_delta": 0.01}


def run_seed(clone: Path, env: dict[str, str], seed: int, onednn: int, force: bool, overrides: list[str]) -> dict:
    env = {**env, "TF_ENABLE_ONEDNN_OPTS": str(onednn)}
    command = ["dvc", "exp", "run", "-S", f"seed={seed}"] + [arg for override in overrides for arg in ("-S", override)]
    command += ["--force"] if force else []
    load_before = load_average()
    returncode, seconds, stage_seconds = run_timed(command, clone, env)
    if returncode != 0:
        sys.exit(f"{' '.join(command)} (TF_ENABLE_ONEDNN_OPTS={onednn}) failed (exit {returncode}) in {clone}")
    evaluation = json.loads((clone / "metrics" / "evaluate.json").read_text())
    training = json.loads((clone / "metrics" / "train.json").read_text())
    return {
        "seed": seed, "onednn": onednn, "overrides": overrides,
        "command": f"TF_ENABLE_ONEDNN_OPTS={onednn} {' '.join(command)}",
        "dice": evaluation["dice"], "test_images": evaluation["images"],
        "best_val_dice": training["best_val_dice"], "best_epoch": training["best_epoch"],
        "epochs_run": training["epochs_run"], "stopped_by": training.get("stopped_by"),
        "precision": training.get("precision"), "seconds": seconds, "stage_seconds": stage_seconds,
        "revision": revision(clone), "machine": machine(), "date": utc_now(),
        "load_average_before": load_before, "load_average_after": load_average(),
    }


def record_name(seed: int, onednn: int, overrides: list[str]) -> str:
    return f"seed{seed}_onednn{onednn}{''.join('_' + override for override in overrides)}.json"


def merge(overrides: list[str]) -> dict | None:
    """The summary of every record in RUNS with these overrides and the newest such revision."""
    records = [json.loads(path.read_text()) for path in sorted(RUNS.glob("seed*_onednn*.json"))]
    records = [record for record in records if record.get("overrides", []) == overrides]
    if not records:
        return None
    newest = max(records, key=lambda record: record["date"])["revision"]
    records = [record for record in records if record["revision"] == newest]
    on = sorted((record for record in records if record["onednn"] == 1), key=lambda record: record["seed"])
    dice = [record["dice"] for record in on]
    summary = {
        "seeds": [record["seed"] for record in on], "dice": dice,
        "dice_std": round(statistics.pstdev(dice), 6) if len(dice) > 1 else None,
        "dice_mean": round(statistics.fmean(dice), 6) if dice else None,
        "onednn_off_on_delta": None, "overrides": overrides, "revision": newest,
        "machine": on[0]["machine"] if on else records[0]["machine"],
        "runs": [{key: record[key] for key in ("seed", "onednn", "dice", "best_val_dice", "epochs_run",
                                                "stopped_by", "precision", "seconds", "date")}
                 for record in records],
        "bars": BARS,
    }
    by_seed = {record["seed"]: record["dice"] for record in on}
    off = [record for record in records if record["onednn"] == 0 and record["seed"] in by_seed]
    if off:
        summary["onednn_off_on_delta"] = round(abs(off[0]["dice"] - by_seed[off[0]["seed"]]), 6)
        summary["onednn_off_seed"] = off[0]["seed"]
    summary["met"] = {key: summary[key] is not None and summary[key] <= bar for key, bar in BARS.items()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True, help="an installed environment (the install is not what is measured)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--no-onednn-off", action="store_true", help="skip the TF_ENABLE_ONEDNN_OPTS=0 run")
    parser.add_argument("-S", "--set", action="append", default=[],
                        help="a param override for every run (a design change tried): its summary goes to "
                             "stability_<overrides>.json, not stability.json")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    summary_path = RESULTS / ("stability.json" if not args.set else f"stability_{'_'.join(args.set)}.json")

    clone = clone_head("activeseg-stability-")
    env = user_environment(clone, args.venv)
    RUNS.mkdir(parents=True, exist_ok=True)
    plan = [(seed, 1) for seed in args.seeds] + ([] if args.no_onednn_off else [(args.seeds[0], 0)])
    for index, (seed, onednn) in enumerate(plan):
        print(f"stability: run {index + 1}/{len(plan)}: seed {seed}, TF_ENABLE_ONEDNN_OPTS={onednn}", flush=True)
        record = run_seed(clone, env, seed, onednn, force=index > 0, overrides=args.set)
        (RUNS / record_name(seed, onednn, args.set)).write_text(json.dumps(record, indent=2) + "\n")
        summary = merge(args.set)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps({key: summary[key] for key in ("seeds", "dice", "dice_std", "onednn_off_on_delta")}),
              flush=True)
    finish(clone, args.keep)


if __name__ == "__main__":
    main()
