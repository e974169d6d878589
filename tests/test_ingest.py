"""Ingest: every format to the canonical form, every bad input as one line naming the file."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from activeseg import labelme
from activeseg.errors import ActivesegError
from activeseg.ingest import ingest
from activeseg.params import IngestParams, LabelmeParams


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def image(seed: int = 0, shape=(8, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def square_mask(shape=(8, 10), value=255, dtype=np.uint8) -> np.ndarray:
    mask = np.zeros(shape, dtype)
    mask[2:5, 3:7] = value
    return mask


def run_ingest(raw: Path, out: Path, **params) -> pd.DataFrame:
    return ingest(IngestParams(raw_dir=str(raw), **params), 0, out)


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def labelme_json(path: Path, shapes, image_path="", image_data=None, flags=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.0.1", "flags": flags or {}, "shapes": shapes, "imagePath": image_path,
                                "imageData": image_data, "imageHeight": 8, "imageWidth": 10}))
    return path


RECT = {"label": "cell", "points": [[3, 2], [6, 4]], "shape_type": "rectangle", "group_id": None, "flags": {}}
IGNORE = {"label": "__ignore__", "points": [[0, 0], [1, 1]], "shape_type": "rectangle", "group_id": None, "flags": {}}


def test_folder_pairs_with_unlabeled_images_gray_rgb_and_16_bit(tmp_path):
    raw = tmp_path / "raw"
    save(raw / "images" / "a.png", image(1))
    save(raw / "masks" / "a.png", square_mask())
    rgb = np.dstack([image(2), image(3), image(4)])
    save(raw / "images" / "b.tif", rgb)  # OpenCV writes BGR: the canonical PNG must hold RGB
    save(raw / "masks" / "b.tif", square_mask(value=1))
    save(raw / "images" / "c.png", (image(5).astype(np.uint16) * 257 + 1))
    manifest = run_ingest(raw, tmp_path / "out")
    assert list(manifest["id"]) == ["a", "b", "c"]
    assert list(manifest["labeled"]) == [True, True, False]
    assert list(manifest["source"]) == ["images/a.png", "images/b.tif", "images/c.png"]
    # 16-bit stays 16-bit (preprocess.intensity scales it, in the one transform)
    assert np.array_equal(read(tmp_path / "out" / "images" / "c.png"), image(5).astype(np.uint16) * 257 + 1)
    assert np.array_equal(read(tmp_path / "out" / "images" / "b.png"), rgb)  # same BGR bytes back from disk
    assert np.array_equal(read(tmp_path / "out" / "masks" / "b.png"), square_mask())
    assert manifest.loc[0, "foreground_fraction"] == pytest.approx(12 / 80)
    assert not (tmp_path / "out" / "masks" / "c.png").exists()
    reread = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert {"id", "source", "height", "width", "labeled", "foreground_fraction", "queried"} <= set(reread.columns)


@pytest.mark.parametrize("rule, expected_pixels", [("nonzero", 3), ("threshold:100", 2), ("value:7", 1)])
def test_mask_rule_binarises_and_is_reported(tmp_path, capsys, rule, expected_pixels):
    raw = tmp_path / "raw"
    save(raw / "images" / "a.png", image(shape=(2, 2)))
    save(raw / "masks" / "a.png", np.array([[0, 7], [100, 4000]], np.uint16))  # 16-bit label image
    run_ingest(raw, tmp_path / "out", mask_rule=rule)
    mask = read(tmp_path / "out" / "masks" / "a.png")
    assert set(np.unique(mask)) <= {0, 255} and (mask == 255).sum() == expected_pixels
    assert f"1 masks were not strictly 0/255 and were binarised by ingest.mask_rule={rule}" in capsys.readouterr().out


@pytest.mark.parametrize("rule, expected_pixels", [("nonzero", 3), ("threshold:100", 2), ("value:128", 1)])
def test_colour_masks_are_binarised_by_the_rule_on_any_channel(tmp_path, capsys, rule, expected_pixels):
    """A red outline on black, or a palette saved as RGB: foreground where any channel passes the rule."""
    raw = tmp_path / "raw"
    save(raw / "images" / "a.png", image(shape=(2, 2)))
    colours = np.array([[[0, 0, 0], [0, 0, 255]], [[0, 128, 0], [60, 0, 0]]], np.uint8)  # BGR: red, green, dark
    save(raw / "masks" / "a.png", colours)
    run_ingest(raw, tmp_path / "out", mask_rule=rule)
    mask = read(tmp_path / "out" / "masks" / "a.png")
    assert mask.shape == (2, 2) and set(np.unique(mask)) <= {0, 255} and (mask == 255).sum() == expected_pixels
    assert mask[0, 0] == 0 and "1 masks were not strictly 0/255" in capsys.readouterr().out


def test_tiff_stack_pages_become_examples(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    pages = [image(seed) for seed in range(3)]
    labels = [square_mask() if seed != 1 else np.zeros((8, 10), np.uint8) for seed in range(3)]
    assert cv2.imwritemulti(str(raw / "vol.tif"), pages) and cv2.imwritemulti(str(raw / "lab.tif"), labels)
    manifest = run_ingest(raw, tmp_path / "out", tiff_stacks=[{"images": "vol.tif", "labels": "lab.tif"}])
    assert list(manifest["id"]) == ["vol_0000", "vol_0001", "vol_0002"]
    assert list(manifest["source"]) == ["vol.tif#0", "vol.tif#1", "vol.tif#2"]
    for index in range(3):
        assert np.array_equal(read(tmp_path / "out" / "images" / f"vol_{index:04d}.png"), pages[index])
    assert manifest["labeled"].all()


def test_labelme_json_with_image_path_embedded_data_ignore_and_queried_flag(tmp_path, capsys):
    raw = tmp_path / "raw"
    save(raw / "photos" / "p.png", image(1))
    labelme_json(raw / "labels" / "p.json", [RECT, IGNORE], image_path="../photos/p.png")
    encoded = base64.b64encode(cv2.imencode(".png", image(2))[1].tobytes()).decode()
    labelme_json(raw / "q.json", [], image_data=encoded, flags={labelme.QUERIED_FLAG: True})
    manifest = run_ingest(raw, tmp_path / "out").set_index("id")
    assert np.array_equal(read(tmp_path / "out" / "masks" / "p.png"), square_mask())
    assert read(tmp_path / "out" / "ignore" / "p.png").sum() // 255 == 4
    assert not (tmp_path / "out" / "ignore" / "q.png").exists()
    assert manifest.loc["p", "ignore_fraction"] == pytest.approx(4 / 80)
    assert bool(manifest.loc["q", "queried"]) and not bool(manifest.loc["p", "queried"])
    assert np.array_equal(read(tmp_path / "out" / "images" / "q.png"), image(2))
    assert "1 masks are all background: q" in capsys.readouterr().out  # warnings summary


def test_labelme_foreground_labels_param(tmp_path):
    raw = tmp_path / "raw"
    save(raw / "p.png", image(1))
    labelme_json(raw / "p.json", [RECT, dict(RECT, label="dust", points=[[0, 0], [9, 0]])], image_path="p.png")
    run_ingest(raw, tmp_path / "out", labelme=LabelmeParams(foreground_labels=["dust"]))
    assert (read(tmp_path / "out" / "masks" / "p.png") > 0).sum() == 10


def test_labelme_json_labels_the_pool_image_of_the_same_id(tmp_path, capsys):
    """The annotation round trip: an exported JSON dropped into raw_dir labels images/<id>."""
    raw = tmp_path / "raw"
    save(raw / "images" / "a.png", image(1))
    save(raw / "images" / "b.png", image(2))
    save(raw / "stray.png", image(3))
    labelme_json(raw / "returned" / "a.json", [RECT], image_path="a.png", flags={labelme.QUERIED_FLAG: True})
    manifest = run_ingest(raw, tmp_path / "out").set_index("id")
    assert sorted(manifest.index) == ["a", "b"]
    assert bool(manifest.loc["a", "labeled"]) and bool(manifest.loc["a", "queried"])
    assert not bool(manifest.loc["b", "labeled"])
    assert np.array_equal(read(tmp_path / "out" / "images" / "a.png"), image(1))
    assert "stray.png" in capsys.readouterr().out  # an unused file is listed, not silently dropped


def test_files_no_reader_used_and_hidden_ones_are_named_anywhere_below_raw_dir(tmp_path, capsys):
    raw = tmp_path / "raw"
    save(raw / "images" / "a.png", image(1))
    save(raw / "masks" / "a.png", square_mask())
    (raw / "images" / "notes.txt").write_text("to do")
    (raw / "README.md").write_text("about the data")  # expected beside data: not worth a warning
    save(raw / "extra" / "stray.png", image(2))
    labelme_json(raw / "masks" / "b.json", [RECT], image_path="../images/a.png")
    labelme_json(raw / ".ipynb_checkpoints" / "c-checkpoint.json", [RECT], image_path="../images/a.png")
    save(raw / "images" / ".d.png", image(3))
    manifest = run_ingest(raw, tmp_path / "out")
    assert list(manifest["id"]) == ["a"]
    warnings = {line.split(": ")[2].split(" (")[0]: line for line in capsys.readouterr().out.splitlines()
                if line.startswith("ingest: warning:")}
    unused, hidden = warnings["3 files no reader used"], warnings["2 hidden folders and files skipped"]
    assert all(name in unused for name in ("extra/stray.png", "images/notes.txt", "masks/b.json"))
    assert ".ipynb_checkpoints/" in hidden and "images/.d.png" in hidden
    assert "README.md" not in unused + hidden and "images/a.png" not in unused


def write_predefined_folders(raw: Path) -> None:
    """train/ in folders (t1 unlabeled, labeled by a top-level annotation), val/ as Labelme, test/ as a
    TIFF stack, and a top-level pool image outside the predefined split."""
    save(raw / "train" / "images" / "t0.png", image(1))
    save(raw / "train" / "masks" / "t0.png", square_mask())
    save(raw / "train" / "images" / "t1.png", image(2))
    labelme_json(raw / "annotations" / "t1.json", [RECT], image_path="../train/images/t1.png")
    encoded = base64.b64encode(cv2.imencode(".png", image(3))[1].tobytes()).decode()
    labelme_json(raw / "val" / "v0.json", [RECT], image_data=encoded)
    (raw / "test").mkdir()
    assert cv2.imwritemulti(str(raw / "test" / "vol.tif"), [image(4), image(5)])
    assert cv2.imwritemulti(str(raw / "test" / "lab.tif"), [square_mask(), square_mask()])
    save(raw / "images" / "p0.png", image(6))


STACKS = [{"images": "test/vol.tif", "labels": "test/lab.tif"}]


def test_predefined_split_folders_record_each_images_split(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_predefined_folders(raw)
    manifest = ingest(IngestParams(raw_dir=str(raw), tiff_stacks=STACKS), 0, tmp_path / "out", "folders")
    assert dict(zip(manifest["id"], manifest["predefined_split"])) == {
        "p0": "", "t0": "train", "t1": "train", "v0": "val", "vol_0000": "test", "vol_0001": "test"}
    assert manifest.set_index("id")["labeled"].drop("p0").all()
    reread = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False).set_index("id")
    assert reread.loc["v0", "predefined_split"] == "val" and reread.loc["p0", "predefined_split"] == ""
    output = capsys.readouterr().out
    assert "keeps 2 labeled images in train, 1 labeled images in val, 2 labeled images in test" in output
    assert "warning" not in output
    assert (run_ingest(raw, tmp_path / "plain", tiff_stacks=STACKS)["predefined_split"] == "").all()


def test_predefined_split_csv_is_read_relative_to_raw_dir(tmp_path, capsys):
    raw = tmp_path / "raw"
    for index in range(4):
        save(raw / "images" / f"a{index}.png", image(index))
        save(raw / "masks" / f"a{index}.png", square_mask())
    save(raw / "images" / "new.png", image(9))
    (raw / "lists").mkdir()
    (raw / "lists" / "split.csv").write_text("id,split\na0,train\na1, VAL\n\na2,test\n")
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out", "lists/split.csv")
    assert list(manifest["predefined_split"]) == ["train", "val", "test", "", ""]
    assert "warning" not in capsys.readouterr().out  # the CSV counts as used


def test_predefined_split_csv_saved_by_excel_with_a_byte_order_mark_reads_as_id_split(tmp_path):
    raw = tmp_path / "raw"
    predefined_case(raw, "")
    # Excel's "CSV UTF-8": a byte-order mark before the header, CRLF line ends
    (raw / "split.csv").write_bytes("\ufeffid,split\r\na,train\r\nb,val\r\nc,test\r\n".encode("utf-8"))
    assert (raw / "split.csv").read_bytes().startswith(b"\xef\xbb\xbfid,split")
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out", "split.csv")
    assert dict(zip(manifest["id"], manifest["predefined_split"])) == {"a": "train", "b": "val", "c": "test", "u": ""}


def predefined_case(raw: Path, csv_text: str) -> None:
    for name in ("a", "b", "c"):
        save(raw / "images" / f"{name}.png", image())
        save(raw / "masks" / f"{name}.png", square_mask())
    save(raw / "images" / "u.png", image())
    if csv_text:
        (raw / "split.csv").write_text(csv_text)


@pytest.mark.parametrize("csv_text, predefined, culprit, problem", [
    ("id,split\na,train\nz,val\nc,test\n", "split.csv", "split.csv", "line 3: id 'z' is not in the data"),
    ("id,split\na,train\nb,validation\nc,test\n", "split.csv", "split.csv", "line 3: split 'validation'"),
    ("id,split\na,train\nb,val\na,test\n", "split.csv", "split.csv", "line 4: id 'a' is listed twice"),
    ("name,set\na,train\n", "split.csv", "split.csv", "must name the columns id and split"),
    ("id,split\na,train\nu,val\nc,test\n", "split.csv", "split.csv", "lists no val image that has a mask"),
    ("", "other.csv", "other.csv", "does not exist"),
    ("", "folders", "raw/train", "has no train image with a mask"),
])
def test_each_bad_predefined_split_is_one_line_naming_the_file(tmp_path, csv_text, predefined, culprit, problem):
    raw = tmp_path / "raw"
    predefined_case(raw, csv_text)
    with pytest.raises(ActivesegError, match=problem) as raised:
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out", predefined)
    message = str(raised.value)
    assert culprit in message and "\n" not in message and ";" in message
    assert not (tmp_path / "out").exists()


def test_predefined_split_csv_may_not_leave_raw_dir_through_a_link(tmp_path):
    raw = tmp_path / "raw"
    predefined_case(raw, "")
    (tmp_path / "outside.csv").write_text("id,split\na,train\nb,val\nc,test\n")
    os.symlink(tmp_path / "outside.csv", raw / "split.csv")
    with pytest.raises(ActivesegError, match="split.csv: split.predefined leads outside ingest.raw_dir"):
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out", "split.csv")


def test_ids_must_stay_unique_across_predefined_split_folders(tmp_path):
    raw = tmp_path / "raw"
    for name in ("train", "val", "test"):
        save(raw / name / "images" / f"{name}.png", image())
        save(raw / name / "masks" / f"{name}.png", square_mask())
    save(raw / "test" / "images" / "train.png", image())
    with pytest.raises(ActivesegError, match="id 'train' is also used by train/images/train.png") as raised:
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out", "folders")
    assert "test/images/train.png" in str(raised.value)


def test_predefined_split_needs_data_of_ones_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ActivesegError, match="synthetic set has no split of its own"):
        ingest(IngestParams(), 0, tmp_path / "out", "folders")


def test_isbi_png_folders_and_tiff_stacks_give_identical_arrays(tmp_path, shared_datasets):
    raw = shared_datasets / "isbi2012-em"
    from_png = run_ingest(raw, tmp_path / "png", formats=["folders"])
    from_tiff = run_ingest(raw, tmp_path / "tif", formats=["tiff_stacks"],
                           tiff_stacks=[{"images": "train-volume.tif", "labels": "train-labels.tif"}])
    assert len(from_png) == len(from_tiff) == 30
    for index in range(30):
        for kind in ("images", "masks"):
            png = read(tmp_path / "png" / kind / f"{index}.png")
            tif = read(tmp_path / "tif" / kind / f"train-volume_{index:04d}.png")
            assert png.shape == (512, 512) and np.array_equal(png, tif), (kind, index)


def test_real_labelme_folder_ingests(tmp_path, shared_datasets):
    manifest = run_ingest(shared_datasets / "labelme-voc2011", tmp_path / "out")
    assert len(manifest) == 3 and manifest["labeled"].all()
    assert sorted(path.name for path in (tmp_path / "out" / "ignore").iterdir()) == ["2011_000003.png",
                                                                                    "2011_000006.png"]


def test_missing_default_raw_dir_means_synthetic_but_a_named_one_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = ingest(IngestParams(), 0, tmp_path / "out")
    assert (manifest["source"] == "synthetic").all()
    with pytest.raises(ActivesegError, match="does not exist"):
        run_ingest(tmp_path / "nowhere", tmp_path / "out2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ActivesegError, match="is empty"):
        run_ingest(tmp_path / "empty", tmp_path / "out2")


def test_annotated_queries_of_built_in_images_keep_the_synthetic_set_as_the_base(tmp_path, monkeypatch, capsys):
    """The README's round trip on the demo data: data/raw holds only exported-and-corrected Labelme
    files of synthetic images; they label those images and the rest of the built-in set stays."""
    from activeseg import synthetic
    from activeseg.params import SyntheticParams

    monkeypatch.chdir(tmp_path)
    params = IngestParams(synthetic=SyntheticParams(count=6, size=10))
    generated = {image_id: (image, mask) for image_id, image, mask in synthetic.generate(6, 10, 2, 6, 0)}
    annotations = tmp_path / "data" / "raw" / "annotations"
    save(annotations / "synthetic_0003.png", generated["synthetic_0003"][0][..., ::-1])
    labelme_json(annotations / "synthetic_0003.json", [RECT], image_path="synthetic_0003.png",
                 flags={labelme.QUERIED_FLAG: True})
    manifest = ingest(params, 0, tmp_path / "out").set_index("id")
    assert sorted(manifest.index) == sorted(generated)
    assert manifest.loc["synthetic_0003", "source"] == "annotations/synthetic_0003.json"
    assert bool(manifest.loc["synthetic_0003", "queried"]) and manifest["queried"].sum() == 1
    assert np.array_equal(read(tmp_path / "out" / "masks" / "synthetic_0003.png"), square_mask((10, 10)))
    for image_id, (image, mask) in generated.items():
        assert np.array_equal(read(tmp_path / "out" / "images" / f"{image_id}.png")[..., ::-1], image)
        if image_id != "synthetic_0003":
            assert np.array_equal(read(tmp_path / "out" / "masks" / f"{image_id}.png"), mask)
            assert manifest.loc[image_id, "source"] == "synthetic"
    assert "annotated queries of the built-in images" in capsys.readouterr().out
    # a hand-made file (no query flag) is data of your own: the synthetic set is not used
    labelme_json(annotations / "synthetic_0003.json", [RECT], image_path="synthetic_0003.png")
    assert ingest(params, 0, tmp_path / "out").index.size == 1


def test_an_annotated_tile_of_a_built_in_image_labels_that_tile_and_keeps_the_synthetic_set(tmp_path, monkeypatch):
    """The round trip with tiles on the demo data: data/raw holds only a corrected tile export."""
    from activeseg.params import SyntheticParams

    monkeypatch.chdir(tmp_path)
    params = IngestParams(synthetic=SyntheticParams(count=6, size=64))
    tile_json(tmp_path / "data" / "raw", "synthetic_0003@y32_x0", y=32)
    manifest = ingest(params, 0, tmp_path / "out").set_index("id")
    assert len(manifest) == 6 and manifest["queried"].sum() == 1 and bool(manifest.loc["synthetic_0003", "queried"])
    assert manifest.loc["synthetic_0003", "source"] == "annotations/synthetic_0003@y32_x0.json"
    expected = np.zeros((64, 64), np.uint8)
    expected[32 + 2:32 + 5, 3:7] = 255
    assert np.array_equal(read(tmp_path / "out" / "masks" / "synthetic_0003.png"), expected)
    ignore = read(tmp_path / "out" / "ignore" / "synthetic_0003.png")
    assert not ignore[32:, :32].any() and ignore.sum() == 255 * (64 * 64 - 32 * 32)


def corrupt(raw):
    save(raw / "images" / "a.png", image())
    (raw / "images" / "b.png").write_bytes(b"not a png")


def size_mismatch(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "masks" / "a.png", np.zeros((4, 4), np.uint8))


def float_mask(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "masks" / "a.tif", square_mask().astype(np.float32))


def same_id(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "images" / "a.jpg", image())


def same_id_across_formats(raw):
    save(raw / "images" / "vol_0000.png", image())
    assert cv2.imwritemulti(str(raw / "vol.tif"), [image()])


def unreadable_image(raw):
    save(raw / "images" / "a.png", image())
    os.symlink(raw / "gone.png", raw / "images" / "b.png")


def orphan_mask(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "masks" / "z.png", square_mask())


def not_labelme(raw):
    save(raw / "images" / "a.png", image())
    (raw / "config.json").write_text('{"learning_rate": 0.1}')


def escaping_image_path(raw):
    labelme_json(raw / "a.json", [RECT], image_path="../../../etc/passwd")


def absolute_image_path(raw):
    labelme_json(raw / "a.json", [RECT], image_path="/etc/hostname")


def mask_and_json(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "masks" / "a.png", square_mask())
    labelme_json(raw / "images" / "a.json", [RECT], image_path="a.png")


def same_labelme_id(raw):
    save(raw / "images" / "a.png", image())
    labelme_json(raw / "images" / "a.json", [RECT], image_path="a.png")
    labelme_json(raw / "annotations" / "a.json", [RECT], image_path="../images/a.png")


def tile_json(raw, name, y=0, x=0):
    """An exported tile's Labelme file (see activeseg.tile_labels) in raw/annotations."""
    path = labelme_json(raw / "annotations" / f"{name}.json", [RECT], image_path=f"{name}.png",
                        flags={labelme.QUERIED_FLAG: True})
    document = json.loads(path.read_text())
    document["activeseg_tile"] = {"image": name.split("@")[0], "y": y, "x": x, "scale": 1.0, "tile_size": 32}
    document["imageHeight"] = document["imageWidth"] = None   # unchecked: the tile's PNG is not there
    path.write_text(json.dumps(document))


