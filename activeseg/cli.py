"""The ``activeseg`` console script: commands a user runs outside the DVC pipeline."""

from __future__ import annotations

import argparse
import os
import sys

from activeseg.errors import run_main


def ui_command(port: int, store_uri: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The MLflow UI command line and environment for a store (default: the project's), bound to
    127.0.0.1, one worker: a single person's browser needs no more."""
    from activeseg.tracking import project_root, project_store_uri, tracking_uri

    store_uri = store_uri or tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if store_uri == project_store_uri():
        command += ["--default-artifact-root", (project_root() / "mlartifacts").as_uri()]
    # the background job runner serves GenAI features (judges, scorers) this project does not use
    return command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ui_url(port: int, experiment_id: str | None) -> str:
    """The link to the experiment's runs table: MLflow 3 opens an experiment on its GenAI overview
    (traces, empty for this project) in a fresh browser, whatever the experiment's kind tag says."""
    base = f"http://127.0.0.1:{port}"
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id else base


def ui(args: argparse.Namespace) -> None:
    """Start the MLflow UI over the project's store, bound to this machine only."""
    from pathlib import Path

    from activeseg.params import TrackingParams, load_params
    from activeseg.tracking import existing_experiment_id, tracking_uri

    params = Path(args.params)
    experiment = load_params(params).tracking.experiment if params.is_file() else TrackingParams().experiment
    url = ui_url(args.port, existing_experiment_id(experiment))
    command, env = ui_command(args.port)
    # flushed: execve replaces the process, and with it whatever Python had not written yet
    print(f"MLflow UI on {url} (store {tracking_uri()}); Ctrl-C stops it", flush=True)
    os.execve(sys.executable, command, env)


def predict(args: argparse.Namespace) -> None:
    """Predict masks for new images (files or folders) at their original size."""
    from activeseg.predict import PredictOptions, predict as predict_images

    options = PredictOptions(threshold=args.threshold, probabilities=args.probabilities,
                             overlays=args.overlays, batch_size=args.batch_size)
    masks = predict_images(args.model, args.stats, args.inputs, args.out, options)
    print(f"predict: wrote {len(masks)} masks to {args.out}/masks"
          + (f", probability maps to {args.out}/probabilities" if args.probabilities else "")
          + (f", overlays to {args.out}/overlays" if args.overlays else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activeseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ui_parser = commands.add_parser("ui", help=ui.__doc__)
    ui_parser.add_argument("--port", type=int, default=5000)
    ui_parser.add_argument("--params", default="params.yaml", help="for the experiment's name (default: %(default)s)")
    ui_parser.set_defaults(handler=ui)
    predict_parser = commands.add_parser(
        "predict", help=predict.__doc__, description=predict.__doc__ + " Writes OUT/masks/<name>.png "
        "(0/255), and with the options OUT/probabilities/<name>.png (probability x 255) and "
        "OUT/overlays/<name>.png. Uses the training transform from --stats.")
    predict_parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    predict_parser.add_argument("--model", default="models/model.keras", help="trained model (default: %(default)s)")
    predict_parser.add_argument("--stats", default="data/prepared/stats.json",
                                help="the transform of the run that trained the model (default: %(default)s)")
    predict_parser.add_argument("--out", required=True, help="output folder")
    predict_parser.add_argument("--threshold", type=float, default=0.5,
                                help="probability above which a pixel is foreground (default: %(default)s; "
                                     "use the evaluate.threshold you evaluated with)")
    predict_parser.add_argument("--probabilities", action="store_true", help="also write probability maps")
    predict_parser.add_argument("--overlays", action="store_true", help="also write the images with the mask drawn")
    predict_parser.add_argument("--batch-size", type=int, default=8, help="images (with tiles: tiles) per forward pass")
    predict_parser.set_defaults(handler=predict)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.handler(args))


if __name__ == "__main__":
    main()
