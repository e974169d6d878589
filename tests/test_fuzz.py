"""Fuzzing the readers of user files with malformed input: nothing but ActivesegError escapes.

Hypothesis feeds random bytes and mutated valid files (flipped bytes, truncation) to each reader
for a bounded number of examples (a few seconds each); any other exception, or a crash of the
process, fails the test and hypothesis prints the smallest input that caused it.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activeseg import coco, label_studio, labelme
from activeseg.errors import ActivesegError
from activeseg.imageio import encode_png, read_image

BOUNDED = settings(max_examples=120, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def valid_tiff(pages: int = 1, dtype=np.uint8, channels: int = 0) -> bytes:
    shape = (pages, 16, 16, channels) if channels else (pages, 16, 16)
    data = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data if pages > 1 else data[0])
    return buffer.getvalue()


SEEDS = [valid_tiff(), valid_tiff(dtype=np.uint16), valid_tiff(channels=3), valid_tiff(pages=3)]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid file with some bytes overwritten, then possibly truncated or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                         max_size=8)):
        data[position] = value
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def tiff_claiming_height(height: int) -> bytes:
    """A valid TIFF whose ImageLength tag is overwritten: OpenCV raises (not returns None) on it."""
    data = bytearray(valid_tiff())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        offset = tiff.pages[0].tags[257].valueoffset
    data[offset:offset + 4] = height.to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def scratch():
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # libtiff complains about every input
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)
    cv2.utils.logging.setLogLevel(level)


def read_or_clear_error(reader, path: Path) -> None:
    try:
        result = reader(path)
    except ActivesegError as error:
        assert str(error).startswith(str(path)), "the error must name the file"
        assert "\n" not in str(error)
        return
    if isinstance(result, np.ndarray):  # whatever is accepted is what the pipeline expects
        assert result.dtype == np.uint8 and result.ndim in (2, 3)


def test_tiff_with_absurd_height_is_a_clear_error(scratch):
    path = scratch / "tall.tif"
    path.write_bytes(tiff_claiming_height(2**23))
    with pytest.raises(ActivesegError, match="cannot be read as an image"):
        read_image(path)


@BOUNDED
@given(data=st.one_of(mutated(SEEDS), st.binary(max_size=512)))
def test_tiff_reader_fuzz(scratch, data):
    path = scratch / "image.tif"
    path.write_bytes(data)
    read_or_clear_error(read_image, path)


# --- Labelme JSON -----------------------------------------------------------------------------

SHAPE_TYPES = ["polygon", "rectangle", "circle", "line", "linestrip", "point", "points", "mask", "rotation", "bogus"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
COORDINATES = st.one_of(st.floats(-40, 60), st.integers(-10**9, 10**9), st.floats(allow_nan=True), JSON_VALUES)


def png_base64(size: int = 16) -> str:
    return base64.b64encode(encode_png(np.full((size, size, 3), 120, np.uint8))).decode()


@st.composite
def labelme_documents(draw) -> object:
    """Labelme-shaped documents whose fields are, now and then, anything JSON can hold."""
    def maybe(strategy):
        return draw(st.one_of(strategy, JSON_VALUES) if draw(st.integers(0, 5)) == 0 else strategy)

    shapes = []
    for _ in range(draw(st.integers(0, 3))):
        shape = {"label": maybe(st.sampled_from(["cell", "__ignore__", ""])),
                 "shape_type": maybe(st.sampled_from(SHAPE_TYPES)),
                 "points": maybe(st.lists(st.lists(COORDINATES, min_size=0, max_size=3), max_size=5)),
                 "flags": {}}
        if shape["shape_type"] == "mask":
            shape["mask"] = maybe(st.sampled_from([png_base64(4), "not base64!", ""]))
        shapes.append(shape)
    document = {"version": "5.5.0", "flags": maybe(st.just({})), "shapes": maybe(st.just(shapes)),
                "imagePath": maybe(st.sampled_from(["image.png", "../image.png", "/etc/passwd", "missing.png",
                                                    "sub\\image.png", "C:\\image.png", "image.png\x00"])),
                "imageData": maybe(st.sampled_from([None, png_base64(), "AAAA", "%%%"])),
                "imageHeight": maybe(st.sampled_from([16, 0, -1, None, 10**9])),
                "imageWidth": maybe(st.sampled_from([16, 0, -1, None, 10**9]))}
    for key in draw(st.lists(st.sampled_from(sorted(document)), max_size=2)):
        document.pop(key, None)
    return document


def load_and_rasterize(path: Path, root: Path) -> None:
    """What ingest does with a Labelme file: load, read its image, rasterise at the image's size."""
    label_file = labelme.load(path, root=root)
    image = labelme.read_image(label_file)
    foreground, ignore = labelme.rasterize(label_file, image.shape[0], image.shape[1])
    assert foreground.shape == ignore.shape == image.shape[:2]


