"""Benchmark: does the training input pipeline keep the model fed?

Images/second of a training epoch through the project's pipeline (``activeseg.training``'s
seeded tf.data stream of uint8 arrays: shuffle, random crop, normalise, prefetch) versus
``model.fit`` on the same model with the very same batches already in memory as tensors.
The two are timed alternately, several rounds, and the medians compared; the bar (issue 4) is
pipeline / in-memory >= 0.9.

    python bench/input_pipeline.py [--params bench/params-isbi.yaml] [--steps 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activeseg.params import load_params  # noqa: E402
from activeseg.preprocess import SplitArrays, Transform  # noqa: E402
from activeseg.runtime import keras, seed_everything, tf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "bench" / "params-isbi.yaml"))
    parser.add_argument("--images", type=int, default=40, help="uint8 training images in the set")
    parser.add_argument("--steps", type=int, default=12, help="training steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    params = load_params(args.params)
    seed_everything(params.seed)
    from activeseg.model import build_unet
    from activeseg.training import build_loss, training_dataset

    size, channels = params.preprocess.size, params.preprocess.channels
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, size, size, channels), dtype=np.uint8)
    train_set = SplitArrays(np.arange(args.images).astype(str), images, (images > 100).astype(np.uint8)[..., :1],
                            np.ones(args.images, bool))
    transform = Transform(size, channels, params.preprocess.normalization, (0.5,) * channels, (0.25,) * channels)
    pipeline = training_dataset(train_set, transform, params.train, params.seed)
    batches = list(pipeline.take(args.steps))  # the same batches, materialised as tensors
    x_memory = tf.concat([x for x, _ in batches], axis=0)
    y_memory = tf.concat([y for _, y in batches], axis=0)
    per_epoch = int(x_memory.shape[0])

    model = build_unet(params.train, None, channels)
    model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate), loss=build_loss(params.train.loss))
    model.fit(pipeline, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up both paths
    model.fit(x_memory, y_memory, batch_size=params.train.batch_size, epochs=1, shuffle=False, verbose=0)

    rates = {"pipeline": [], "in_memory": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        model.fit(pipeline, steps_per_epoch=args.steps, epochs=1, verbose=0)
        rates["pipeline"].append(per_epoch / (time.perf_counter() - started))
        started = time.perf_counter()
        model.fit(x_memory, y_memory, batch_size=params.train.batch_size, epochs=1, shuffle=False, verbose=0)
        rates["in_memory"].append(per_epoch / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    figures = {"pipeline_images_per_s": round(medians["pipeline"], 3),
               "in_memory_images_per_s": round(medians["in_memory"], 3),
               "ratio": round(medians["pipeline"] / medians["in_memory"], 3),
               "rounds": {name: [round(v, 3) for v in values] for name, values in rates.items()},
               "batch": [params.train.batch_size, params.train.crop_size or size, channels],
               "steps": args.steps, "params": args.params, "load_average_after": os.getloadavg()}
    print(json.dumps(figures, indent=2))
    print(f"ratio {figures['ratio']:.3f}: {'MEETS' if figures['ratio'] >= 0.9 else 'MISSES'} the bar (>= 0.9)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
