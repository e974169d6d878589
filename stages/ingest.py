"""DVC stage ingest: raw data (or the synthetic default) → canonical images, masks and manifest."""

import argparse

from activeseg.errors import run_main
from activeseg.ingest import ingest
from activeseg.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="canonical data folder to write")
    args = parser.parse_args()
    params = load_params(args.params)
    ingest(params.ingest, params.dataset_seed, args.out, params.split.predefined)


if __name__ == "__main__":
    run_main(main)
