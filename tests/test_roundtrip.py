"""The annotation round trip, for real: `dvc repro` → the query stage exports Labelme JSON → an
annotator corrects it → the JSON goes into data/raw → `dvc repro` → the image is in train, val and
test have not moved, the model retrained and the next query no longer offers it."""

import json
import shutil

import pandas as pd
import pytest

from activeseg import imageio, synthetic
from activeseg.annotation import QUERIED_FLAG, prediction_polygons

from conftest import make_project, run

LABELED, UNLABELED = 18, 8


def read_split(project):
    return pd.read_csv(project / "data" / "split" / "split.csv", dtype={"id": str}).set_index("id")


@pytest.mark.slow
def test_queried_image_annotated_in_labelme_joins_train_and_val_test_stay(tmp_path):
    from activeseg import labelme

    project = make_project(tmp_path / "project", split__simulate=False, query__top_k=2)
    raw = project / "data" / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    truth = {}
    for index, (image_id, image, mask) in enumerate(synthetic.generate(LABELED + UNLABELED, 48, 1, 3, seed=5)):
        imageio.write_png(raw / "images" / f"{image_id}.png", image)
        if index < LABELED:
            imageio.write_png(raw / "masks" / f"{image_id}.png", mask)
        else:
            truth[image_id] = mask   # the annotator's knowledge, hidden from the pipeline
    run(["dvc", "repro"], project)

    before = read_split(project)
    assert set(before.index[before["split"] == "pool"]) == set(truth)
    ranking = pd.read_csv(project / "data" / "query" / "ranking.csv", dtype={"id": str})
    assert len(ranking) == UNLABELED and ranking["rank"].tolist() == list(range(1, UNLABELED + 1))
    export = project / "data" / "query" / "export"
    chosen = ranking["id"][:2].tolist()
    assert sorted(path.name for path in export.iterdir()) == sorted(f"{i}.{s}" for i in chosen for s in ("json", "png"))
    assert sorted(path.name for path in (project / "data" / "query" / "uncertainty").iterdir()) == \
        sorted(f"{image_id}.png" for image_id in chosen)
    picked = chosen[0]
    parsed = labelme.load(export / f"{picked}.json")   # the ingest reader accepts the export as it is
    assert parsed.queried and parsed.image_path == export / f"{picked}.png"
    train_images_before = json.loads((project / "metrics" / "train.json").read_text())["train_images"]

    # The annotator opens the pre-filled file in Labelme, corrects the polygons and saves.
    document = json.loads((export / f"{picked}.json").read_text())
    assert document["flags"] == {QUERIED_FLAG: True} and (document["imageHeight"], document["imageWidth"]) == (48, 48)
    corrected = prediction_polygons(truth[picked] / 255.0, 48, 48, 0.5)
    document["shapes"] = [{**shape_template(), "points": points} for points in corrected]
    annotations = raw / "annotations"
    annotations.mkdir()
    (annotations / f"{picked}.json").write_text(json.dumps(document))
    shutil.copyfile(export / f"{picked}.png", annotations / f"{picked}.png")
    run(["dvc", "repro"], project)

    after = read_split(project)
    assert after.loc[picked, "split"] == "train" and bool(after.loc[picked, "queried"])
    for name in ("val", "test"):
        assert sorted(after.index[after["split"] == name]) == sorted(before.index[before["split"] == name])
    assert set(after.index[after["split"] == "pool"]) == set(truth) - {picked}
    mask = imageio.read_image(project / "data" / "ingested" / "masks" / f"{picked}.png") > 0
    expected = truth[picked] > 0
    assert (mask & expected).sum() / (mask | expected).sum() > 0.85
    assert json.loads((project / "metrics" / "train.json").read_text())["train_images"] > train_images_before
    new_ranking = pd.read_csv(project / "data" / "query" / "ranking.csv", dtype={"id": str})
    assert picked not in set(new_ranking["id"]) and len(new_ranking) == UNLABELED - 1


def shape_template():
    return {"label": "foreground", "group_id": None, "description": "", "shape_type": "polygon", "flags": {},
            "mask": None}
