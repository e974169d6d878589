"""A new user's own data on the first try (issue 14): a fresh clone of this repository's HEAD, a data
set copied into its data/raw, params.yaml untouched, the README's `make run`; its test Dice.

    python bench/own_data.py isbi                      # install (timed apart) + dvc repro
    python bench/own_data.py soybean --venv .venv      # dvc repro only, with an installed environment
    python bench/own_data.py labelme|synthetic         # the 3 Labelme photos; the built-in data (empty data/raw)

Data sets come from ../shared/datasets (--datasets elsewhere): isbi = isbi2012-em images/ + masks/
(30 EM sections), soybean = soybean-rust images/ + masks/ (63 photographs), labelme = the
labelme-voc2011 photos with their Labelme JSON beside them. The install (the Makefile's
`.venv/.installed` step of `make run`) is timed apart from `dvc repro` (the rest of `make run`).
Writes bench/results/own_data_<dataset>.json: dice, trivial_dice, seconds (dvc repro),
install_seconds, stage_seconds, plan (data/plan.json, when the pipeline writes one), the bar and
whether it was met, the revision, machine, date and load averages; and refreshes the data set's
row in bench/RESULTS.md. The clone is deleted afterwards (--keep keeps it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from fresh_clone import (INSTALL_TARGET, REPO, clone_head, finish, load_average, machine, revision, run_timed,
                         user_environment, utc_now)

# What each data set must reach: a Dice floor, absolute or above the trivial Dice, the seconds of
# `dvc repro` (for the built-in data, issue 16's: `make run`, install included) and, for ISBI and soybean
# (issue 26's bars, which supersede issue 14's 0.88 / 600-900 s), training ended by the plateau rule.
BARS = {
    "isbi": {"dice_above_trivial": 0.06, "dice": 0.95, "seconds": 1200, "stopped_by": "plateau"},
    "soybean": {"dice": 0.92, "seconds": 1200, "stopped_by": "plateau"},
    "labelme": {},  # three images: the bar is that it runs and says the result means little
    "synthetic": {"dice": 0.80, "test_images": 12, "seconds_with_install": 240},
}
SOURCES = {"isbi": "isbi2012-em", "soybean": "soybean-rust", "labelme": "labelme-voc2011"}
RESULTS_MD = REPO / "bench" / "RESULTS.md"
SECTION = "## Issue 14: your own data on a fresh clone (`bench/own_data.py`)"
TABLE_HEADER = ("| data set | test Dice | trivial Dice | test images | `dvc repro` s | install s | bar | met "
                "| load avg (1 min, before → after) | revision | date |")


def copy_data(dataset: str, datasets: Path, raw: Path) -> None:
    """Copies the data set into `raw` as a user would: the folders layout, or Labelme files as saved."""
    if dataset == "synthetic":
        return
    source = datasets / SOURCES[dataset]
    if not source.is_dir():
        sys.exit(f"error: {source} not found; pass --datasets pointing at the shared datasets folder")
    raw.mkdir(parents=True, exist_ok=True)
    if dataset == "labelme":
        for path in sorted(source.iterdir()):
            if path.suffix.lower() in (".jpg", ".json"):
                shutil.copy2(path, raw / path.name)
    else:
        for folder in ("images", "masks"):
            shutil.copytree(source / folder, raw / folder)


def bar_met(bar: dict, record: dict) -> bool:
    met = record["returncode"] == 0
    if "dice" in bar:
        met &= record["dice"] is not None and record["dice"] >= bar["dice"]
    if "dice_above_trivial" in bar:
        met &= record["dice"] is not None and record["dice"] >= record["trivial_dice"] + bar["dice_above_trivial"]
    if "test_images" in bar:
        met &= (record["test_images"] or 0) >= bar["test_images"]
    if "seconds" in bar:
        met &= record["seconds"] <= bar["seconds"]
    if "stopped_by" in bar:
        met &= record.get("stopped_by") == bar["stopped_by"]
    if "seconds_with_install" in bar:
        met &= record["install_seconds"] is not None and record["seconds"] + record["install_seconds"] <= bar[
            "seconds_with_install"]
    return bool(met)


def describe_bar(bar: dict) -> str:
    parts = []
    if "dice" in bar:
        parts.append(f"Dice ≥ {bar['dice']}")
    if "dice_above_trivial" in bar:
        parts.append(f"Dice ≥ trivial + {bar['dice_above_trivial']}")
    if "test_images" in bar:
        parts.append(f"≥ {bar['test_images']} test images")
    if "seconds" in bar:
        parts.append(f"≤ {bar['seconds']} s")
    if "stopped_by" in bar:
        parts.append(f"stopped by {bar['stopped_by']}")
    if "seconds_with_install" in bar:
        parts.append(f"≤ {bar['seconds_with_install']} s with install")
    return ", ".join(parts) or "runs"


def refresh_results_md(dataset: str, record: dict, path: Path = RESULTS_MD) -> None:
    """Replaces the data set's row in the issue-14 table of RESULTS.md (adding the section if absent)."""
    def figure(value, digits=4):
        return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    row = (f"| {dataset} | {figure(record['dice'])} | {figure(record['trivial_dice'])} | "
           f"{figure(record['test_images'])} | {record['seconds']:.0f} | {figure(record['install_seconds'], 0)} | "
           f"{describe_bar(record['bar'])} | {'yes' if record['bar_met'] else 'NO'} | "
           f"{record['load_average_before'][0]} → {record['load_average_after'][0]} | "
           f"{record['revision'][:7]} | {record['date']} |")
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmark results"]
    if SECTION not in lines:
        lines += ["", SECTION, "",
                  "- Command: `python bench/own_data.py <isbi|soybean|labelme|synthetic>` (a fresh clone of HEAD, the",
                  "  data set copied into `data/raw`, params.yaml untouched, `make run`; `--venv` skips the install).",
                  "  Per-stage seconds, the data plan and the machine are in `bench/results/own_data_<data set>.json`.",
                  "", TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    start = lines.index(SECTION)
    header = lines.index(TABLE_HEADER, start)
    end = header + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    rows = [line for line in lines[header + 2:end] if not line.startswith(f"| {dataset} |")]
    lines[header + 2:end] = sorted(rows + [row])
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(BARS))
    parser.add_argument("--datasets", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--venv", help="skip the install: run `dvc repro` with this environment's bin on PATH")
    parser.add_argument("--out", help="default bench/results/own_data_<dataset>.json")
    parser.add_argument("--no-results-md", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()

    clone = clone_head(f"activeseg-own-data-{args.dataset}-")
    copy_data(args.dataset, Path(args.datasets), clone / "data" / "raw")
    env = user_environment(clone, args.venv)
    load_before = load_average()
    started = time.time()
    install_seconds = None
    if not args.venv:
        returncode, install_seconds, _ = run_timed(["make", INSTALL_TARGET], clone, env)
        if returncode != 0:
            sys.exit(f"make {INSTALL_TARGET} failed (exit {returncode}) in {clone}")
    command = ["dvc", "repro"] if args.venv else ["make", "run"]
    returncode, seconds, stage_seconds = run_timed(command, clone, env)

    def read_json(relative: str):
        """Only what this run wrote: a clone holds the committed metrics of the built-in data's run."""
        path = clone / relative
        return json.loads(path.read_text()) if path.exists() and path.stat().st_mtime >= started else None

    evaluation = read_json("metrics/evaluate.json") or {}
    training = read_json("metrics/train.json") or {}
    record = {
        "dataset": args.dataset, "dice": evaluation.get("dice"), "trivial_dice": evaluation.get("trivial_dice"),
        "seconds": seconds, "plan": read_json("data/plan.json"),
        "returncode": returncode, "install_seconds": install_seconds, "stage_seconds": stage_seconds,
        "test_images": evaluation.get("images"), "beats_trivial": evaluation.get("beats_trivial"),
        "precision": evaluation.get("precision"), "recall": evaluation.get("recall"),
        "train_images": training.get("train_images"), "best_val_dice": training.get("best_val_dice"),
        "epochs_run": training.get("epochs_run"), "stopped_by": training.get("stopped_by"),
        "steps_trained": training.get("steps_trained"), "precision_used": training.get("precision"), "command": " ".join(command),
        "revision": revision(clone), "machine": machine(), "date": utc_now(),
        "load_average_before": load_before, "load_average_after": load_average(),
        "bar": BARS[args.dataset],
    }
    record["bar_met"] = bar_met(record["bar"], record)
    out = Path(args.out or REPO / "bench" / "results" / f"own_data_{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    if not args.no_results_md:
        refresh_results_md(args.dataset, record)
    print(json.dumps({key: value for key, value in record.items() if key != "plan"}, indent=2))
    finish(clone, args.keep)
    if returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {returncode}); figures in {out}")


if __name__ == "__main__":
    main()
