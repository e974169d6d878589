"""DVC stage train: augmented training set + val → best U-Net by validation Dice, history, MLflow run."""

import argparse
import contextlib
import hashlib
from pathlib import Path

from activeseg.errors import run_main
from activeseg.outputs import write_csv, write_json
from activeseg.params import is_auto, load_params
from activeseg.plan import load_effective_params
from activeseg.preprocess import Transform, load_arrays, load_split_arrays
from activeseg.runtime import seed_everything
from activeseg.tracking import log_keras_model, log_plan, log_summary, mlflow_callbacks, start_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--plan", required=True, help="the plan stage's data/plan.json (decides `auto` params)")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--augmented", required=True)
    parser.add_argument("--manifest", required=True, help="ingest manifest: its hash is the data version")
    parser.add_argument("--model", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--run-record", required=True)
    args = parser.parse_args()
    params = load_effective_params(args.params, args.plan)
    from activeseg.distribute import is_chief, make_strategy, worker_path
    from activeseg.training import stall_warning, train, training_summary

    strategy = make_strategy(params.train.distribute)  # first: a multi-worker one sets up TF at startup
    chief = is_chief(strategy)
    seed_everything(params.seed)
    transform = Transform.load(Path(args.prepared) / "stats.json")
    train_set, val_set = load_arrays(args.augmented), load_split_arrays(args.prepared, "val")
    data_version = hashlib.sha1(Path(args.manifest).read_bytes()).hexdigest()[:12]
    # on a multi-worker cluster only the chief writes the model, the metrics and the MLflow run
    with (start_run(params, data_version, args.run_record) if chief else contextlib.nullcontext()) as mlflow, \
            worker_path(args.model, chief) as model_path:
        if mlflow:
            log_plan(mlflow, args.plan)
        # an explicit `epochs` (dvc exp run -S epochs=4) trains exactly that many; the plan's is a ceiling
        explicit_epochs = not is_auto(load_params(args.params).epochs)
        run = train(params.train, params.epochs, transform, train_set, val_set, model_path,
                    extra_callbacks=mlflow_callbacks(mlflow), seed=params.seed, strategy=strategy,
                    on_plateau=not explicit_epochs)
        if not chief:
            print("train: finished as a worker other than the chief; the chief writes the outputs")
            return
        summary = training_summary(run, len(train_set))
        write_csv(args.history, run.history)
        write_json(args.metrics, summary)
        if mlflow:
            log_summary(mlflow, summary, "train_")
            mlflow.log_artifact(args.history)
            if params.tracking.log_model:
                log_keras_model(mlflow, args.model)
    warning = stall_warning(summary)
    if warning:
        print(warning)


if __name__ == "__main__":
    run_main(main)
