"""Benchmark (issue 15): the Dice cost of dropout inside the network.

``train.dropout_placement: encoder`` (dropout after every encoder block and in the bottleneck,
Di Scandalea et al. 2019) makes Monte-Carlo passes through the whole network possible
(``query.sampling: mc_network``), but the dropout acts during training too. This trains the
ISBI bench model (:func:`isbi_quality.train_and_test`: sections 0-19 / 20-24 / 25-29, the same
params file and overrides) once per placement, same seed, rate and budget, and writes
``{"<placement>": {"dice": ..., ...}, "dice_cost_<placement>": head's Dice - its Dice, ...}``.

    python bench/dropout_placement.py -S epochs=6 -S train.plain_filters=8 -S augment.variants=2 \\
        --out bench/results/dropout_placement_isbi.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from activeseg.outputs import write_json  # noqa: E402
from activeseg.params import DROPOUT_PLACEMENTS, parse_params  # noqa: E402
from isbi_quality import set_dotted, train_and_test  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "bench" / "params-isbi.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "isbi2012-em"))
    parser.add_argument("-S", "--set", action="append", default=[], help="override a param, e.g. epochs=8")
    parser.add_argument("--dropout", type=float, default=0.2, help="train.dropout for every placement (Di Scandalea: 0.2)")
    parser.add_argument("--placements", default=",".join(DROPOUT_PLACEMENTS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "images").is_dir():
        sys.exit(f"error: {data}/images not found; pass --data pointing at the isbi2012-em folder")
    result: dict = {"params": args.params, "overrides": args.set, "dropout": args.dropout}
    for placement in args.placements.split(","):
        raw = yaml.safe_load(Path(args.params).read_text())
        for assignment in [*args.set, f"train.dropout={args.dropout}", f"train.dropout_placement={placement}"]:
            set_dotted(raw, assignment)
        figures, history = train_and_test(parse_params(raw, args.params), data)
        result[placement] = {"dice": figures["test_dice"], **figures, "val_dice_per_epoch":
                             [round(float(value), 4) for value in history["val_dice"]]}
        if "head" in result and placement != "head":
            result[f"dice_cost_{placement}"] = round(result["head"]["dice"] - result[placement]["dice"], 4)
        result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_json(args.out, result)   # after each placement: a run cut short keeps what it measured
        print(f"{placement}: test Dice {figures['test_dice']:.4f}, {figures['train_wall_seconds']} s "
              f"(load {figures['load_average_after'][0]:.1f})", flush=True)
    print(json.dumps({key: value for key, value in result.items() if key.startswith("dice_cost")}))


if __name__ == "__main__":
    main()
