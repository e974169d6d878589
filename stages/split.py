"""DVC stage split: manifest → sticky train / val / test / pool assignment."""

import argparse

from activeseg.errors import run_main
from activeseg.ingest import read_manifest
from activeseg.outputs import write_csv
from activeseg.params import load_params
from activeseg.split import assign_splits, fraction_notes, simulation_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ingested", required=True)
    parser.add_argument("--out", required=True, help="split CSV to write")
    args = parser.parse_args()
    params = load_params(args.params)
    split = assign_splits(read_manifest(args.ingested), params.split, params.dataset_seed)
    write_csv(args.out, split)
    print("split:", ", ".join(f"{name} {count}" for name, count in split["split"].value_counts().sort_index().items()))
    for note in [simulation_note(split, params.split), *fraction_notes(split, params.split)]:
        if note:
            print(note)


if __name__ == "__main__":
    run_main(main)
