"""End to end: the real `dvc repro` and `dvc exp run` in a temporary git clone on tiny data,
with the MLflow store they write checked afterwards."""

from __future__ import annotations

import json

import pytest

from conftest import FINISHED_REPRO_LOG, copy_project, run, set_params

pytestmark = pytest.mark.slow

STAGE_OUTPUTS = [
    "data/ingested/manifest.csv", "data/split/split.csv", "data/prepared/train.npz",
    "data/prepared/stats.json", "data/augmented/train.npz", "metrics/augment_preview.png",
    "models/model.keras", "models/mlflow_run.json", "metrics/train.json", "metrics/train_history.csv",
    "data/query/ranking.csv", "metrics/query.json", "metrics/evaluate.json", "metrics/per_image.csv",
]


# TensorFlow's C++ log (oneDNN notice, absl's pre-init notice, a tf.data NodeDef error), the
# framework line segmentation_models prints on import, MLflow's INFO lines (creating its tables)
CHATTER = ("oneDNN", "absl::InitializeLog", "NodeDef mentions", "Segmentation Models:", " INFO mlflow")


def mlflow_runs(project):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("activeseg")
    assert experiment is not None, "the pipeline created no MLflow experiment"
    return client, client.search_runs([experiment.experiment_id])


def test_repro_then_experiment(finished_project, tmp_path):
    # the shared project's `dvc repro` ran every stage, and said only what a person needs
    first = json.loads((finished_project.parent / FINISHED_REPRO_LOG).read_text())
    for stage in ("ingest", "split", "preprocess", "augment", "train", "query", "evaluate"):
        assert f"Running stage '{stage}'" in first["stdout"]
    for output in STAGE_OUTPUTS:
        assert (finished_project / output).is_file(), f"{output} was not written"
    plan = json.loads((finished_project / "data" / "plan.json").read_text())
    assert plan["params"]["train.architecture"]["value"] == "sm_unet", "not the default run's architecture"
    # progress, actionable warnings and one summary line per stage: none of the libraries' chatter
    chatter = [line for line in (first["stdout"] + first["stderr"]).splitlines()
               if any(noise in line for noise in CHATTER)]
    assert not chatter, chatter

    project = copy_project(finished_project, tmp_path / "project")
    revision = run(["git", "rev-parse", "--short=7", "HEAD"], project).stdout.strip()
    # the query stage clusters its candidates: 2 picks, each the best of 2 (see query_picks_clustered)
    set_params(project, query__candidates_per_pick=2)
    requeried = run(["dvc", "repro"], project)
    ran = [line for line in requeried.stdout.splitlines() if line.startswith("Running stage")]
    assert "Running stage 'query':" in ran and "Running stage 'train':" not in ran, ran
    query_picks_clustered(project)

    again = run(["dvc", "repro"], project)
    ran = [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'collect_annotations':"], "only the always-changed stage may run again"

    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    (workspace,) = metrics.values()  # keyed by "" (the workspace) when no revision is asked for
    evaluate = workspace["data"]["metrics/evaluate.json"]["data"]
    for name in ("dice", "f1", "precision", "recall", "iou"):
        assert 0.0 <= evaluate[name] <= 1.0

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline"], project)
    run(["dvc", "exp", "run", "-n", "two-epochs", "-S", "epochs=2"], project)
    table = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    experiments = [
        experiment["revs"][0]
        for baseline in table for experiment in (baseline.get("experiments") or [])
    ]
    two_epochs = [exp for exp in experiments if exp.get("name") == "two-epochs"]
    assert two_epochs, f"experiment missing from dvc exp show: {[exp.get('name') for exp in experiments]}"
    data = two_epochs[0]["data"]
    assert data["params"]["params.yaml"]["data"]["epochs"] == 2
    assert "dice" in data["metrics"]["metrics/evaluate.json"]["data"]

    client, runs = mlflow_runs(project)
    assert len(runs) == 2, "expected one MLflow run per pipeline execution"
    by_name = {mlflow_run.data.tags.get("dvc_exp_name"): mlflow_run for mlflow_run in runs}
    # the baseline run is named after its commit (the outputs written before train are not edits)
    assert by_name[None].info.run_name == f"main@{revision}"
    assert by_name[None].info.status == by_name["two-epochs"].info.status == "FINISHED"
    experiment_run = by_name["two-epochs"]
    assert experiment_run.data.params["epochs"] == "2"
    assert experiment_run.data.params["train.backbone"] == "resnet18"
    assert len(experiment_run.data.tags["git_revision"]) == 40
    assert experiment_run.data.tags["dvc_baseline_rev"] == experiment_run.data.tags["git_revision"]
    for name in ("test_dice", "test_f1", "test_precision", "test_recall", "test_iou", "query_pool_size"):
        assert name in experiment_run.data.metrics
    assert len(client.get_metric_history(experiment_run.info.run_id, "val_dice")) == 2


def query_picks_clustered(project):
    """The query stage scored by its strategy (MC-dropout variances, at most 0.25, where the seeded
    random draws of a silently random query would mostly be above) and exported top_k = 2 distinct
    images among the top 2 x 2 candidates."""
    import pandas as pd

    from activeseg.acquisition import SCORE_MAXIMUM

    ranking = pd.read_csv(project / "data" / "query" / "ranking.csv")
    assert len(ranking) >= 5 and set(ranking["strategy"]) == {"mc_dropout"}
    assert ranking["score"].between(0, SCORE_MAXIMUM["mc_dropout"]).all(), ranking["score"].tolist()
    exported = sorted(path.stem for path in (project / "data" / "query" / "export").glob("*.json"))
    assert len(exported) == 2 and set(exported) <= set(ranking["id"].astype(str)[:4])
    assert json.loads((project / "metrics" / "query.json").read_text())["exported"] == 2


def test_bad_params_stop_before_any_work(project):
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("epochs: 1", "epochs: two"))
    result = run(["dvc", "repro", "ingest"], project, check=False)
    assert result.returncode != 0
    assert "error: params.yaml: `epochs` must be a whole number, not 'two'" in result.stderr
    assert not (project / "data" / "ingested").exists()
