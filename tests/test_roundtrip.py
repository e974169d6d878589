"""The annotation round trip, for real: `dvc repro` → the query stage exports Labelme JSON → an
annotator corrects it → the JSON goes into data/raw → `dvc repro` → the image is in train, val and
test have not moved, the model retrained and the next query no longer offers it."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activeseg import imageio, synthetic
from activeseg.annotation import QUERIED_FLAG, prediction_polygons

from conftest import PLAIN_ARCHITECTURE, built_once, copy_project, file_digests, make_project, run, set_params

# Images of one's own in data/raw: LABELED with a mask, UNLABELED without (the pool); SIDE px, so
# that with preprocess.tile_size TILE each image is 2 x 2 whole tiles.
LABELED, UNLABELED, SIDE, TILE = 10, 3, 64, 32


def read_split(project):
    return pd.read_csv(project / "data" / "split" / "split.csv", dtype={"id": str}).set_index("id")


def raw_data_set() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(image_id, image, mask)`` of the raw images, labeled ones first: the pool's masks are the
    annotator's knowledge, hidden from the pipeline."""
    return list(synthetic.generate(LABELED + UNLABELED, SIDE, 1, 3, seed=5))


@pytest.fixture(scope="session")
def queried_raw_project(tmp_path_factory) -> Path:
    """A tiny clone with the :func:`raw_data_set` in data/raw after ``dvc repro query``: the first
    round of both round trips below, run once per session (each test works on a copy). Evaluate
    and simulate are left out: nothing here reads them, and the tile round trip runs them once."""

    def build(folder: Path) -> None:
        project = make_project(folder / "project", split__simulate=False, query__top_k=2,
                               split__val_count=2, split__test_count=2)
        raw = project / "data" / "raw"
        (raw / "images").mkdir(parents=True)
        (raw / "masks").mkdir()
        for index, (image_id, image, mask) in enumerate(raw_data_set()):
            imageio.write_png(raw / "images" / f"{image_id}.png", image)
            if index < LABELED:
                imageio.write_png(raw / "masks" / f"{image_id}.png", mask)
        run(["dvc", "repro", "query"], project)

    return built_once(tmp_path_factory, "queried_raw", build) / "project"


@pytest.mark.slow
@pytest.mark.xdist_group("queried_raw_project")  # make test: both round trips on the worker that built it
def test_queried_image_annotated_in_labelme_joins_train_and_val_test_stay(queried_raw_project, tmp_path):
    from activeseg import labelme

    project = copy_project(queried_raw_project, tmp_path / "project")
    raw = project / "data" / "raw"
    truth = {image_id: mask for image_id, _, mask in raw_data_set()[LABELED:]}

    before = read_split(project)
    assert set(before.index[before["split"] == "pool"]) == set(truth)
    ranking = pd.read_csv(project / "data" / "query" / "ranking.csv", dtype={"id": str})
    assert len(ranking) == UNLABELED and ranking["rank"].tolist() == list(range(1, UNLABELED + 1))
    export = project / "data" / "query" / "export"
    chosen = ranking["id"][:2].tolist()
    assert sorted(path.name for path in export.iterdir() if path.is_file()) == \
        sorted(f"{i}.{s}" for i in chosen for s in ("json", "png"))
    # the same images as Label Studio tasks, each image served from the project root, the model
    # named by its MLflow run
    tasks = json.loads((export / "label_studio" / "tasks.json").read_text())
    run_name = json.loads((project / "models" / "mlflow_run.json").read_text())["run_name"]
    assert run_name.startswith("main@")
    assert [(task["data"]["activeseg_id"], task["data"]["activeseg_rank"]) for task in tasks] == [(chosen[0], 1),
                                                                                                  (chosen[1], 2)]
    for task in tasks:
        assert (project / task["data"]["image"].removeprefix("/data/local-files/?d=")).is_file()
        assert task["predictions"][0]["model_version"] == run_name
    assert sorted(path.name for path in (project / "data" / "query" / "uncertainty").iterdir()) == \
        sorted(f"{image_id}.png" for image_id in chosen)
    picked = chosen[0]
    parsed = labelme.load(export / f"{picked}.json")   # the ingest reader accepts the export as it is
    assert parsed.queried and parsed.image_path == export / f"{picked}.png"
    train_images_before = json.loads((project / "metrics" / "train.json").read_text())["train_images"]

    # The annotator opens the pre-filled file in Labelme, corrects the polygons and saves.
    document = json.loads((export / f"{picked}.json").read_text())
    assert document["flags"] == {QUERIED_FLAG: True}
    assert (document["imageHeight"], document["imageWidth"]) == (SIDE, SIDE)
    corrected = prediction_polygons(truth[picked] / 255.0, SIDE, SIDE, 0.5)
    document["shapes"] = [{**shape_template(), "points": points} for points in corrected]
    annotations = raw / "annotations"
    annotations.mkdir()
    (annotations / f"{picked}.json").write_text(json.dumps(document))
    shutil.copyfile(export / f"{picked}.png", annotations / f"{picked}.png")
    run(["dvc", "repro", "query"], project)

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


