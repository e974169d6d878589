"""A new user's first run: a fresh clone of this repository's HEAD, `time make run`, its test Dice.

    python bench/first_run.py                       # the real thing: make run (venv + install + dvc repro)
    python bench/first_run.py --venv /path/.venv    # dvc repro only, with an installed environment

Writes bench/results/first_run.json: seconds (wall time of the command), dice and test_images
(metrics/evaluate.json), best_epoch / epochs_run (metrics/train.json), the command, the machine
and its load average before and after, and the seconds of each `dvc repro` stage. `make run`
installs into the clone's own .venv with uv (pip where uv cannot be installed), from uv's cache where
it has the wheels (`UV_CACHE_DIR=$(mktemp -d)` measures a first install); the clone is deleted
afterwards (--keep keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fresh_clone import REPO, clone_head, finish, machine, revision, run_timed, user_environment, utc_now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", help="skip the install: run `dvc repro` with this environment's bin on PATH")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "first_run.json"))
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()

    clone = clone_head("activeseg-first-run-")
    env = user_environment(clone, args.venv)
    command = ["dvc", "repro"] if args.venv else ["make", "run"]
    load_before = os.getloadavg()
    returncode, seconds, stage_seconds = run_timed(command, clone, env)
    if returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {returncode}) in {clone}")
    evaluation = json.loads((clone / "metrics" / "evaluate.json").read_text())
    training = json.loads((clone / "metrics" / "train.json").read_text())
    record = {
        "command": " ".join(command), "seconds": round(seconds, 1),
        "dice": evaluation["dice"], "test_images": evaluation["images"],
        "best_val_dice": training["best_val_dice"], "best_epoch": training["best_epoch"],
        "epochs_run": training["epochs_run"], "train_images": training["train_images"],
        "stage_seconds": stage_seconds, "revision": revision(clone), "machine": machine(),
        "load_average_before": round(load_before[0], 2), "load_average_after": round(os.getloadavg()[0], 2),
        "date": utc_now(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    finish(clone, args.keep)


if __name__ == "__main__":
    main()
