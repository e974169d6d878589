"""Benchmark: does training actually learn membranes? ISBI 2012 EM, 256x256.

Sections 0-19 train, 20-24 validate, 25-29 test. Runs the project's own library end to end
(preprocess → augment → train → evaluate) with a params file (default bench/params-isbi.yaml)
and prints the test metrics beside the trivial all-foreground Dice, with the training wall time.
The bar (issue 4): test foreground Dice >= 0.95 with training <= 10 minutes on a 2-core CPU.

    python bench/isbi_quality.py [--params bench/params-isbi.yaml] [--data ../shared/datasets/isbi2012-em]
                                 [-S train.cascade=true ...] [--out bench/results/isbi_quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activeseg.augment import augment, build_pipeline  # noqa: E402
from activeseg.evaluation import evaluate, predict_probabilities  # noqa: E402
from activeseg.params import parse_params  # noqa: E402
from activeseg.preprocess import load_split_arrays, preprocess  # noqa: E402
from activeseg.runtime import seed_everything  # noqa: E402


def set_dotted(mapping: dict, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    *parents, last = key.split(".")
    for name in parents:
        mapping = mapping.setdefault(name, {})
    mapping[last] = yaml.safe_load(value)


def bench_params_and_data(params_path: str, assignments: list[str], data: str):
    """The validated params of ``params_path`` with ``key=value`` assignments, and the data folder
    (exits in one line when it has no images/)."""
    raw = yaml.safe_load(Path(params_path).read_text())
    for assignment in assignments:
        set_dotted(raw, assignment)
    if not (Path(data) / "images").is_dir():
        sys.exit(f"error: {data}/images not found; pass --data pointing at the isbi2012-em folder")
    return parse_params(raw, params_path), Path(data)


def prepared(params, data: Path, scratch: Path):
    """The transform, augmented training set, validation and test sets of the fixed split
    (sections 0-19 train, 20-24 validate, 25-29 test), prepared in ``scratch``."""
    sections = range(30)
    split = pd.DataFrame({"id": [str(n) for n in sections],
                          "split": ["train" if n < 20 else "val" if n < 25 else "test" for n in sections],
                          "has_mask": True})
    transform = preprocess(data, split, params.preprocess, scratch / "prepared")
    train_set, val_set, test_set = (load_split_arrays(scratch / "prepared", name) for name in ("train", "val", "test"))
    augmented = augment(train_set, build_pipeline(params.augment.pipeline, params.seed), params.augment.variants)
    return transform, augmented, val_set, test_set


def train_and_test(params, data: Path) -> tuple[dict, pd.DataFrame]:
    """Train on sections 0-19 (+ augmented copies), keep the best epoch on 20-24, test on 25-29:
    the test figures with the training wall time, and the training history."""
    seed_everything(params.seed)
    from activeseg.training import train

    with tempfile.TemporaryDirectory() as scratch:
        transform, augmented, val_set, test_set = prepared(params, data, Path(scratch))
        started = time.perf_counter()
        run = train(params.train, params.epochs, transform, augmented, val_set, Path(scratch) / "model.keras",
                    seed=params.seed)
        history = run.history
        train_seconds = time.perf_counter() - started
        from activeseg.model import load_model

        model = load_model(Path(scratch) / "model.keras")
        probabilities = predict_probabilities(model, transform.normalize(test_set.images), batch_size=4)
    summary, _ = evaluate(test_set.ids, test_set.masks, probabilities, params.evaluate.threshold)
    figures = {
        "test_dice": summary["dice"], "test_f1": summary["f1"], "test_precision": summary["precision"],
        "test_recall": summary["recall"], "test_iou": summary["iou"], "trivial_all_foreground_dice": summary["trivial_dice"],
        "train_wall_seconds": round(train_seconds, 1), "epochs_run": int(len(history)),
        "stopped_by": run.stopped_by, "steps_trained": run.steps_trained, "precision": run.precision.policy,
        "best_val_dice": float(history["val_dice"].max()), "train_images_after_augment": int(len(augmented)),
        "machine": f"{platform.node()} {os.cpu_count()} cpus", "load_average_after": os.getloadavg(),
    }
    return figures, history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "bench" / "params-isbi.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "isbi2012-em"))
    parser.add_argument("-S", "--set", action="append", default=[], help="override a param, e.g. epochs=2")
    parser.add_argument("--out", default=None, help="write the figures as JSON here too")
    args = parser.parse_args()
    params, data = bench_params_and_data(args.params, args.set, args.data)

    figures, history = train_and_test(params, data)
    figures.update({"params": args.params, "overrides": args.set})
    print(history.to_string(index=False))
    print(json.dumps(figures, indent=2))
    meets = figures["test_dice"] >= 0.95 and figures["train_wall_seconds"] <= 600
    print(f"test Dice {figures['test_dice']:.4f} (all-foreground Dice {figures['trivial_all_foreground_dice']:.4f}), "
          f"training {figures['train_wall_seconds'] / 60:.1f} min: {'MEETS' if meets else 'MISSES'} "
          "the bar (Dice >= 0.95, <= 10 min)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
