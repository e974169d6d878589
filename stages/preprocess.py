"""DVC stage preprocess: canonical images → fixed-size uint8 arrays per split + normalisation stats."""

import argparse

from activeseg.errors import run_main
from activeseg.plan import PREPROCESS_KEYS, load_effective_params
from activeseg.preprocess import preprocess
from activeseg.split import read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--plan", required=True,
                        help="the plan stage's data/plan_preprocess.json (decides `auto` preprocess params)")
    parser.add_argument("--ingested", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="folder for <split>.npz and stats.json")
    args = parser.parse_args()
    params = load_effective_params(args.params, args.plan, PREPROCESS_KEYS)
    preprocess(args.ingested, read_split(args.split), params.preprocess, args.out)


if __name__ == "__main__":
    run_main(main)
