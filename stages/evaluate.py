"""DVC stage evaluate: the trained model on the test split, at each test image's original size
→ metrics, per-image table, precision / recall vs threshold curve, overlays; all of it added to
the pipeline's MLflow run."""

import argparse
from pathlib import Path

from activeseg.errors import run_main
from activeseg.evaluation import evaluate_maps, failure_warning, overlay_ids, threshold_figure, write_overlay_maps
from activeseg.model import load_model
from activeseg.outputs import write_csv, write_json
from activeseg.params import load_params
from activeseg.predict import split_probability_maps
from activeseg.preprocess import Transform, load_split_arrays
from activeseg.tracking import log_evaluation, resume_run, run_to_resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--ingested", required=True, help="the test images and masks at their original size")
    parser.add_argument("--model", required=True)
    parser.add_argument("--run-record", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--per-image", required=True)
    parser.add_argument("--curve", required=True, help="CSV: precision / recall / f1 per threshold")
    parser.add_argument("--overlays", required=True)
    args = parser.parse_args()
    params = load_params(args.params)
    threshold = params.evaluate.threshold
    run_id = run_to_resume(params.tracking, args.run_record)
    transform = Transform.load(Path(args.prepared) / "stats.json")
    test = load_split_arrays(args.prepared, "test")
    model = load_model(args.model)
    summary, per_image, curve = evaluate_maps(
        ((image_id, mask, probabilities, ignore) for image_id, _, mask, ignore, probabilities
         in split_probability_maps(model, transform, test, args.ingested)), threshold)
    write_json(args.metrics, {key: round(value, 6) if isinstance(value, float) else value
                              for key, value in summary.items()})
    write_csv(args.per_image, per_image)
    write_csv(args.curve, curve)
    shown = test.subset(overlay_ids(per_image, params.evaluate.overlays))
    write_overlay_maps(args.overlays, per_image, {image_id: (image, mask, probabilities, ignore) for
                                                  image_id, image, mask, ignore, probabilities
                                                  in split_probability_maps(model, transform, shown, args.ingested)},
                       threshold, params.evaluate.overlays)
    print("evaluate: " + ", ".join(f"{name} {summary[name]:.4f}" for name in
                                   ("dice", "precision", "recall", "iou", "trivial_dice")))
    with resume_run(run_id) as mlflow:
        if mlflow:
            log_evaluation(mlflow, summary, [args.per_image, args.curve], args.overlays,
                           threshold_figure(curve, threshold))
    warning = failure_warning(summary)
    if warning:
        print(warning)


if __name__ == "__main__":
    run_main(main)
