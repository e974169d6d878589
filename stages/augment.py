"""DVC stage augment: labeled training arrays → originals + seeded albumentations variants, and a preview."""

import argparse
from pathlib import Path

from activeseg.augment import augment, build_pipeline, preview_grid
from activeseg.errors import run_main
from activeseg.params import load_params
from activeseg.preprocess import load_split_arrays, save_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", required=True, help="augmented training set (.npz)")
    parser.add_argument("--preview", required=True, help="preview grid PNG")
    args = parser.parse_args()
    params = load_params(args.params)
    train = load_split_arrays(args.prepared, "train")
    augmented = augment(train, build_pipeline(params.augment.pipeline, params.seed, train.images.shape[1]),
                        params.augment.variants)
    save_arrays(args.out, augmented)
    preview_grid(augmented, int(train.has_mask.sum()), params.augment.variants, Path(args.preview))
    print(f"augment: {int(train.has_mask.sum())} labeled training images → {len(augmented)} with variants")


if __name__ == "__main__":
    run_main(main)
