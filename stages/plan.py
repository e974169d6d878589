"""DVC stage plan: the ingested data's fingerprint → a value and a reason for every param left at `auto`."""

import argparse

from activeseg.errors import run_main
from activeseg.ingest import read_manifest
from activeseg.outputs import write_json
from activeseg.params import load_params
from activeseg.plan import describe, make_plan
from activeseg.split import read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ingested", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="the plan (JSON) to write")
    args = parser.parse_args()
    plan = make_plan(load_params(args.params), read_manifest(args.ingested), read_split(args.split))
    write_json(args.out, plan)
    print(describe(plan))


if __name__ == "__main__":
    run_main(main)
