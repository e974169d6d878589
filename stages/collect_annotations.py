"""DVC stage collect_annotations: move Labelme files edited inside the query export (a DVC output
that the next run replaces) to `<ingest.raw_dir>/annotations/`, where ingest reads them; create a
missing default data/raw."""

import argparse

from activeseg.errors import run_main
from activeseg.params import load_params
from activeseg.rescue import ANNOTATIONS_FOLDER, make_default_raw_dir, rescue_edited_exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--query", required=True, help="the query stage's folder (export/ and its record)")
    parser.add_argument("--receipt", required=True, help="JSON list of every move made so far")
    args = parser.parse_args()
    params = load_params(args.params)
    make_default_raw_dir(params.ingest.raw_dir)
    rescued = rescue_edited_exports(args.query, params.ingest.raw_dir, args.receipt)
    if rescued:
        print(f"collect_annotations: moved {len(rescued)} Labelme file(s) you edited in {args.query}/export to "
              f"{params.ingest.raw_dir}/{ANNOTATIONS_FOLDER} (ingest reads them there): "
              + ", ".join(entry["id"] for entry in rescued))


if __name__ == "__main__":
    run_main(main)
