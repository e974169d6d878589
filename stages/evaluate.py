"""DVC stage evaluate: the trained model on the test split → metrics, per-image table, overlays."""

import argparse
from pathlib import Path

from activeseg.errors import run_main
from activeseg.evaluation import evaluate, predict_probabilities, write_overlays
from activeseg.model import load_model
from activeseg.outputs import write_csv, write_json
from activeseg.params import load_params
from activeseg.preprocess import Transform, load_split_arrays
from activeseg.tracking import resume_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--run-record", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--per-image", required=True)
    parser.add_argument("--overlays", required=True)
    args = parser.parse_args()
    params = load_params(args.params)
    threshold = params.evaluate.threshold
    transform = Transform.load(Path(args.prepared) / "stats.json")
    test = load_split_arrays(args.prepared, "test")
    probabilities = predict_probabilities(load_model(args.model), transform.normalize(test.images))
    summary, per_image = evaluate(test.ids, test.masks, probabilities, threshold)
    write_json(args.metrics, {key: round(value, 6) if isinstance(value, float) else value
                              for key, value in summary.items()})
    write_csv(args.per_image, per_image)
    write_overlays(args.overlays, per_image, test.ids, test.images, test.masks, probabilities, threshold,
                   params.evaluate.overlays)
    print("evaluate: " + ", ".join(f"{name} {summary[name]:.4f}" for name in
                                   ("dice", "precision", "recall", "iou", "trivial_dice")))
    with resume_run(params.tracking, args.run_record) as mlflow:
        if mlflow:
            mlflow.log_metrics({f"test_{key}": value for key, value in summary.items()})
            mlflow.log_artifacts(args.overlays, artifact_path="overlays")
            mlflow.log_artifact(args.per_image)


if __name__ == "__main__":
    run_main(main)
