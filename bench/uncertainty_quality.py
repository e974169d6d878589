"""Benchmark (issue 15): does an uncertainty score find the images the model gets wrong?

Trains one small model per seed on a few labeled images of a real data set (the simulation's
:class:`activeseg.simulation.Trainer`: the train stage's model, loss and best epoch), scores the
pool with every strategy x sampling (``head_dropout``, ``tta``, ``mc_network``) x reduction, and
compares each image's score with its true error, 1 - Dice of the model's plain prediction
against the hidden mask (:func:`activeseg.acquisition.score_error_agreement`): the Spearman
correlation, and the error lift of the top K (their mean error over the pool's). One trained
model answers it in minutes, long before learning curves over many.

Data (split by image, with a fixed test set; the pool and the initial labeled tiles come from the
remaining images, reshuffled per seed):
- ``isbi``: ``../shared/datasets/isbi2012-em``, membranes as foreground, 96-px tiles (25 per
  512-px section), as the issue's measurement; 5 test and 3 val sections, and a pool of --pool tiles.
- ``soybean``: ``../shared/datasets/soybean-rust``, lesions as foreground, each photograph
  downscaled to 2 x --size and cut into 4 tiles; 12 test and 6 val photographs.

Writes ``--out`` (``bench/results/uncertainty_quality_<dataset>.json``):
``{"options": {"<strategy>/<sampling>": {"spearman", "spearman_per_seed", "error_lift",
"by_reduction": {...}}}, "seeds": N, ...}``; the top-level figures of an option are those of
``--reduction`` (default ``mean``), ``by_reduction`` holds every reduction's.

    python bench/uncertainty_quality.py isbi --out bench/results/uncertainty_quality_isbi.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activeseg import imageio  # noqa: E402
from activeseg.acquisition import (SCORE_MAXIMUM, image_errors, mc_samples, pixel_scores,  # noqa: E402
                                   reduce_scores, score_error_agreement)
from activeseg.evaluation import predict_probabilities  # noqa: E402
from activeseg.outputs import write_json  # noqa: E402
from activeseg.params import REDUCTIONS, SAMPLINGS, parse_params  # noqa: E402
from activeseg.preprocess import Transform  # noqa: E402
from activeseg.simulation import SimulationData, Trainer, dice_on_test  # noqa: E402
from label_efficiency import arrays, isbi_groups  # noqa: E402  (bench/ is the script's folder, on sys.path)

DATASETS = ROOT.parent / "shared" / "datasets"
STRATEGIES = [strategy for strategy in SCORE_MAXIMUM if strategy != "random"]


def soybean_groups(size: int) -> dict:
    """Photograph → its 4 tiles of ``size`` px after downscaling the photograph to 2 x ``size``."""
    import cv2

    groups = {}
    for path in sorted((DATASETS / "soybean-rust" / "images").glob("*.jpeg")):
        image = cv2.resize(imageio.read_image(path), (2 * size, 2 * size), interpolation=cv2.INTER_AREA)
        mask = imageio.read_image(DATASETS / "soybean-rust" / "masks" / f"{path.stem}.png")
        mask = cv2.resize(mask, (2 * size, 2 * size), interpolation=cv2.INTER_NEAREST)
        groups[path.stem] = [(f"{path.stem}_{row}_{col}", image[row:row + size, col:col + size],
                              mask[row:row + size, col:col + size]) for row in (0, size) for col in (0, size)]
    return groups


def split(groups: dict, test: int, val: int, initial: int, pool: int, seed: int):
    """Test groups fixed (seed 0); val, the initial labeled items and the pool drawn with ``seed``."""
    names = sorted(groups)
    np.random.default_rng(0).shuffle(names)
    test_items = [item for name in names[:test] for item in groups[name]]
    rest_names = names[test:]
    np.random.default_rng(seed).shuffle(rest_names)
    val_items = [item for name in rest_names[:val] for item in groups[name]]
    rest = [item for name in rest_names[val:] for item in groups[name]]
    order = np.random.default_rng(seed).permutation(len(rest))
    return test_items, val_items, [rest[i] for i in order[:initial]], [rest[i] for i in order[initial:initial + pool]]


def agreement_table(model, pool_images: np.ndarray, errors: np.ndarray, passes: int, batch_size: int,
                    count: int) -> dict:
    """``{"<strategy>/<sampling>": {reduction: agreement}}`` on one model's pool."""
    table = {}
    for sampling in SAMPLINGS:
        samples = np.concatenate([batch for _, batch, _ in mc_samples(model, pool_images, passes, batch_size,
                                                                      f"score pool ({sampling})", sampling)], axis=1)
        mean = samples.mean(axis=0)
        for strategy in STRATEGIES:
            maps = pixel_scores(strategy, samples)
            table[f"{strategy}/{sampling}"] = {reduction: score_error_agreement(reduce_scores(maps, mean, reduction),
                                                                                errors, count)
                                               for reduction in REDUCTIONS}
    return table