def labelme_square(top_left, side):
    x, y = top_left
    return {**shape_template(), "points": [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]}


@pytest.mark.slow
def test_edited_export_survives_repro(finished_project, tmp_path):
    """On the built-in data, as people do it: a Labelme file corrected in place in
    data/query/export (a DVC output) is moved to data/raw/annotations by the next `dvc repro` and
    joins train; then the README's round (copy the export to data/raw/annotations, change one
    polygon, `dvc repro`): the annotated images join train, the rest of the built-in set stays,
    and the rescued edit survives the query stage replacing data/query."""
    project = copy_project(finished_project, tmp_path / "project")
    raw = project / "data" / "raw"
    shutil.rmtree(raw)   # a missing data/raw means the built-in set, as documented
    again = run(["dvc", "repro"], project)
    assert "Running stage 'ingest'" in again.stdout and "Running stage 'split'" not in again.stdout, \
        "without data/raw, ingest must give the built-in set it gave with data/raw/README.md alone"
    before = read_split(project)
    images_before = file_digests(project, ["data/ingested/images"])
    export = project / "data" / "query" / "export"
    edited, resaved = sorted(path.stem for path in export.glob("*.json"))

    # corrected in place: the model's polygons replaced by one square
    document = json.loads((export / f"{edited}.json").read_text())
    document["shapes"] = [labelme_square((10, 10), 20)]
    (export / f"{edited}.json").write_text(json.dumps(document, indent=2))
    edited_text = (export / f"{edited}.json").read_text()
    # opened and saved again without a change: Labelme's formatting, the image embedded
    document = json.loads((export / f"{resaved}.json").read_text())
    document["imageData"] = base64.b64encode((export / f"{resaved}.png").read_bytes()).decode()
    (export / f"{resaved}.json").write_text(json.dumps(document, indent=4, ensure_ascii=False))
    run(["dvc", "repro", "split"], project)   # up to the split: no training needed to see where it went

    annotations = raw / "annotations"
    assert sorted(path.name for path in annotations.iterdir()) == [f"{edited}.json", f"{edited}.png"]
    assert (annotations / f"{edited}.json").read_text() == edited_text
    assert (export / f"{resaved}.json").is_file(), "a re-save without an edit stays where it was"
    receipt = json.loads((project / "data" / "rescued_annotations.json").read_text())
    assert [entry["id"] for entry in receipt] == [edited]
    after = read_split(project)
    assert after.loc[edited, "split"] == "train" and bool(after.loc[edited, "queried"])
    mask = imageio.read_image(project / "data" / "ingested" / "masks" / f"{edited}.png") > 0
    assert mask[11:30, 11:30].all() and mask.sum() == pytest.approx(21 * 21, abs=45)
    assert after.drop(index=edited)["split"].equals(before.drop(index=edited)["split"])
    assert file_digests(project, ["data/ingested/images"]) == images_before

    # the README's round, literally: copy the export, change one polygon, dvc repro
    run(["bash", "-c", "mkdir -p data/raw/annotations && cp data/query/export/*.json data/query/export/*.png "
                       "data/raw/annotations/"], project)
    changed = annotations / f"{resaved}.json"
    document = json.loads(changed.read_text())
    document["shapes"] = document["shapes"][1:] + [labelme_square((4, 4), 8)]
    changed.write_text(json.dumps(document))
    set_params(project, **PLAIN_ARCHITECTURE)  # it retrains on them: the small model is enough to see it
    run(["dvc", "repro"], project)

    final = read_split(project)
    for image_id in (edited, resaved):
        assert final.loc[image_id, "split"] == "train" and bool(final.loc[image_id, "queried"]), image_id
    assert final.drop(index=[edited, resaved])["split"].equals(before.drop(index=[edited, resaved])["split"])
    assert (final["split"] == "train").sum() == (before["split"] == "train").sum() + 2
    assert file_digests(project, ["data/ingested/images"]) == images_before
    assert json.loads((project / "metrics" / "train.json").read_text())["train_images"] == \
        2 * (final["split"] == "train").sum(), "the model retrained on them (one augmented variant each)"
    assert (annotations / f"{edited}.json").read_text() == edited_text
    assert not {edited, resaved} & {path.stem for path in export.glob("*.json")}, "the next batch is exported"
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    assert status == {"collect_annotations": ["always changed"]}, status


