"""Benchmark (issue 13): tiles at full resolution versus today's whole-image resize, same model,
same data, same training budget, metrics at the original resolution in both modes.

    python bench/tiles_quality.py isbi    [--out bench/results/tiles_isbi.json]    [-S epochs=8 ...]
    python bench/tiles_quality.py soybean [--out bench/results/tiles_soybean.json] [-S tiles:key=value ...]

- ``isbi``: ../shared/datasets/isbi2012-em, 512x512, sections 0-19 train / 20-24 val / 25-29 test,
  MEMBRANES as the foreground (the data set's masks are 255 = cell interior, so they are inverted).
  Bar: tiles Dice >= resize Dice + 0.05.
- ``soybean``: ../shared/datasets/soybean-rust, 1280x1280 RGB, fixed split by image number
  (image1-44 train, 45-50 val, 51-63 test). Bar: tiles lose at most 0.01 Dice.

Both modes start from bench/params-isbi.yaml (the plain U-Net, crops, EM augmentation) with the
dataset's overrides below (its budget included), then ``-S`` overrides (``-S tiles:key=value`` for
one mode only); they differ only in ``preprocess.size`` / ``tile_size`` / ``tile_overlap`` /
``scale``. The budget is the same number of training steps of the same crop size and batch (early
stopping off), so the wall times match up to validation (more pixels with tiles). The project's library does the work: preprocess (tiles or resize) → augment →
training.train → predict.split_probability_maps (sliding window or upsampled resize) →
evaluation.evaluate_maps at the original resolution. The JSON holds ``{"tiles": {"dice",
"precision", "recall", "train_seconds", ...}, "resize": {the same}}`` plus the settings, the
seconds per step and the load average around each mode (wall times compare within one run only).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activeseg.augment import augment, build_pipeline  # noqa: E402
from activeseg.imageio import read_image, write_png  # noqa: E402
from activeseg.evaluation import evaluate_maps  # noqa: E402
from activeseg.model import load_model  # noqa: E402
from activeseg.outputs import write_json  # noqa: E402
from activeseg.params import parse_params  # noqa: E402
from activeseg.predict import split_probability_maps  # noqa: E402
from activeseg.preprocess import load_split_arrays, preprocess  # noqa: E402
from activeseg.runtime import seed_everything  # noqa: E402
from isbi_quality import set_dotted  # noqa: E402  (bench/ is on sys.path as the script's folder)

SHARED = REPO.parent / "shared" / "datasets"
# The training budget of both modes: the same steps of the same crops and batch, early stopping
# off so that neither mode stops sooner. Few, long epochs: validation (9x the pixels with tiles) is
# inside the timed training, so it is kept a small share of the wall time (ratio 1.03 at 100-step
# epochs, 1.23 at 25). One thread, a 2-core CPU: about 1.7-2 s a step of 8 crops of 128 px.
BUDGET = {"train.early_stopping_patience": 100}
DATASETS = {
    "isbi": {
        "data": SHARED / "isbi2012-em",
        "overrides": {"epochs": 4, "train.steps_per_epoch": 100},
        "modes": {"resize": {"preprocess.size": 256},
                  "tiles": {"preprocess.tile_size": 256, "preprocess.tile_overlap": 32}},
        "bar": "tiles Dice >= resize Dice + 0.05",
    },
    "soybean": {
        "data": SHARED / "soybean-rust",
        # RGB photographs; no augmented copies: 44 images give hundreds of tiles, and crops vary them.
        # A third of the crops around a lesion in both modes: most tiles hold none (uniform crops of
        # tiles learned nothing in 50 steps), while nearly every resized photograph holds one.
        "overrides": {"epochs": 3, "train.steps_per_epoch": 100, "preprocess.channels": 3, "augment.variants": 0,
                      "train.foreground_crop_fraction": 0.33},
        # tiles of the photograph at half size (640 px, 9 tiles): a lesion (~150 px) fits a tile
        # with its surroundings, and validation stays a small share of the training wall time
        "modes": {"resize": {"preprocess.size": 256},
                  "tiles": {"preprocess.tile_size": 256, "preprocess.tile_overlap": 32, "preprocess.scale": 0.5}},
        "bar": "tiles Dice >= resize Dice - 0.01",
    },
}


def isbi_source(data: Path, ingested: Path) -> pd.DataFrame:
    """Sections as ingested images, the masks inverted so that membranes are the foreground."""
    for n in range(30):
        write_png(ingested / "images" / f"{n}.png", read_image(data / "images" / f"{n}.png"))
        write_png(ingested / "masks" / f"{n}.png", (255 - read_image(data / "masks" / f"{n}.png")).astype(np.uint8))
    return pd.DataFrame({"id": [str(n) for n in range(30)],
                         "split": ["train" if n < 20 else "val" if n < 25 else "test" for n in range(30)],
                         "has_mask": True})


def soybean_source(data: Path, ingested: Path) -> pd.DataFrame:
    """Photographs as ingested images (PNG), lesion masks as they are (255 = lesion)."""
    numbers = range(1, 64)
    for n in numbers:
        write_png(ingested / "images" / f"image{n}.png", read_image(data / "images" / f"image{n}.jpeg"))
        write_png(ingested / "masks" / f"image{n}.png", read_image(data / "masks" / f"image{n}.png"))
    return pd.DataFrame({"id": [f"image{n}" for n in numbers],
                         "split": ["train" if n <= 44 else "val" if n <= 50 else "test" for n in numbers],
                         "has_mask": True})


def run_mode(raw: dict, ingested: Path, split: pd.DataFrame, scratch: Path) -> dict:
    params = parse_params(raw, "bench/tiles_quality.py")
    seed_everything(params.seed)
    from activeseg.training import train

    load_before = [round(load, 2) for load in os.getloadavg()]
    prepared = scratch / "prepared"
    started = time.perf_counter()
    transform = preprocess(ingested, split, params.preprocess, prepared)
    train_set, val_set, test_set = (load_split_arrays(prepared, name) for name in ("train", "val", "test"))
    augmented = augment(train_set, build_pipeline(params.augment.pipeline, params.seed), params.augment.variants)
    prepare_seconds = time.perf_counter() - started
    started = time.perf_counter()
    history = train(params.train, params.epochs, transform, augmented, val_set, scratch / "model.keras",
                    seed=params.seed)
    train_seconds = time.perf_counter() - started
    model = load_model(scratch / "model.keras")
    started = time.perf_counter()
    maps = ((image_id, mask, probabilities, ignore) for image_id, _, mask, ignore, probabilities
            in split_probability_maps(model, transform, test_set, ingested, batch_size=8))
    summary, _, _ = evaluate_maps(maps, params.evaluate.threshold, thresholds=())
    evaluate_seconds = time.perf_counter() - started
    print(history.to_string(index=False))
    steps = len(history) * params.train.steps_per_epoch
    return {"dice": round(summary["dice"], 4), "precision": round(summary["precision"], 4),
            "recall": round(summary["recall"], 4), "train_seconds": round(train_seconds, 1),
            "train_steps": steps, "seconds_per_step_with_validation": round(train_seconds / steps, 2),
            "load_average_before": load_before,
            "iou": round(summary["iou"], 4), "mean_dice": round(summary["mean_dice"], 4),
            "prepare_seconds": round(prepare_seconds, 1), "evaluate_seconds": round(evaluate_seconds, 1),
            "train_samples": int(len(augmented)), "best_val_dice": round(float(history["val_dice"].max()), 4),
            "epochs_run": int(len(history)), "test_images": int(summary["images"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--params", default=str(REPO / "bench" / "params-isbi.yaml"))
    parser.add_argument("--data", default=None, help="the data set's folder (default ../shared/datasets/...)")
    parser.add_argument("-S", "--set", action="append", default=[],
                        help="override a param of both modes (key=value) or of one (tiles:key=value)")
    parser.add_argument("--modes", default="resize,tiles", help="which modes to run, comma-separated")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    args = parser.parse_args()
    dataset = DATASETS[args.dataset]
    data = Path(args.data) if args.data else dataset["data"]
    if not (data / "images").is_dir():
        sys.exit(f"error: {data}/images not found; pass --data pointing at the {args.dataset} data set's folder")
    base = yaml.safe_load(Path(args.params).read_text())
    base["tracking"]["enabled"] = False
    settings = {**BUDGET, **dataset["overrides"]}
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        ingested = scratch / "ingested"
        split = (isbi_source if args.dataset == "isbi" else soybean_source)(data, ingested)
        for mode in args.modes.split(","):
            raw = copy.deepcopy(base)
            assignments = [f"{key}={value}" for key, value in {**settings, **dataset["modes"][mode]}.items()]
            for given in args.set:
                target, _, assignment = given.partition(":") if ":" in given.split("=", 1)[0] else (mode, "", given)
                if target == mode:
                    assignments.append(assignment)
            for assignment in assignments:
                set_dotted(raw, assignment)
            print(f"== {args.dataset} {mode}: {' '.join(assignments)}", flush=True)
            result[mode] = {**run_mode(raw, ingested, split, scratch / mode), "settings": assignments,
                            "load_average_after": [round(load, 2) for load in os.getloadavg()]}
            print(json.dumps(result[mode]), flush=True)
    if "tiles" in result and "resize" in result:
        result["dice_gain_tiles_over_resize"] = round(result["tiles"]["dice"] - result["resize"]["dice"], 4)
        result["train_seconds_ratio_tiles_over_resize"] = round(
            result["tiles"]["train_seconds"] / result["resize"]["train_seconds"], 3)
    result.update({"bar": dataset["bar"], "data": str(data), "params": args.params,
                   "machine": f"{platform.node()} {os.cpu_count()} cpus", "load_average_after": os.getloadavg(),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
