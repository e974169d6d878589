"""Benchmark (issue 5): cost of scoring the pool with T Monte-Carlo dropout passes versus T plain
``predict`` calls over the same images, in one run on the same model (bar: ratio <= 1.1).

The MC scorer computes the U-Net's features once per batch and runs only the dropout + head tail
T times (activeseg.acquisition.mc_samples), so the ratio should sit near 1/T plus the head's cost.

    python bench/scoring_cost.py --out bench/results/scoring_cost.json
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

from activeseg.acquisition import score_pool  # noqa: E402
from activeseg.model import build_unet  # noqa: E402
from activeseg.outputs import write_json  # noqa: E402
from activeseg.params import TrainParams  # noqa: E402
from activeseg.runtime import seed_everything  # noqa: E402


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pool", type=int, default=64, help="pool images")
    parser.add_argument("--size", type=int, default=64, help="image side (the pipeline's default)")
    parser.add_argument("--passes", type=int, default=8, help="T (the pipeline's default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method; the fastest counts")
    args = parser.parse_args()
    seed_everything(0)
    model = build_unet(TrainParams(backbone=args.backbone, dropout=0.3), args.size, 3)
    images = np.random.default_rng(0).random((args.pool, args.size, args.size, 3)).astype(np.float32)

    def mc_scoring():
        score_pool(model, images, "mc_dropout", args.passes, "mean", args.batch_size, seed=0)

    def plain_predicts():
        for _ in range(args.passes):
            model.predict(images, batch_size=args.batch_size, verbose=0)

    mc_scoring(), plain_predicts()   # warm-up: graph tracing is not what is measured
    mc_seconds = best_of(args.repeats, mc_scoring)
    predict_seconds = best_of(args.repeats, plain_predicts)
    result = {"mc_scoring_seconds": round(mc_seconds, 3), "t_predicts_seconds": round(predict_seconds, 3),
              "ratio": round(mc_seconds / predict_seconds, 3),
              "ratio_to_one_predict": round(mc_seconds / (predict_seconds / args.passes), 3),
              "arguments": vars(args), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
              "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
