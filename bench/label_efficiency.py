"""Benchmark (issue 5): label efficiency of uncertainty sampling versus random sampling.

Runs :func:`activeseg.simulation.simulate` on a data set held in memory and writes, under
``--out``: ``runs.csv`` (one row per strategy, seed and round), ``full_pool.csv``,
``learning_curves.csv``, ``summary.json`` and the three figures. The figure of merit is
``labels(best uncertainty strategy to reach target_fraction of the full-pool Dice) /
labels(random)``, on the curves averaged over seeds (bar: <= 0.6), with its bootstrap 90%
interval over seeds (``labels_ratio_ci90`` per strategy; ``seeds`` in the summary).

Data sets:
- ``synthetic``: the built-in generator (activeseg.synthetic) at its default image size.
- ``isbi``: ``../shared/datasets/isbi2012-em`` cut into ``--tile``-px tiles (256: 4 per 512x512
  section; 96: 25); test and val are whole sections, so no tile of a test section is ever trained on.
  ``--isbi-foreground membrane`` scores the membranes (22% of pixels) rather than the cell
  interiors, whose Dice is 0.88 for a model that predicts foreground everywhere.
- ``soybean``: ``../shared/datasets/soybean-rust`` photographs resampled by ``--scale`` and cut into
  ``--tile``-px tiles (at 0.125 and 32 px: 160x160 or 160x96 px, 25 or 15 tiles, 22% of them holding
  a lesion), grouped by photograph; photographs 51-63 are the test set and 45-50 val (all their
  tiles; fixed, as bench/tiles_quality.py), ``--initial`` tiles of the rest start labeled and the
  others are the pool. The test Dice is pooled over the test pixels, so empty test tiles do not
  distort it. Most pool tiles are empty leaf: what random spends labels on.
- ``synthetic --pool-empty N``: the synthetic split with N object-free images added to the pool
  only. Not a bar data set: a check that uncertainty sampling finds what random wastes labels on
  when the pool has it to find.

    python bench/label_efficiency.py synthetic --out bench/results/label_efficiency_synthetic

Issue 15's runs (5 seeds, one thread each; the commands and figures are in bench/RESULTS.md):

    python bench/label_efficiency.py isbi --isbi-foreground membrane --tile 64 --size 64 --channels 1 \
        --architecture unet_plain --filters 8 --test 3 --val 1 --initial 8 --per-round 8 --rounds 4 \
        --seeds 5 --epochs 6 --steps 12 --strategies mc_dropout,random --sampling tta \
        --reduction foreground_border --max-pool 150 --out bench/results/label_efficiency_isbi
    python bench/label_efficiency.py synthetic --count 120 --test 20 --val 10 --size 32 --channels 3 \
        --architecture unet_plain --filters 8 --initial 4 --per-round 8 --rounds 4 --seeds 5 --epochs 10 \
        --steps 12 --strategies mc_dropout,random --sampling tta --reduction foreground_border \
        --out bench/results/label_efficiency_synthetic
    python bench/label_efficiency.py soybean --scale 0.125 --tile 32 --size 32 --architecture unet_plain \
        --filters 8 --epochs 8 --steps 20 --batch-size 8 --initial 24 --per-round 12 --rounds 5 --seeds 5 \
        --strategies entropy,mc_dropout,random --reduction foreground_border \
        --out bench/results/label_efficiency_soybean

``bench/results/label_efficiency_soybean_warm`` is the last command with ``--warm-start``, run
twice (``--seeds 5``, then ``--seeds 5 --first-seed 6``) and merged:
``python bench/combine_label_efficiency.py --out bench/results/label_efficiency_soybean_warm RUN1 RUN2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activeseg import imageio, synthetic  # noqa: E402
from activeseg.tiling import TileGrid, rescale, tile_id  # noqa: E402
from activeseg.outputs import write_csv, write_json  # noqa: E402
from activeseg.params import parse_params  # noqa: E402
from activeseg.preprocess import SplitArrays, Transform  # noqa: E402
from activeseg.simulation import SimulationData, learning_curves, simulate, summarize, write_figures  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
SOYBEAN_IMAGES = range(1, 64)
# soybean: the photographs held out whole, by number, as bench/tiles_quality.py splits them
SOYBEAN_TEST, SOYBEAN_VAL = list(range(51, 64)), list(range(45, 51))


def arrays(transform: Transform, items) -> SplitArrays:
    items = list(items)
    return SplitArrays(np.array([image_id for image_id, _, _ in items]),
                       np.stack([transform.resize_image(image) for _, image, _ in items]),
                       np.stack([transform.resize_mask(mask) for _, _, mask in items]),
                       np.ones(len(items), bool))


def split_groups(groups: dict, test: int, val: int, initial: int, seed: int, fixed: Optional[tuple] = None,
                 initial_groups: int = 0):
    """Whole groups (sections / images) to test and val; ``initial`` items of the rest start labeled,
    or with ``initial_groups`` every item of that many whole groups (a user who annotated a few
    whole photographs before tiling the rest). ``fixed``: (test names, val names) instead of
    ``test`` / ``val`` groups drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    rng.shuffle(names)
    test_names, val_names = fixed if fixed else (names[:test], names[test:test + val])
    test_items = [item for name in test_names for item in groups[name]]
    val_items = [item for name in val_names for item in groups[name]]
    rest_names = [name for name in names if name not in {*test_names, *val_names}]
    initial_items = [item for name in rest_names[:initial_groups] for item in groups[name]]
    rest = [item for name in rest_names[initial_groups:] for item in groups[name]]
    order = rng.permutation(len(rest))
    if initial_groups:
        return test_items, val_items, initial_items, [rest[i] for i in order]
    return test_items, val_items, [rest[i] for i in order[:initial]], [rest[i] for i in order[initial:]]


