"""The ``activeseg`` console script: commands a user runs outside the DVC pipeline."""

from __future__ import annotations

import argparse
import os
import sys

from activeseg.errors import run_main


def ui(args: argparse.Namespace) -> None:
    """Start the MLflow UI over the project's store, bound to this machine only."""
    from activeseg.tracking import project_root, tracking_uri

    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
               "--host", "127.0.0.1", "--port", str(args.port)]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        command += ["--default-artifact-root", (project_root() / "mlartifacts").as_uri()]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store {tracking_uri()}); Ctrl-C stops it")
    os.execv(sys.executable, command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activeseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ui_parser = commands.add_parser("ui", help=ui.__doc__)
    ui_parser.add_argument("--port", type=int, default=5000)
    ui_parser.set_defaults(handler=ui)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.handler(args))


if __name__ == "__main__":
    main()
