"""DVC stage plan: the ingested data's fingerprint → a value and a reason for every param left at `auto`,
and the preprocess stage's share of those values in a file of their own."""

import argparse

from activeseg.errors import run_main
from activeseg.ingest import read_manifest
from activeseg.outputs import write_json
from activeseg.params import load_params
from activeseg.plan import PREPROCESS_KEYS, describe, make_plan, plan_values
from activeseg.split import read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ingested", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="the plan (JSON) to write")
    parser.add_argument("--preprocess-out", required=True,
                        help="the values preprocess reads (JSON), so that train-only changes leave it as it is")
    args = parser.parse_args()
    plan = make_plan(load_params(args.params), read_manifest(args.ingested), read_split(args.split))
    write_json(args.out, plan)
    write_json(args.preprocess_out, plan_values(plan, PREPROCESS_KEYS))
    print(describe(plan))


if __name__ == "__main__":
    run_main(main)
