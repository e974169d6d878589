"""DVC stage simulate: simulated active-learning rounds with the hidden pool masks as the oracle
(only when simulation.enabled) → learning curves, summary metrics, figures, nested MLflow runs."""

import argparse
from pathlib import Path

import pandas as pd

from activeseg.errors import run_main
from activeseg.outputs import atomic_path, write_csv, write_json
from activeseg.params import load_params
from activeseg.plan import load_effective_params
from activeseg.preprocess import Transform, load_split_arrays
from activeseg.tracking import resume_run, run_to_resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--plan", required=True, help="the plan stage's data/plan.json (decides `auto` params)")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--run-record", required=True, help="the pipeline's MLflow run, parent of the simulation runs")
    parser.add_argument("--out", required=True, help="folder for the learning-curve tables")
    parser.add_argument("--figures", required=True, help="folder for the figures (PNG)")
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    sim = load_params(args.params).simulation  # when off, nothing the plan decides matters
    if not sim.enabled:
        from activeseg.simulation import write_disabled, write_disabled_figure

        with atomic_path(args.out, directory=True) as staging:
            write_disabled(staging, sim.strategies)
        with atomic_path(args.figures, directory=True) as staging:
            # a placeholder, not an empty folder: git keeps no empty folders, so `dvc exp apply`
            # and queued experiments could not restore one and would see the stage as changed
            write_disabled_figure(staging / "simulation_off.png")
        write_json(args.metrics, {"enabled": False})
        print("simulate: off (simulation.enabled: false); set it to true to compare strategies on learning curves")
        return
    from activeseg.simulation import SimulationData, learning_curves, simulate, summarize, summary_metrics, write_figures

    params = load_effective_params(args.params, args.plan)

    run_id = run_to_resume(params.tracking, args.run_record)
    data = SimulationData(Transform.load(Path(args.prepared) / "stats.json"),
                          *(load_split_arrays(args.prepared, split) for split in ("train", "pool", "val", "test")))
    with resume_run(run_id) as mlflow:
        def log_run(strategy, seed, curve):
            if mlflow:
                # a nested run lands in the default experiment unless told the parent's
                experiment_id = mlflow.active_run().info.experiment_id
                with mlflow.start_run(run_name=f"simulation {strategy} seed {seed}", nested=True,
                                      experiment_id=experiment_id):
                    mlflow.log_params({"strategy": strategy, "seed": seed, "rounds": sim.rounds,
                                       "images_per_round": sim.images_per_round,
                                       "epochs_per_round": sim.epochs_per_round,
                                       "steps_per_epoch": sim.steps_per_epoch})
                    for row in curve.itertuples():
                        mlflow.log_metric("test_dice", row.dice, step=int(row.labeled))
                        for name in ("spearman", "error_lift"):
                            if pd.notna(getattr(row, name)):
                                mlflow.log_metric(f"score_error_{name}", getattr(row, name), step=int(row.labeled))

        runs, references = simulate(params, data, on_run=log_run)
        summary = summarize(runs, references, sim.strategies, sim.target_fraction)
        with atomic_path(args.out, directory=True) as staging:
            write_csv(staging / "learning_curves.csv", learning_curves(runs, sim.strategies))
            write_csv(staging / "runs.csv", runs.round(6))
            write_csv(staging / "full_pool.csv", references.round(6))
        with atomic_path(args.figures, directory=True) as staging:
            write_figures(staging, runs, summary, sim.strategies)
        write_json(args.metrics, summary)
        if mlflow:
            mlflow.log_metrics(summary_metrics(summary))
            mlflow.log_artifacts(args.out, artifact_path="simulation")
            mlflow.log_artifacts(args.figures, artifact_path="simulation")
    for strategy, values in summary["strategies"].items():
        print(f"simulate: {strategy}: labels to reach {summary['target_dice']:.3f} Dice: "
              f"{values['labels_to_target'] or 'not reached'}, AULC {values['aulc']:.4f}")


if __name__ == "__main__":
    run_main(main)