def soybean_groups(folder: Path, scale: float, tile: int, numbers=SOYBEAN_IMAGES) -> dict:
    """Photograph number → its tiles (id, image, mask): the photograph resampled by ``scale``, cut
    into non-overlapping ``tile``-px tiles (a remainder narrower than a tile is left out)."""
    groups = {}
    for number in numbers:
        image = rescale(imageio.read_image(folder / "images" / f"image{number}.jpeg"), scale)
        mask = rescale(imageio.read_image(folder / "masks" / f"image{number}.png"), scale, cv2.INTER_NEAREST)
        grid = TileGrid(image.shape[0] - image.shape[0] % tile, image.shape[1] - image.shape[1] % tile, tile)
        groups[number] = [(tile_id(f"image{number}", y, x), image[y:y + tile, x:x + tile], mask[y:y + tile, x:x + tile])
                          for y, x in grid.positions]
    return groups


def isbi_groups(tile: int = 256, foreground: str = "membrane") -> dict:
    """ISBI section → its ``tile``-px tiles (id, image, mask), cut edge to edge from the 512-px
    section (a remainder under ``tile`` px is dropped); ``foreground``: ``membrane`` or ``interior``."""
    folder = SHARED / "isbi2012-em"
    groups = {}
    for section in range(30):
        image = imageio.read_image(folder / "images" / f"{section}.png")
        mask = imageio.read_image(folder / "masks" / f"{section}.png")
        mask = mask if foreground == "interior" else 255 - mask
        corners = range(0, 512 - tile + 1, tile)
        groups[section] = [(f"{section}_{row}_{col}", image[row:row + tile, col:col + tile],
                            mask[row:row + tile, col:col + tile]) for row in corners for col in corners]
    return groups


def load_dataset(name: str, count: int, seed: int, isbi_foreground: str = "interior", tile: int = 256,
                 scale: float = 0.25):
    if name == "synthetic":
        return {image_id: [(image_id, image, mask)] for image_id, image, mask in synthetic.generate(count, 96, 2, 6, seed)}
    if name == "soybean":
        return soybean_groups(SHARED / "soybean-rust", scale, tile)
    return isbi_groups(tile, isbi_foreground)


def best_uncertainty(summary: dict) -> dict:
    """The figure of merit: the uncertainty strategy that reaches the target with the fewest
    labels, and its ratio to random's (both None when none reaches it)."""
    reached = {s: v for s, v in summary["strategies"].items() if s != "random" and v["labels_to_target"]}
    best = min(reached, key=lambda s: reached[s]["labels_to_target"]) if reached else None
    return {"best_uncertainty_strategy": best,
            "best_ratio_to_random": summary["strategies"][best]["labels_ratio_to_random"] if best else None}