@pytest.mark.slow
@pytest.mark.xdist_group("queried_raw_project")
def test_annotated_tile_joins_train_and_the_rest_of_its_image_stays_in_the_pool(queried_raw_project, tmp_path):
    """The README round trip with `preprocess.tile_size`: the query ranks the pool's tiles and
    exports tiles; they are copied to data/raw as the README says, one corrected in Labelme; after
    `dvc repro` exactly those tiles, with exactly their polygons, are in train, the rest of their
    images is ignored and those images' other tiles are still in the pool."""
    from activeseg import labelme
    from activeseg.preprocess import load_split_arrays
    from activeseg.tile_labels import TILE_KEY

    unlabeled, side, tile = UNLABELED, SIDE, TILE
    # The whole-image round's first run with tiles switched on. Its query only has to rank and
    # export tiles, which the whole-image model (32 px, as the tiles) does as well as one trained on
    # tiles; so only the cut and the query run now, and the `dvc repro` after the annotation
    # below runs every stage with tiles (plan, train and evaluate included).
    project = copy_project(queried_raw_project, tmp_path / "project")
    raw = project / "data" / "raw"
    # one pick more than the pool has images: at least one picked tile is not at 0, 0 (checked
    # below), whichever tiles the model ranks first
    picks = unlabeled + 1
    set_params(project, preprocess__tile_size=tile, query__top_k=picks)
    first = run(["dvc", "repro", "--single-item", "preprocess", "query"], project).stdout
    assert "Running stage 'preprocess'" in first and "Running stage 'train'" not in first

    before = read_split(project)
    pool_images = set(before.index[before["split"] == "pool"])
    ranking = pd.read_csv(project / "data" / "query" / "ranking.csv", dtype={"id": str, "source": str})
    assert list(ranking.columns) == ["id", "source", "y", "x", "score", "rank", "strategy"]
    assert len(ranking) == 4 * unlabeled and set(ranking["source"]) == pool_images
    assert set(ranking["id"]) == {f"{s}@y{y}_x{x}" for s in pool_images for y in (0, tile) for x in (0, tile)}
    export = project / "data" / "query" / "export"
    chosen = ranking["id"][:picks].tolist()
    assert sorted(path.name for path in export.iterdir() if path.is_file()) == \
        sorted(f"{i}.{s}" for i in chosen for s in ("json", "png"))
    picked = chosen[0]
    source, y, x = ranking.loc[0, ["source", "y", "x"]]
    assert imageio.read_image(export / f"{picked}.png").shape[:2] == (tile, tile)

    # README: copy the exported pairs to data/raw/annotations, correct one in Labelme (a polygon changed)
    run(["bash", "-c", "mkdir -p data/raw/annotations && cp data/query/export/*.json data/query/export/*.png "
                       "data/raw/annotations/"], project)
    edited = raw / "annotations" / f"{picked}.json"
    document = json.loads(edited.read_text())
    assert document[TILE_KEY] == {"image": source, "y": int(y), "x": int(x), "scale": 1.0, "tile_size": tile}
    document["shapes"] = document["shapes"][1:] + [{**shape_template(), "points": [[3, 4], [25, 6], [12, 27]]}]
    edited.write_text(json.dumps(document))
    expected = labelme.rasterize(labelme.load(edited), tile, tile)[0] > 0
    second = run(["dvc", "repro"], project).stdout
    assert all(f"Running stage '{stage}'" in second for stage in ("plan", "train", "query", "evaluate")), second

    after = read_split(project)
    sources = {labelme.load(raw / "annotations" / f"{i}.json").other[TILE_KEY]["image"] for i in chosen}
    for image_id in sources:
        assert after.loc[image_id, "split"] == "train" and bool(after.loc[image_id, "queried"]), image_id
    for name in ("val", "test"):
        assert sorted(after.index[after["split"] == name]) == sorted(before.index[before["split"] == name])
    train = load_split_arrays(project / "data" / "prepared", "train")
    pool = load_split_arrays(project / "data" / "prepared", "pool")
    # every copied tile labels its own block (not only the edited one, which may sit at 0, 0)
    placements = {i: labelme.load(raw / "annotations" / f"{i}.json").other[TILE_KEY] for i in chosen}
    assert {(where["y"], where["x"]) for where in placements.values()} != {(0, 0)}, \
        "every annotated tile is at 0, 0: a tile put in the wrong place would go unseen"
    for tile_name, where in placements.items():
        labels = expected if tile_name == picked else \
            labelme.rasterize(labelme.load(raw / "annotations" / f"{tile_name}.json"), tile, tile)[0] > 0
        assert tile_name in set(train.ids), f"{tile_name} was annotated but is not in train"
        position = list(train.ids).index(tile_name)
        np.testing.assert_array_equal(train.masks[position, ..., 0] > 0, labels, err_msg=tile_name)
        assert not train.ignore[position].any(), tile_name
    for image_id in sources:
        ignore = imageio.read_image(project / "data" / "ingested" / "ignore" / f"{image_id}.png") > 0
        own_block = np.zeros((side, side), bool)
        for where in placements.values():
            if where["image"] == image_id:
                own_block[where["y"]:where["y"] + tile, where["x"]:where["x"] + tile] = True
        np.testing.assert_array_equal(ignore, ~own_block, err_msg=image_id)
        image_tiles = {f"{image_id}@y{ty}_x{tx}" for ty in (0, tile) for tx in (0, tile)}
        assert set(pool.ids) & image_tiles == image_tiles - set(chosen), f"{image_id}'s other tiles wait in the pool"
        assert set(train.ids) & image_tiles == image_tiles & set(chosen), image_id
    new_ranking = pd.read_csv(project / "data" / "query" / "ranking.csv", dtype={"id": str})
    assert not set(chosen) & set(new_ranking["id"]) and len(new_ranking) == 4 * unlabeled - picks
