"""The Labelme reader: shapes rasterised as Labelme does, images found safely, bad files named."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from activeseg import labelme
from activeseg.errors import ActivesegError


def shape(shape_type, points, label="cell"):
    return {"label": label, "points": points, "group_id": None, "shape_type": shape_type, "flags": {}}


def draw(shape_type, points, height=6, width=7, **sizes):
    parsed = labelme.parse({"shapes": [shape(shape_type, points)], "imagePath": "x.png", "imageData": None},
                           "/data/x.json")
    return labelme.shape_to_mask(height, width, parsed.shapes[0], **sizes).astype(int)


def grid(text: str) -> np.ndarray:
    return np.array([[int(c) for c in row.split()] for row in text.strip().splitlines()])


# Expected masks checked by hand against Pillow's inclusive pixel rules (and against Labelme 6.3's
# own shape_to_mask when this was written).
@pytest.mark.parametrize("shape_type, points, sizes, expected", [
    ("rectangle", [[4, 3], [1, 1]], {}, """
        0 0 0 0 0 0 0
        0 1 1 1 1 0 0
        0 1 1 1 1 0 0
        0 1 1 1 1 0 0
        0 0 0 0 0 0 0
        0 0 0 0 0 0 0"""),
    ("polygon", [[1, 1], [5, 1], [1, 4]], {}, """
        0 0 0 0 0 0 0
        0 1 1 1 1 1 0
        0 1 1 1 1 0 0
        0 1 1 0 0 0 0
        0 1 0 0 0 0 0
        0 0 0 0 0 0 0"""),
    ("circle", [[3, 3], [4, 3]], {}, """
        0 0 0 0 0 0 0
        0 0 0 0 0 0 0
        0 0 0 1 0 0 0
        0 0 1 1 1 0 0
        0 0 0 1 0 0 0
        0 0 0 0 0 0 0"""),
    ("point", [[3, 2]], {"point_size": 1}, """
        0 0 0 0 0 0 0
        0 0 0 1 0 0 0
        0 0 1 1 1 0 0
        0 0 0 1 0 0 0
        0 0 0 0 0 0 0
        0 0 0 0 0 0 0"""),
    ("line", [[0, 2], [6, 2]], {"line_width": 3}, """
        0 0 0 0 0 0 0
        1 1 1 1 1 1 1
        1 1 1 1 1 1 1
        1 1 1 1 1 1 1
        0 0 0 0 0 0 0
        0 0 0 0 0 0 0"""),
    ("linestrip", [[0, 0], [3, 3], [6, 0]], {"line_width": 1}, """
        1 0 0 0 0 0 1
        0 1 0 0 0 1 0
        0 0 1 0 1 0 0
        0 0 0 1 0 0 0
        0 0 0 0 0 0 0
        0 0 0 0 0 0 0"""),
])
def test_each_shape_type_rasterises_like_labelme(shape_type, points, sizes, expected):
    assert np.array_equal(draw(shape_type, points, **sizes), grid(expected))


def test_labelme_default_line_width_and_point_size():
    assert draw("line", [[0, 10], [19, 10]], height=20, width=20).sum(axis=0).max() == 10
    assert draw("point", [[10, 10]], height=20, width=20)[10].sum() == 11  # radius 5 through the centre


def test_later_shapes_win_and_ignore_cuts_foreground_and_unlisted_labels_paint_background():
    document = {"imagePath": "x.png", "imageData": None, "shapes": [
        shape("rectangle", [[0, 0], [5, 5]], "cell"),
        shape("rectangle", [[0, 0], [1, 1]], labelme.IGNORE_LABEL),
        shape("rectangle", [[4, 4], [5, 5]], "dust"),
        shape("rectangle", [[1, 1], [1, 1]], "cell")]}
    parsed = labelme.parse(document, "/data/x.json")
    foreground, ignore = labelme.rasterize(parsed, 6, 6)
    assert ignore.sum() // 255 == 3 and ignore[0, 0] == 255 and ignore[1, 1] == 0  # last cell wins at (1, 1)
    assert foreground[1, 1] == 255 and foreground[5, 5] == 255  # every label but __ignore__ by default
    only_cells, _ = labelme.rasterize(parsed, 6, 6, foreground_labels=["cell"])
    assert only_cells[5, 5] == 0 and only_cells[3, 3] == 255  # "dust" paints background over the cell
    assert set(np.unique(foreground)) <= {0, 255}


def test_mask_shape_pastes_its_bitmap_into_the_box():
    bitmap = np.array([[1, 0], [1, 1]], np.uint8) * 255
    encoded = base64.b64encode(cv2.imencode(".png", bitmap)[1].tobytes()).decode()
    document = {"imagePath": "x.png", "imageData": None,
                "shapes": [dict(shape("mask", [[2, 1], [3, 2]]), mask=encoded)]}
    foreground, _ = labelme.rasterize(labelme.parse(document, "/data/x.json"), 4, 5)
    assert np.array_equal(foreground[1:3, 2:4] // 255, [[1, 0], [1, 1]]) and foreground.sum() // 255 == 3


def write_image(path: Path, array: np.ndarray) -> None:
    cv2.imwrite(str(path), array)


def test_image_from_image_path_and_from_embedded_image_data(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    write_image(tmp_path / "a.png", image)
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageData": None, "shapes": []}))
    assert np.array_equal(labelme.read_image(labelme.load(tmp_path / "a.json")), image)
    encoded = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
    (tmp_path / "b.json").write_text(json.dumps({"imagePath": "gone.png", "imageData": encoded, "shapes": [],
                                                "flags": {labelme.QUERIED_FLAG: True}}))
    embedded = labelme.load(tmp_path / "b.json")
    assert np.array_equal(labelme.read_image(embedded), image) and embedded.queried
    assert not labelme.load(tmp_path / "a.json").queried


def test_exif_orientation_is_applied_like_labelme(tmp_path):
    import PIL.Image

    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 0] = 255
    image = PIL.Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to show upright
    image.save(tmp_path / "a.png", exif=exif)
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageData": None, "shapes": []}))
    upright = labelme.read_image(labelme.load(tmp_path / "a.json"))
    assert upright.shape == (3, 2, 3) and upright[0, 1, 0] == 255


@pytest.mark.parametrize("image_path, problem", [
    ("../../etc/passwd", "escapes"), ("/etc/passwd", "absolute"), ("C:\\images\\a.png", "absolute"),
    ("sub/../../a.png", "escapes")])
def test_image_path_outside_the_data_folder_is_refused(tmp_path, image_path, problem):
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": image_path, "imageData": None, "shapes": []}))
    with pytest.raises(ActivesegError, match=problem):
        labelme.load(tmp_path / "a.json")


def test_image_path_may_reach_a_sibling_folder_inside_the_root(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.json").write_text(json.dumps(
        {"imagePath": "..\\images\\a.png", "imageData": None, "shapes": []}))
    parsed = labelme.load(tmp_path / "labels" / "a.json", root=tmp_path)
    assert parsed.image_path == tmp_path / "images" / "a.png"


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ('{"foo": 1}', "not a Labelme file"),
    ('[1, 2]', "not a Labelme file"),
    ('{"shapes": [], "imagePath": null, "imageData": null}', "neither imagePath nor imageData"),
    ('{"shapes": [1], "imagePath": "a.png"}', "shape 0 is not an object"),
    ('{"shapes": [{"label": "x", "points": [[1, 2]], "shape_type": "polygon"}], "imagePath": "a.png"}',
     "polygon with 1 points"),
    ('{"shapes": [{"label": "x", "points": [[1, "a"]], "shape_type": "point"}], "imagePath": "a.png"}',
     "not \\[x, y\\] numbers"),
    ('{"shapes": [{"label": "x", "points": [[1, 1]], "shape_type": "blob"}], "imagePath": "a.png"}',
     "shape_type 'blob'"),
    ('{"shapes": [{"points": [[1, 1]], "shape_type": "point"}], "imagePath": "a.png"}', "no text label"),
    ('{"shapes": [], "imagePath": "a.png", "imageData": "%%%"}', "not a readable image"),
    ('{"shapes": [], "imagePath": "a.png", "imageHeight": -3}', "imageHeight"),
])
def test_malformed_files_raise_one_line_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ActivesegError, match=problem) as raised:
        labelme.read_image(labelme.load(path))
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_missing_image_and_far_away_points_are_named(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageData": None, "shapes": [
        shape("circle", [[1, 1], [1e9, 1]])]}))
    parsed = labelme.load(tmp_path / "a.json")
    with pytest.raises(ActivesegError, match="does not exist"):
        labelme.read_image(parsed)
    with pytest.raises(ActivesegError, match="far outside"):
        labelme.rasterize(parsed, 10, 10)


# Pixel counts and digests of the three real files' masks: checked by eye on overlays and equal to
# labelme 6.3's shapes_to_label (label > 0 foreground, __ignore__ = -1) when this was written.
REAL_FILES = {
    "2011_000003": (33773, 9460, "f8a9be2482271c65"),
    "2011_000006": (93099, 909, "41da574ac5169b2a"),
    "2011_000025": (125478, 0, "71b1055f5718e769"),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_labelme_files_rasterise_as_labelme_does(shared_datasets, name):
    parsed = labelme.load(shared_datasets / "labelme-voc2011" / f"{name}.json")
    image = labelme.read_image(parsed)
    assert image.shape == (parsed.image_height, parsed.image_width, 3)
    foreground, ignore = labelme.rasterize(parsed, *image.shape[:2])
    pixels, ignored, digest = REAL_FILES[name]
    assert (foreground > 0).sum() == pixels and (ignore > 0).sum() == ignored
    assert hashlib.sha1(np.packbits(foreground > 0)).hexdigest()[:16] == digest
    assert not ((foreground > 0) & (ignore > 0)).any()


def test_a_relative_raw_dir_going_up_two_levels_accepts_image_paths_inside_it(tmp_path, monkeypatch):
    # README: ingest.raw_dir is "any folder, inside the project or not", e.g. ../../shared/datasets/…
    raw = tmp_path / "shared" / "labelme"
    (raw / "photos").mkdir(parents=True)
    (raw / "photos" / "a.jpg").write_bytes(b"")
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    root = Path("../../shared/labelme")
    found = labelme.resolve_image_path(root / "photos" / "a.json", "a.jpg", root)
    assert found.resolve() == (raw / "photos" / "a.jpg").resolve()
    with pytest.raises(ActivesegError, match="escapes the data folder"):
        labelme.resolve_image_path(root / "photos" / "a.json", "../../other/a.jpg", root)
