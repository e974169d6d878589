"""Benchmark (issues 5 and 15): cost of scoring the pool with each scoring option versus its T
plain ``predict`` calls over the same images, in one run on the same model (bar: every ratio
<= 1.1). One row per option under ``options``:

- ``head_dropout``: T Monte-Carlo dropout passes; the scorer computes the U-Net's features once
  per batch and runs only the dropout + head tail T times (activeseg.acquisition.mc_samples), so
  the ratio should sit near 1/T plus the head's cost;
- ``tta``: the 8 flips / quarter turns (T = 8 whatever --passes), each a full prediction, turned back;
- ``head_dropout+distance_weighted``: the first with the distance-transform reduction;
- ``mc_network``: T passes of the whole network with every dropout on (the model has
  ``--dropout-placement`` dropout, encoder by default), the T copies of a batch as one batch.

The top-level ``ratio`` (and its seconds) is the ``head_dropout`` row, as before.

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
    parser.add_argument("--dropout-placement", default="encoder", choices=["head", "encoder", "encoder_decoder"])
    parser.add_argument("--repeats", type=int, default=3, help="timings per method; the fastest counts")
    args = parser.parse_args()
    seed_everything(0)
    model = build_unet(TrainParams(backbone=args.backbone, dropout=0.3, dropout_placement=args.dropout_placement), args.size, 3)
    images = np.random.default_rng(0).random((args.pool, args.size, args.size, 3)).astype(np.float32)

    def plain_predicts(passes):
        for _ in range(passes):
            model.predict(images, batch_size=args.batch_size, verbose=0)

    # option: (sampling, reduction, T)
    options = {"head_dropout": ("head_dropout", "mean", args.passes), "tta": ("tta", "mean", 8),
               "head_dropout+distance_weighted": ("head_dropout", "distance_weighted", args.passes),
               "mc_network": ("mc_network", "mean", args.passes)}
    rows, predict_seconds = {}, {}
    for name, (sampling, reduction, passes) in options.items():
        def scoring():
            score_pool(model, images, "mc_dropout", passes, reduction, args.batch_size, seed=0, sampling=sampling)

        scoring(), plain_predicts(passes)   # warm-up: graph tracing is not what is measured
        seconds = best_of(args.repeats, scoring)
        if passes not in predict_seconds:
            predict_seconds[passes] = best_of(args.repeats, lambda: plain_predicts(passes))
        rows[name] = {"scoring_seconds": round(seconds, 3), "t_predicts_seconds": round(predict_seconds[passes], 3),
                      "passes": passes, "ratio": round(seconds / predict_seconds[passes], 3),
                      "ratio_to_one_predict": round(seconds / (predict_seconds[passes] / passes), 3)}
    head = rows["head_dropout"]
    result = {"mc_scoring_seconds": head["scoring_seconds"], "t_predicts_seconds": head["t_predicts_seconds"],
              "ratio": head["ratio"], "ratio_to_one_predict": head["ratio_to_one_predict"], "options": rows,
              "arguments": vars(args), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
              "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