@pytest.fixture(scope="module")
def labelme_folder(scratch):
    folder = scratch / "labelme" / "data"
    folder.mkdir(parents=True)
    assert cv2.imwrite(str(folder / "image.png"), np.full((16, 16, 3), 90, np.uint8))
    return folder


@settings(BOUNDED, max_examples=60)
@given(document=labelme_documents())
def test_labelme_reader_fuzz_documents(labelme_folder, document):
    path = labelme_folder / "a.json"
    path.write_text(json.dumps(document))
    read_or_clear_error(lambda p: load_and_rasterize(p, labelme_folder), path)


VALID_LABELME = json.dumps({"version": "5.5.0", "flags": {}, "imagePath": "image.png", "imageData": None,
                            "imageHeight": 16, "imageWidth": 16,
                            "shapes": [{"label": "cell", "shape_type": "polygon", "flags": {},
                                        "points": [[1, 1], [12, 2], [8, 14]]}]}).encode()


@BOUNDED
@given(data=st.one_of(mutated([VALID_LABELME]), st.binary(max_size=256)))
def test_labelme_reader_fuzz_bytes(labelme_folder, data):
    path = labelme_folder / "b.json"
    path.write_bytes(data)
    read_or_clear_error(lambda p: load_and_rasterize(p, labelme_folder), path)


VALID_COCO = json.dumps({
    "images": [{"id": 1, "file_name": "image.png", "height": 16, "width": 16}],
    "categories": [{"id": 1, "name": "cell"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 12, 2, 8, 14]]},
                    {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1,
                     "segmentation": {"size": [16, 16], "counts": "S26:0000000000000m1"}},
                    {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1,
                     "segmentation": {"size": [16, 16], "counts": [20, 4, 12, 4, 216]}}]}).encode()


def load_and_rasterize_coco(path: Path, root: Path) -> None:
    file = coco.load(path, root)
    for image in file.images:
        foreground, ignore = coco.rasterize(file, image, 16, 16)
        assert foreground.shape == ignore.shape == (16, 16)


def test_coco_fuzz_seed_is_valid(labelme_folder):
    path = labelme_folder / "coco.json"
    path.write_bytes(VALID_COCO)
    load_and_rasterize_coco(path, labelme_folder)


@BOUNDED
@given(data=st.one_of(mutated([VALID_COCO]), st.binary(max_size=256)))
def test_coco_reader_fuzz_bytes(labelme_folder, data):
    path = labelme_folder / "coco.json"
    path.write_bytes(data)
    read_or_clear_error(lambda p: load_and_rasterize_coco(p, labelme_folder), path)


VALID_LABEL_STUDIO = json.dumps([{
    "id": 1, "data": {"image": "/data/local-files/?d=image.png"},
    "annotations": [{"id": 1, "result": [
        {"type": "polygonlabels", "original_width": 16, "original_height": 16,
         "value": {"points": [[5, 5], [80, 10], [50, 90]], "polygonlabels": ["cell"]}},
        {"type": "brushlabels", "original_width": 16, "original_height": 16,
         "value": {"format": "rle", "rle": [0, 0, 4, 0, 57, 27, 255, 1, 11, 0, 196, 127, 248, 108, 3, 17, 255, 225, 176, 12, 71, 255,
                           134, 192, 49, 31, 254, 27, 0, 196, 127, 248, 108, 3, 17, 255, 240, 24, 240, 0],
                   "brushlabels": ["cell"]}}]}]}]).encode()


def load_and_rasterize_label_studio(path: Path) -> None:
    document = coco.read_json(path)
    if not label_studio.is_export(document):
        return
    for file in label_studio.load(path, document):
        foreground, ignore = labelme.rasterize(file, 16, 16)
        assert foreground.shape == ignore.shape == (16, 16)


def test_label_studio_fuzz_seed_is_valid(labelme_folder):
    path = labelme_folder / "studio.json"
    path.write_bytes(VALID_LABEL_STUDIO)
    assert len(label_studio.load(path, json.loads(VALID_LABEL_STUDIO))[0].shapes) == 2
    load_and_rasterize_label_studio(path)


@BOUNDED
@given(data=st.one_of(mutated([VALID_LABEL_STUDIO]), st.binary(max_size=256)))
def test_label_studio_reader_fuzz_bytes(labelme_folder, data):
    path = labelme_folder / "studio.json"
    path.write_bytes(data)
    read_or_clear_error(load_and_rasterize_label_studio, path)
