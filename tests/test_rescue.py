"""Labelme files edited in place in the query export (a DVC output the next run replaces) are
moved to where ingest reads them; unchanged or merely re-saved ones stay; nothing is overwritten."""

import json

import numpy as np
import pytest

from activeseg import imageio
from activeseg.annotation import labelme_document
from activeseg.errors import ActivesegError
from activeseg.rescue import EXPORT_RECORD, make_default_raw_dir, rescue_edited_exports, shapes_digest

SQUARE = [[2.0, 2.0], [10.0, 2.0], [10.0, 10.0], [2.0, 10.0]]


def make_export(query, polygons_by_id):
    """What the query stage writes: export/<id>.png + <id>.json and the record of their shapes."""
    (query / "export").mkdir(parents=True)
    record = {}
    for index, (image_id, polygons) in enumerate(polygons_by_id.items()):
        imageio.write_png(query / "export" / f"{image_id}.png", np.full((16, 16, 3), index * 40, np.uint8))
        document = labelme_document(f"{image_id}.png", 16, 16, polygons, "foreground")
        (query / "export" / f"{image_id}.json").write_text(json.dumps(document, indent=2) + "\n")
        record[image_id] = shapes_digest(document)
    (query / EXPORT_RECORD).write_text(json.dumps(record))
    # the Label Studio tasks of the same images, which the rescue leaves alone
    (query / "export" / "label_studio").mkdir()
    (query / "export" / "label_studio" / "tasks.json").write_text(json.dumps([{"data": {"image": "x"}}]))
    (query / "export" / "label_studio" / "config.xml").write_text("<View/>\n")
    return query / "export"


def edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_edited_export_moves_with_its_image_and_resaved_or_deleted_ones_stay(tmp_path):
    export = make_export(tmp_path / "query", {"a": [SQUARE], "b": [SQUARE], "c": [SQUARE], "d": [SQUARE]})
    edit(export / "a.json", lambda doc: doc["shapes"][0]["points"].__setitem__(0, [3.0, 3.0]))
    # a Labelme re-save without an edit: other formatting, keys reordered, image embedded, ints for floats
    resaved = json.loads((export / "b.json").read_text())
    resaved["imageData"] = "aGVsbG8="
    resaved["shapes"] = [{"shape_type": "polygon", "points": [[int(x), int(y)] for x, y in SQUARE],
                          "label": "foreground", "group_id": None, "flags": {}}]
    (export / "b.json").write_text(json.dumps(resaved, indent=4, sort_keys=True))
    (export / "c.json").unlink()
    raw, receipt = tmp_path / "raw", tmp_path / "rescued.json"
    edited_text = (export / "a.json").read_text()

    rescued = rescue_edited_exports(tmp_path / "query", raw, receipt)

    assert [entry["id"] for entry in rescued] == ["a"]
    assert sorted(path.name for path in (raw / "annotations").iterdir()) == ["a.json", "a.png"]
    assert (raw / "annotations" / "a.json").read_text() == edited_text
    assert (raw / "annotations" / "a.png").read_bytes() == (export / "a.png").read_bytes()
    assert not (export / "a.json").exists() and (export / "b.json").exists() and (export / "d.json").exists()
    assert sorted(path.name for path in (export / "label_studio").iterdir()) == ["config.xml", "tasks.json"]
    assert json.loads(receipt.read_text()) == rescued
    # nothing more to rescue: the receipt keeps its bytes, so ingest (which depends on it) stays put
    before = receipt.read_bytes()
    assert rescue_edited_exports(tmp_path / "query", raw, receipt) == []
    assert receipt.read_bytes() == before


def test_a_broken_or_foreign_json_in_the_export_is_kept_not_lost(tmp_path):
    export = make_export(tmp_path / "query", {"a": [SQUARE]})
    (export / "a.json").write_text('{"shapes": [')      # Labelme crashed mid-save
    (export / "mine.json").write_text('{"shapes": []}')  # a file that was never exported
    rescued = rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json")
    assert sorted(entry["id"] for entry in rescued) == ["a", "mine"]
    assert (tmp_path / "raw" / "annotations" / "a.json").read_text() == '{"shapes": ['


def test_an_existing_annotation_is_never_overwritten(tmp_path):
    export = make_export(tmp_path / "query", {"a": [SQUARE], "b": [SQUARE]})
    edit(export / "a.json", lambda doc: doc["shapes"].clear())
    edit(export / "b.json", lambda doc: doc["shapes"].clear())
    annotations = tmp_path / "raw" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "a.json").write_text("the annotator's own work")
    with pytest.raises(ActivesegError, match=r"export/a\.json: edited in place, but .*annotations/a\.json"):
        rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json")
    assert (annotations / "a.json").read_text() == "the annotator's own work"
    assert (export / "a.json").exists() and (export / "b.json").exists(), "nothing moves when one conflicts"
    assert not (tmp_path / "rescued.json").exists()
    # the same edit already copied there (copied after editing): nothing to move, nothing lost
    (annotations / "a.json").write_text((export / "a.json").read_text())
    rescued = rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json")
    assert [entry["id"] for entry in rescued] == ["b"] and (export / "a.json").exists()


def test_an_export_without_its_record_stops_instead_of_guessing(tmp_path):
    export = make_export(tmp_path / "query", {"a": [SQUARE]})
    (tmp_path / "query" / EXPORT_RECORD).unlink()
    with pytest.raises(ActivesegError, match="exported_shapes.json: missing"):
        rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json")
    assert (export / "a.json").exists()


def test_no_export_yet_writes_an_empty_receipt(tmp_path):
    assert rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json") == []
    assert json.loads((tmp_path / "rescued.json").read_text()) == []
    assert not (tmp_path / "raw").exists()


def test_only_the_default_raw_dir_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_default_raw_dir("data/raw")
    make_default_raw_dir(str(tmp_path / "mine"))
    assert (tmp_path / "data" / "raw").is_dir() and not (tmp_path / "mine").exists()


def test_an_existing_image_of_the_same_size_but_other_pixels_stops_and_moves_nothing(tmp_path):
    export = make_export(tmp_path / "query", {"a": [SQUARE], "b": [SQUARE]})
    edit(export / "a.json", lambda doc: doc["shapes"].clear())
    edit(export / "b.json", lambda doc: doc["shapes"].clear())
    annotations = tmp_path / "raw" / "annotations"
    annotations.mkdir(parents=True)
    # b's export image is 16x16 of 40s; this one has b's name, its size in pixels and in bytes, other pixels
    imageio.write_png(annotations / "b.png", np.full((16, 16, 3), 41, np.uint8))
    theirs = (annotations / "b.png").read_bytes()
    assert len(theirs) == len((export / "b.png").read_bytes()) and theirs != (export / "b.png").read_bytes()
    with pytest.raises(ActivesegError, match=r"export/b\.png: .*annotations/b\.png already exists and differs"):
        rescue_edited_exports(tmp_path / "query", tmp_path / "raw", tmp_path / "rescued.json")
    # a (no conflict, sorted before b) stays too: the conflict is found before anything moves
    assert sorted(path.name for path in export.iterdir()) == ["a.json", "a.png", "b.json", "b.png", "label_studio"]
    assert sorted(path.name for path in annotations.iterdir()) == ["b.png"]
    assert (annotations / "b.png").read_bytes() == theirs
    assert not (tmp_path / "rescued.json").exists()