def tile_outside_its_image(raw):
    save(raw / "images" / "a.png", image())
    tile_json(raw, "a@y32_x0", y=32)


def tile_of_a_missing_image(raw):
    save(raw / "images" / "a.png", image())
    tile_json(raw, "z@y0_x0")


def tile_of_a_labeled_image(raw):
    save(raw / "images" / "a.png", image())
    save(raw / "masks" / "a.png", square_mask())
    tile_json(raw, "a@y0_x0")


def stack_page_mismatch(raw):
    raw.mkdir(parents=True)
    assert cv2.imwritemulti(str(raw / "vol.tif"), [image(), image()])
    assert cv2.imwritemulti(str(raw / "lab.tif"), [square_mask()])


def stack_in_images_folder(raw):
    (raw / "images").mkdir(parents=True)
    assert cv2.imwritemulti(str(raw / "images" / "vol.tif"), [image(), image()])


def corrupt_stack(raw):
    raw.mkdir(parents=True)
    (raw / "vol.tif").write_bytes(b"II*\x00garbage")


def nothing_readable(raw):
    (raw / "notes").mkdir(parents=True)
    (raw / "notes" / "todo.txt").write_text("label more")


@pytest.mark.parametrize("make, culprit, problem", [
    (corrupt, "images/b.png", "cannot be read as an image"),
    (unreadable_image, "images/b.png", "file not found"),
    (size_mismatch, "masks/a.png", "mask is 4x4 but the image is 10x8"),
    (float_mask, "masks/a.tif", "pixel type float32"),
    (same_id, "images/a.png", "two files share the id 'a'"),
    (same_id_across_formats, "vol.tif", "also used by"),
    (orphan_mask, "masks/z.png", "mask has no image"),
    (not_labelme, "config.json", "not a Labelme file"),
    (escaping_image_path, "a.json", "escapes the data folder"),
    (absolute_image_path, "a.json", "is absolute"),
    (mask_and_json, "a.json", "both a mask in masks/ and this Labelme file"),
    (same_labelme_id, "a.json", r"a\.json: two Labelme files share the id 'a' \(also .*/a\.json\); rename or remove one"),
    (tile_outside_its_image, "annotations/a@y32_x0.json", "the tile at y=32, x=0 lies outside its image 'a'"),
    (tile_of_a_missing_image, "annotations/z@y0_x0.json", "annotates a tile of image 'z', which is not in"),
    (tile_of_a_labeled_image, "annotations/a@y0_x0.json", "image 'a', which already has a label"),
    (stack_page_mismatch, "lab.tif", "has 1 pages but vol.tif has 2"),
    (stack_in_images_folder, "images/vol.tif", "multi-page TIFF stack"),
    (corrupt_stack, "vol.tif", "cannot be read as a TIFF stack"),
    (nothing_readable, "raw", "no images found"),
])
def test_each_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, make, culprit, problem):
    raw = tmp_path / "raw"
    make(raw)
    out = tmp_path / "out"
    stacks = [{"images": "vol.tif", "labels": "lab.tif"}] if (raw / "lab.tif").exists() else (
        [{"images": "vol.tif"}] if (raw / "vol.tif").exists() else [])
    with pytest.raises(ActivesegError, match=problem) as raised:
        run_ingest(raw, out, tiff_stacks=stacks)
    message = str(raised.value)
    assert culprit in message and "\n" not in message and ";" in message  # "<file>: <problem>; <fix>"
    assert not out.exists() and not any(path.name.startswith(".out") for path in tmp_path.iterdir())


def test_stage_exits_non_zero_with_the_message(tmp_path):
    import subprocess
    import sys

    import yaml

    raw = tmp_path / "raw"
    corrupt(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ingest": {"raw_dir": str(raw)}}))
    stage = Path(__file__).resolve().parents[1] / "stages" / "ingest.py"
    result = subprocess.run([sys.executable, str(stage), "--params", str(tmp_path / "params.yaml"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "b.png: cannot be read as an image" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
