"""Combine label-efficiency runs made separately (e.g. one strategy per process, side by side)
into one table, summary and set of figures, as if one run had compared all their strategies.

Valid only for runs of the same data set and settings. The runs may hold the same seeds (then
each seed's full-pool model and round 0 are the same, the simulation being deterministic, which is
checked) or different ones (``--first-seed``): a later run with more seeds extends an earlier one.

    python bench/combine_label_efficiency.py --out bench/results/label_efficiency_synthetic \\
        /tmp/runs/mc_dropout_random /tmp/runs/entropy /tmp/runs/bald
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from activeseg.outputs import write_csv, write_json  # noqa: E402
from activeseg.params import SimulationParams  # noqa: E402
from activeseg.simulation import learning_curves, summarize, write_figures  # noqa: E402
from label_efficiency import best_uncertainty  # noqa: E402

# arguments that may differ between the runs combined
FREE_ARGUMENTS = {"out", "strategies", "rounds", "seeds", "first_seed"}


def same_where_shared(per_seed: list[pd.Series]) -> bool:
    """Whether every seed present in several runs has the same Dice (a series indexed by seed) in each."""
    first = per_seed[0]
    for other in per_seed[1:]:
        shared = first.index.intersection(other.index)
        if not np.allclose(first[shared], other[shared]):
            return False
        first = pd.concat([first, other[~other.index.isin(shared)]])
    return True


def foreground_shares(summaries: list[dict]) -> dict:
    """The runs' ``pool_foreground_share`` (one pool, so the same in each) and, per strategy, the
    ``picked_foreground_share`` over all the runs' picks: each run's share weighted by its seeds
    (every seed picks as many images). Empty where the runs predate these figures."""
    benchmarks = [summary["benchmark"] for summary in summaries]
    if not all("picked_foreground_share" in benchmark for benchmark in benchmarks):
        return {}
    picked: dict = {}
    for summary, benchmark in zip(summaries, benchmarks):
        for strategy, share in benchmark["picked_foreground_share"].items():
            if share is not None:
                picked.setdefault(strategy, []).append((share, summary["seeds"]))
    return {"pool_foreground_share": benchmarks[0]["pool_foreground_share"],
            "picked_foreground_share": {strategy: round(sum(share * seeds for share, seeds in shares)
                                                        / sum(seeds for _, seeds in shares), 4)
                                        for strategy, shares in picked.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="--out folders of bench/label_efficiency.py")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    folders = [Path(folder) for folder in args.runs]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    arguments = [summary["benchmark"]["arguments"] for summary in summaries]
    # keys all runs have: a run made before an argument existed ran with its default
    shared = set.intersection(*(set(run_arguments) for run_arguments in arguments)) - FREE_ARGUMENTS
    settings = [{key: run_arguments[key] for key in shared} for run_arguments in arguments]
    if any(setting != settings[0] for setting in settings):
        sys.exit(f"error: {', '.join(map(str, folders))}: the runs differ in settings other than "
                 f"{', '.join(sorted(FREE_ARGUMENTS))}; combine only runs of the same data set and settings")
    references = [pd.read_csv(folder / "full_pool.csv") for folder in folders]
    runs = [pd.read_csv(folder / "runs.csv", keep_default_na=False) for folder in folders]
    first_rounds = [table[table["round"] == 0].groupby("seed")["dice"].first() for table in runs]
    if not same_where_shared([table.set_index("seed")["dice"] for table in references]) or \
            not same_where_shared(first_rounds):
        sys.exit("error: the runs' full-pool or round-0 Dice differ for a seed they share, so they are not the "
                 "same simulation; rerun them with the same code and settings")
    reference = pd.concat(references).drop_duplicates("seed").sort_values("seed").reset_index(drop=True)
    strategies = list(dict.fromkeys(strategy for table in runs for strategy in table["strategy"]))
    combined = pd.concat(runs).drop_duplicates(["strategy", "seed", "round"]).reset_index(drop=True)
    # the label-efficiency bench leaves target_fraction at its default
    target_fraction = SimulationParams().target_fraction
    summary = summarize(combined, reference, strategies, target_fraction)
    # areas under curves are comparable only over the same range: the labels every strategy reached
    common = int(combined.groupby("strategy")["labeled"].max().min())
    common_range = summarize(combined[combined["labeled"] <= common], reference, strategies, target_fraction)
    for strategy, values in summary["strategies"].items():
        values["aulc"], values["aulc_std"] = (common_range["strategies"][strategy][key] for key in ("aulc", "aulc_std"))
    summary["aulc_labeled_range"] = [int(combined["labeled"].min()), common]
    summary["benchmark"] = {"dataset": summaries[0]["benchmark"]["dataset"], "combined_from": [str(f) for f in folders],
                            "arguments": arguments, **best_uncertainty(summary), **foreground_shares(summaries)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "runs.csv", combined)
    write_csv(out / "full_pool.csv", reference)
    write_csv(out / "learning_curves.csv", learning_curves(combined, strategies))
    write_figures(out, combined, summary, strategies)
    write_json(out / "summary.json", summary)
    print(json.dumps({s: {k: v[k] for k in ("labels_to_target", "labels_ratio_to_random", "aulc")}
                      for s, v in summary["strategies"].items()}, indent=2))


if __name__ == "__main__":
    main()
