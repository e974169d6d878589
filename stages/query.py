"""DVC stage query: score the unlabeled pool (images, or with preprocess.tile_size tiles), rank it,
export the K picked for annotation (Labelme files, and Label Studio tasks in export/label_studio/)."""

import argparse
from pathlib import Path

from activeseg.acquisition import PoolScores, pick, rank, score_pool
from activeseg.annotation import LABEL_STUDIO_FOLDER, document_path, export_for_annotation
from activeseg.errors import run_main
from activeseg.outputs import atomic_path, write_csv, write_json
from activeseg.params import load_params
from activeseg.preprocess import Transform, load_split_arrays
from activeseg.tracking import recorded_run_name, resume_run, run_to_resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--ingested", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--run-record", required=True)
    parser.add_argument("--out", required=True, help="folder for ranking.csv, export/ and uncertainty/")
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    params = load_params(args.params)
    query = params.query
    run_id = run_to_resume(params.tracking, args.run_record)
    model_version = recorded_run_name(args.run_record)
    served_export = document_path(Path(args.out) / "export")
    transform = Transform.load(Path(args.prepared) / "stats.json")
    pool = load_split_arrays(args.prepared, "pool")
    tiles = bool(transform.tile_size)
    scored, exported = PoolScores.empty(pool.images.shape[1:3]), pool.ids
    if len(pool.ids):
        # imported here: TensorFlow takes seconds to load, wasted on a user's data with no pool
        from activeseg.model import load_model
        from activeseg.runtime import seed_everything

        seed_everything(params.seed)
        model = load_model(args.model)

        def score(arrays, keep_maps=True):
            return score_pool(model, transform.normalized(arrays.images), query.strategy, query.mc_dropout_passes,
                              query.reduction, query.batch_size, params.seed, query.sampling,
                              padding=arrays.ignore if tiles else None, keep_maps=keep_maps)

        # a pool of tiles keeps no maps (they would be full-resolution maps of every pool image)
        scored = score(pool, keep_maps=not tiles)
    ranking = rank(pool.ids, scored.scores, query.strategy, tiles=tiles, seed=params.seed)
    chosen = pick(ranking, pool.ids, scored.embeddings, query.top_k, query.candidates_per_pick, params.seed)
    if tiles and chosen:  # the picked tiles' maps, for their polygons and uncertainty pictures
        picked = pool.subset(chosen)
        scored, exported = score(picked), picked.ids
    with atomic_path(args.out, directory=True) as staging:
        write_csv(staging / "ranking.csv", ranking)
        export_for_annotation(staging, chosen, exported, scored, args.ingested, query.strategy,
                              params.evaluate.threshold, query.label, transform.tile_size, transform.scale,
                              ranking=ranking, model_version=model_version, served_export=served_export)
    summary = {"pool_size": int(len(ranking)), "exported": len(chosen), "strategy": query.strategy,
               "top_score": float(ranking["score"].max()) if len(ranking) else 0.0,
               "mean_score": float(ranking["score"].mean()) if len(ranking) else 0.0}
    write_json(args.metrics, summary)
    what = "tiles" if transform.tile_size else "images"
    print(f"query: ranked {len(ranking)} pool {what} by {query.strategy}; exported {len(chosen)} with "
          f"pre-filled Labelme JSON to {Path(args.out) / 'export'} for annotation, and as Label Studio tasks "
          f"(model_version {model_version}) to {Path(args.out) / 'export' / LABEL_STUDIO_FOLDER}")
    with resume_run(run_id) as mlflow:
        if mlflow:
            mlflow.log_metrics({f"query_{key}": value for key, value in summary.items() if key != "strategy"})
            mlflow.log_artifact(str(Path(args.out) / "ranking.csv"), artifact_path="query")
            mlflow.log_artifacts(str(Path(args.out) / "uncertainty"), artifact_path="query/uncertainty")


if __name__ == "__main__":
    run_main(main)