def picked_foreground_share(runs, holds_foreground: dict) -> dict:
    """Per strategy, the share of the images its rounds revealed (``added_ids``) that hold any
    foreground: on a pool of mostly empty tiles, whether a strategy finds the lesions random misses."""
    shares = {}
    for strategy, rows in runs[runs["round"] > 0].groupby("strategy", sort=False):
        picked = [image_id for ids in rows["added_ids"].fillna("").astype(str) for image_id in ids.split()]
        shares[strategy] = round(float(np.mean([holds_foreground[image_id] for image_id in picked])), 4) if picked else None
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["synthetic", "isbi", "soybean"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=120, help="synthetic images generated")
    parser.add_argument("--isbi-foreground", choices=["interior", "membrane"], default="interior",
                        help="isbi: the class scored as foreground (the masks' 255 is cell interior, 78%% of "
                             "pixels; membrane makes Dice measure the thin boundaries the task is about)")
    parser.add_argument("--tile", type=int, default=0,
                        help="side of the tiles: isbi, cut from each 512-px section (default 256: 4 per section; "
                             "96: 25, a bigger, more varied pool of smaller regions to query), each resized to "
                             "--size; soybean, cut after --scale (default 64)")
    parser.add_argument("--scale", type=float, default=0.25, help="soybean: photographs resampled by this factor")
    parser.add_argument("--test", type=int, default=20, help="test groups (synthetic images / ISBI sections)")
    parser.add_argument("--val", type=int, default=10, help="val groups")
    parser.add_argument("--initial", type=int, default=4, help="labeled images at round 0")
    parser.add_argument("--initial-groups", type=int, default=0,
                        help="instead of --initial: every tile of this many whole photographs / sections starts "
                             "labeled, as a user who annotated a few whole images before tiling the rest")
    parser.add_argument("--size", type=int, default=64, help="model input side")
    parser.add_argument("--strategies", default="mc_dropout,entropy,bald,random")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=0, help="training steps per epoch (0: one pass over the labeled images)")
    parser.add_argument("--architecture", default="sm_unet", choices=["sm_unet", "unet_plain"])
    parser.add_argument("--filters", type=int, default=16, help="unet_plain: first-level filters")
    parser.add_argument("--channels", type=int, default=3, choices=[1, 3])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1,
                        help="seeds run are first-seed .. first-seed + seeds - 1: a later run with the next seeds "
                             "can be merged with an earlier one by bench/combine_label_efficiency.py")
    parser.add_argument("--warm-start", action="store_true", help="simulation.warm_start: each round continues "
                        "from the previous round's model")
    parser.add_argument("--sampling", default="head_dropout", choices=["head_dropout", "tta", "mc_network"])
    parser.add_argument("--dropout-placement", default="head", choices=["head", "encoder", "encoder_decoder"])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--reduction", default="mean", choices=["mean", "foreground_border", "distance_weighted"])
    parser.add_argument("--candidates-per-pick", type=int, default=1, help="query.candidates_per_pick (1: top-K)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pool", type=int, default=0, help="cap on the pool size (0: no cap), to bound the cost")
    parser.add_argument("--pool-empty", type=int, default=0,
                        help="synthetic: add this many object-free images to the pool only (test and val keep the "
                             "default mix): a pool padded with uninformative fields, as in sparse microscopy")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    params = parse_params({
        "seed": args.first_seed, "preprocess": {"size": args.size, "channels": args.channels},
        "train": {"batch_size": args.batch_size, "early_stopping_patience": args.epochs,
                  "architecture": args.architecture, "plain_filters": args.filters,
                  "dropout_placement": args.dropout_placement},
        "query": {"mc_dropout_passes": args.passes, "reduction": args.reduction, "sampling": args.sampling,
                  "candidates_per_pick": args.candidates_per_pick},
        "simulation": {"enabled": True, "strategies": strategies, "rounds": args.rounds,
                       "images_per_round": args.per_round, "epochs_per_round": args.epochs,
                       "steps_per_epoch": args.steps, "seeds": args.seeds, "warm_start": args.warm_start}})
    tile = args.tile or (64 if args.dataset == "soybean" else 256)
    groups = load_dataset(args.dataset, args.count, seed=0, isbi_foreground=args.isbi_foreground, scale=args.scale,
                          tile=tile)
    test, val, initial, pool = split_groups(groups, args.test, args.val, args.initial, seed=0,
                                            fixed=(SOYBEAN_TEST, SOYBEAN_VAL) if args.dataset == "soybean" else None,
                                            initial_groups=args.initial_groups)
    pool = pool[: args.max_pool] if args.max_pool else pool
    if args.pool_empty:
        pool += [(f"empty_{index:04d}", image, mask)
                 for index, (_, image, mask) in enumerate(synthetic.generate(args.pool_empty, 96, 0, 0, seed=1))]
    shape = Transform(args.size, args.channels, "unit", (0.0,), (1.0,))
    data = SimulationData(shape, arrays(shape, initial), arrays(shape, pool), arrays(shape, val), arrays(shape, test))
    with_foreground = [float(np.mean([mask.any() for _, _, mask in items])) for items in (initial, pool, test)]
    print(f"share of images holding foreground: initial {with_foreground[0]:.2f}, pool {with_foreground[1]:.2f}, "
          f"test {with_foreground[2]:.2f}")
    print(f"{args.dataset}: {len(initial)} initial, {len(pool)} pool, {len(val)} val, {len(test)} test images "
          f"at {args.size}px; strategies {strategies}; {args.rounds} rounds of {args.per_round}; "
          f"{args.epochs} epochs of {args.steps or 'one pass of'} steps; {args.seeds} seeds", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    partial = out / "runs_partial.csv"
    partial.unlink(missing_ok=True)

    def keep(strategy, seed, curve):   # partial results survive a run cut short
        curve.to_csv(partial, mode="a", header=not partial.exists(), index=False)

    runs, references = simulate(params, data, on_run=keep)
    summary = summarize(runs, references, strategies, params.simulation.target_fraction)
    summary["benchmark"] = {"dataset": args.dataset, "arguments": vars(args), "seconds": round(time.time() - started),
                            **best_uncertainty(summary),
                            "pool_foreground_share": round(with_foreground[1], 4),
                            "picked_foreground_share": picked_foreground_share(
                                runs, {image_id: bool(mask.any()) for image_id, _, mask in pool})}
    write_csv(out / "runs.csv", runs.round(6))
    write_csv(out / "full_pool.csv", references.round(6))
    write_csv(out / "learning_curves.csv", learning_curves(runs, strategies))
    write_figures(out, runs, summary, strategies)
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