def with_reduction_options(options: dict) -> dict:
    """``options`` plus one ``<strategy>/<sampling>/<reduction>`` entry per reduction: the reduction
    is a query param like the other two, so each combination is an option a user can pick."""
    flat = {f"{option}/{reduction}": values for option, summary in options.items()
            for reduction, values in summary["by_reduction"].items()}
    return {**options, **flat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["isbi", "soybean"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=0, help="tile side (default: 96 isbi, 128 soybean)")
    parser.add_argument("--initial", type=int, default=8, help="labeled tiles the model is trained on")
    parser.add_argument("--pool", type=int, default=88, help="pool tiles scored")
    parser.add_argument("--filters", type=int, default=8, help="plain U-Net first-level filters")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=15, help="training steps per epoch")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--dropout-placement", default="encoder", choices=["head", "encoder", "encoder_decoder"])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=4, help="K of the error lift (images per round)")
    parser.add_argument("--reduction", default="mean", choices=list(REDUCTIONS),
                        help="the reduction whose figures are each option's top-level ones")
    args = parser.parse_args()
    size = args.size or (96 if args.dataset == "isbi" else 128)
    groups = isbi_groups(size) if args.dataset == "isbi" else soybean_groups(size)
    test_groups, val_groups = (5, 3) if args.dataset == "isbi" else (12, 6)
    params = parse_params({
        "seed": 1, "preprocess": {"size": size, "channels": 3},
        "train": {"architecture": "unet_plain", "plain_filters": args.filters, "batch_size": 8,
                  "early_stopping_patience": args.epochs, "dropout": args.dropout,
                  "dropout_placement": args.dropout_placement},
        "simulation": {"enabled": True, "epochs_per_round": args.epochs, "steps_per_epoch": args.steps}})
    transform = Transform(size, 3, "unit", (0.0,), (1.0,))
    started, per_seed, test_dice = time.time(), [], []
    for seed in range(1, args.seeds + 1):
        test, val, initial, pool = split(groups, test_groups, val_groups, args.initial, args.pool, seed)
        data = SimulationData(transform, arrays(transform, initial), arrays(transform, pool), arrays(transform, val),
                              arrays(transform, test))
        model = Trainer(params, data).fit(data.labeled_with([]), seed)
        test_dice.append(dice_on_test(model, data, 0.5))
        errors = image_errors(data.pool.masks, predict_probabilities(model, data.pool_normalized), 0.5)
        per_seed.append(agreement_table(model, data.pool_normalized, errors, args.passes, 16, args.top_k))
        best = max(per_seed[-1], key=lambda option: per_seed[-1][option][args.reduction]["spearman"] or -2)
        print(f"{args.dataset} seed {seed}: {len(initial)} labeled, {len(pool)} pool, {len(test)} test tiles; "
              f"test Dice {test_dice[-1]:.3f}; pool error {errors.mean():.3f}; best {best}/{args.reduction} "
              f"Spearman {per_seed[-1][best][args.reduction]['spearman']:.3f} ({time.time() - started:.0f} s)",
              flush=True)

    def summary_of(option: str, reduction: str) -> dict:
        values = [table[option][reduction] for table in per_seed]
        spearmans = [value["spearman"] for value in values]
        lifts = [value["error_lift"] for value in values if value["error_lift"] is not None]
        defined = [value for value in spearmans if value is not None]
        return {"spearman": round(float(np.mean(defined)), 4) if defined else None,
                "spearman_per_seed": [None if value is None else round(value, 4) for value in spearmans],
                "error_lift": round(float(np.mean(lifts)), 4) if lifts else None}

    options = {}
    for option in per_seed[0]:
        by_reduction = {reduction: summary_of(option, reduction) for reduction in REDUCTIONS}
        options[option] = {**by_reduction[args.reduction], "by_reduction": by_reduction}
    ranked = sorted(((values["spearman"], f"{option}/{reduction}") for option in options
                     for reduction, values in options[option]["by_reduction"].items()
                     if values["spearman"] is not None), reverse=True)
    result = {"options": with_reduction_options(options), "seeds": args.seeds,
              "best": {"option": ranked[0][1], "spearman": ranked[0][0]} if ranked else None,
              "test_dice_per_seed": [round(dice, 4) for dice in test_dice], "tile": size,
              "arguments": vars(args), "seconds": round(time.time() - started), "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, result)
    for spearman, option in ranked[:8]:
        print(f"  {option:45s} Spearman {spearman:+.3f}")
    print(json.dumps({"best": result["best"], "test_dice_per_seed": result["test_dice_per_seed"]}))


if __name__ == "__main__":
    main()
