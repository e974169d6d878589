"""Benchmark (issue 13): cost of sliding-window prediction of one 1280 x 1280 image (tiling,
normalising, blending the overlap, dividing the accumulators: activeseg.predict.probability_map)
versus the model time of the same tiles alone (pre-cut, pre-normalised, the same batches through
``predict_on_batch``), in one run on the same model (bar: ratio <= 1.3, so stitching is not the
bottleneck). For scale it also times the model over the grid without overlap (fewer tiles).

    python bench/sliding_window_cost.py --out bench/results/tiles_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activeseg.imageio import read_image  # noqa: E402
from activeseg.model import build_unet  # noqa: E402
from activeseg.outputs import write_json  # noqa: E402
from activeseg.params import TrainParams  # noqa: E402
from activeseg.predict import probability_map  # noqa: E402
from activeseg.preprocess import Transform  # noqa: E402
from activeseg.runtime import seed_everything  # noqa: E402
from activeseg.tiling import TileGrid  # noqa: E402
from scoring_cost import best_of  # noqa: E402  (bench/ is the script's folder, on sys.path)


def model_only(model, transform: Transform, image: np.ndarray, overlap: int, batch_size: int):
    """A function running the model over the grid's tiles, cut and normalised beforehand, and the
    number of tiles."""
    grid = TileGrid(image.shape[0], image.shape[1], transform.tile_size, overlap)
    tiles = transform.normalize(np.stack([tile for _, tile, _ in grid.tiles(image)]))

    def run():
        for first in range(0, len(tiles), batch_size):
            model.predict_on_batch(tiles[first:first + batch_size])

    return run, len(grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--image", help="an image to predict (default: random pixels; the content does not "
                                        "change the cost)")
    parser.add_argument("--side", type=int, default=1280, help="side of the random image")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method; the fastest counts")
    args = parser.parse_args()
    seed_everything(0)
    image = (read_image(args.image) if args.image else
             np.random.default_rng(0).integers(0, 256, (args.side, args.side, 3), dtype=np.uint8))
    transform = Transform(args.tile_size, 3, "unit", (0.0,), (1.0,), tile_size=args.tile_size,
                          tile_overlap=args.overlap)
    image = transform.to_channels(image)
    model = build_unet(TrainParams(backbone=args.backbone), None, 3)

    def sliding():
        probability_map(model, transform, image, args.batch_size)

    same_tiles, tiles = model_only(model, transform, image, args.overlap, args.batch_size)
    no_overlap, tiles_without_overlap = model_only(model, transform, image, 0, args.batch_size)
    sliding(), same_tiles(), no_overlap()  # warm-up: graph tracing is not what is measured
    sliding_seconds = best_of(args.repeats, sliding)
    model_seconds = best_of(args.repeats, same_tiles)
    no_overlap_seconds = best_of(args.repeats, no_overlap)
    result = {"sliding_window_seconds": round(sliding_seconds, 3), "model_seconds": round(model_seconds, 3),
              "ratio": round(sliding_seconds / model_seconds, 3), "tiles": tiles,
              "stitching_seconds": round(sliding_seconds - model_seconds, 3),
              "no_overlap": {"tiles": tiles_without_overlap, "model_seconds": round(no_overlap_seconds, 3),
                             "sliding_window_over_it": round(sliding_seconds / no_overlap_seconds, 3)},
              "image": args.image or f"random {args.side} x {args.side} RGB", "arguments": vars(args),
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
