"""The pool as tiles, the tile Labelme round trip in the library: the query ranks and exports
tiles, an annotated tile's JSON labels that tile of its source image (the rest ignored), and
preprocess puts the labeled tiles in train and the rest of the image back in the pool."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from activeseg import imageio, labelme
from activeseg.acquisition import PoolScores, rank
from activeseg.annotation import QUERIED_FLAG, export_for_annotation
from activeseg.errors import ActivesegError
from activeseg.ingest import ingest
from activeseg.params import IngestParams, PreprocessParams
from activeseg.preprocess import Transform, cut_tiles, load_split_arrays, preprocess
from activeseg.tile_labels import TILE_KEY, TilePlacement, source_labels
from activeseg.tiling import TileGrid, parse_tile_id, rescale, tile_id


def polygon(points, label="foreground"):
    return {"label": label, "points": [list(map(float, point)) for point in points], "group_id": None,
            "description": "", "shape_type": "polygon", "flags": {}, "mask": None}


def tile_document(where: TilePlacement, rows: int, columns: int, shapes) -> dict:
    return {"version": "5.5.0", "flags": {QUERIED_FLAG: True}, "shapes": shapes,
            "imagePath": f"{tile_id(where.image_id, where.y, where.x)}.png", "imageData": None,
            "imageHeight": rows, "imageWidth": columns, TILE_KEY: where.record()}


def tile_file(folder: Path, where: TilePlacement, rows: int, columns: int, shapes) -> labelme.LabelmeFile:
    path = folder / f"{tile_id(where.image_id, where.y, where.x)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tile_document(where, rows, columns, shapes)))
    return labelme.load(path)


TRIANGLE = [(1, 1), (5, 14), (12, 3)]   # inside a tile, in the tile's own pixels


def drawn(shapes, rows, columns) -> np.ndarray:
    """What Labelme's rasterisation makes of the shapes on the tile itself (0/1)."""
    document = {"shapes": shapes, "imagePath": "t.png", "imageData": None}
    return labelme.rasterize(labelme.parse(document, "t.json"), rows, columns)[0] // 255


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.37, 1.5])
def test_an_edge_tiles_json_labels_that_tile_of_its_image_and_preprocess_gives_it_back(tmp_path, scale):
    """The tile at the bottom-right corner (partly padding) of a 100 x 140 image: its shapes land in
    the block of the original image that preprocess resamples into that tile, everything else is
    ignored; cut again by preprocess, the tile's real pixels carry exactly the drawn shapes and no
    ignore, and every other tile is ignored all over."""
    height, width, tile_size = 100, 140, 32
    scaled = rescale(np.zeros((height, width), np.uint8), scale).shape
    grid = TileGrid(*scaled, tile_size)
    y, x = grid.positions[-1]
    rows, columns = grid.valid_extent(y, x)
    assert rows < tile_size or columns < tile_size or scale == 1.0, "an edge tile with padding"
    where = TilePlacement("a", y, x, scale, tile_size)
    shapes = [polygon([(px * min(columns, 14) / 14, py * min(rows, 14) / 14) for px, py in TRIANGLE]),
              polygon([(0, 0), (3, 0), (3, 2), (0, 2)], label="__ignore__")]
    mask, ignore = source_labels([tile_file(tmp_path, where, rows, columns, shapes)], height, width)
    assert mask.shape == ignore.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
    assert mask.any() and not mask[ignore > 0].any()
    labeled = ignore == 0
    rows_labeled, columns_labeled = np.flatnonzero(labeled.any(axis=1)), np.flatnonzero(labeled.any(axis=0))
    # a block reaching the image's bottom-right corner, starting near y / scale, x / scale
    assert rows_labeled[-1] == height - 1 and columns_labeled[-1] == width - 1
    slack = 1.5 / min(scale, 1)
    assert abs(rows_labeled[0] - y / scale) <= slack and abs(columns_labeled[0] - x / scale) <= slack

    transform = Transform(32, 1, "unit", (0.0,), (1.0,), tile_size=tile_size, scale=scale)
    tiles = cut_tiles(transform, "a", np.zeros((height, width), np.uint8), mask, ignore)
    index = list(tiles.ids).index(tile_id("a", y, x))
    truth, ignored = drawn(shapes[:1], rows, columns), np.zeros((rows, columns), np.uint8)
    truth[0:3, 0:4] = ignored[0:3, 0:4] = 1   # the __ignore__ rectangle, drawn after the triangle
    truth[0:3, 0:4] = 0
    if scale <= 1:   # shrinking: each tile pixel comes back from the original pixel it was drawn into
        np.testing.assert_array_equal(tiles.masks[index, :rows, :columns, 0], truth)
        np.testing.assert_array_equal(tiles.ignore[index, :rows, :columns, 0], ignored)
    else:            # enlarging: an original pixel shared with the tile before stays ignored
        assert (tiles.masks[index, :rows, :columns, 0] != truth).mean() < 0.1
    assert tiles.ignore[index, 0:2, 0:3].all(), "the tile's own __ignore__ shape"
    others = [position for position, tile in enumerate(tiles.ids) if tile != tile_id("a", y, x)]
    assert tiles.ignore[others].all() and not tiles.masks[others].any()


def test_two_annotated_tiles_of_one_image_merge_into_one_label(tmp_path):
    grid = TileGrid(64, 96, 32)
    first, second = TilePlacement("a", 0, 32, 1.0, 32), TilePlacement("a", 32, 64, 1.0, 32)
    files = [tile_file(tmp_path, first, 32, 32, [polygon(TRIANGLE)]),
             tile_file(tmp_path, second, 32, 32, [polygon([(2, 2), (20, 2), (20, 20), (2, 20)])])]
    mask, ignore = source_labels(files, 64, 96)
    expected_ignore = np.full((64, 96), 255, np.uint8)
    expected_ignore[0:32, 32:64] = expected_ignore[32:64, 64:96] = 0
    np.testing.assert_array_equal(ignore, expected_ignore)
    np.testing.assert_array_equal(mask[0:32, 32:64] // 255, drawn([polygon(TRIANGLE)], 32, 32))
    assert mask[34:53, 66:85].all() and mask[32:64, 64:96].sum() // 255 == 19 * 19
    assert mask.sum() // 255 == drawn([polygon(TRIANGLE)], 32, 32).sum() + 19 * 19
    assert len(grid) == 6


def test_a_tile_outside_its_image_or_of_another_size_is_one_line_naming_the_file(tmp_path):
    outside = tile_file(tmp_path, TilePlacement("a", 64, 0, 1.0, 32), 32, 32, [])
    with pytest.raises(ActivesegError, match=r"a@y64_x0\.json: the tile at y=64, x=0 lies outside its image") as raised:
        source_labels([outside], 64, 64)
    assert "\n" not in str(raised.value) and "; " in str(raised.value)
    resized = tile_file(tmp_path, TilePlacement("a", 0, 0, 0.5, 32), 32, 32, [])  # the image is 20 x 20 at 0.5
    with pytest.raises(ActivesegError, match=r"a@y0_x0\.json: annotates a 32x32 image, but the tile .* is 20x20"):
        source_labels([resized], 40, 40)
    broken = tmp_path / "b@y0_x0.json"
    broken.write_text(json.dumps({**tile_document(TilePlacement("b", 0, 0, 1.0, 32), 8, 8, []),
                                  TILE_KEY: {"image": "b", "y": -3, "x": 0, "scale": 1, "tile_size": 32}}))
    with pytest.raises(ActivesegError, match=r"b@y0_x0\.json: activeseg_tile is .*, not a tile's place"):
        source_labels([labelme.load(broken)], 8, 8)


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.write_png(path, array)


def test_ingest_labels_the_source_image_from_its_annotated_tiles_and_preprocess_pools_the_rest(tmp_path):
    """raw/ holds an image and, in annotations/, the corrected JSON (and PNG) of two of its tiles:
    ingest writes one label for the image (queried), preprocess puts those two tiles in train and
    the image's other tiles, unlabeled, in the pool."""
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    write_image(raw / "images" / "a.png", rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    write_image(raw / "images" / "b.png", rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    write_image(raw / "masks" / "b.png", np.zeros((64, 80), np.uint8))
    square = [polygon([(2, 2), (20, 2), (20, 20), (2, 20)])]
    tile_file(raw / "annotations", TilePlacement("a", 0, 32, 1.0, 32), 32, 32, square)
    tile_file(raw / "annotations", TilePlacement("a", 32, 64, 1.0, 32), 32, 16, [polygon(TRIANGLE)])
    for name in ("a@y0_x32", "a@y32_x64"):
        write_image(raw / "annotations" / f"{name}.png", np.zeros((32, 32, 3), np.uint8))
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "ingested").set_index("id")
    assert sorted(manifest.index) == ["a", "b"] and bool(manifest.loc["a", "queried"])
    assert bool(manifest.loc["a", "labeled"]) and manifest.loc["a", "source"] == "images/a.png"
    ignore = imageio.read_image(tmp_path / "ingested" / "ignore" / "a.png") > 0
    assert not ignore[0:32, 32:64].any() and not ignore[32:64, 64:80].any()
    assert ignore.sum() == 64 * 80 - 32 * 32 - 32 * 16

    split = pd.DataFrame({"id": ["a", "b"], "split": ["train", "val"], "has_mask": True, "queried": [True, False]})
    preprocess(tmp_path / "ingested", split, PreprocessParams(size=32, channels=3, tile_size=32), tmp_path / "prepared")
    train, pool = (load_split_arrays(tmp_path / "prepared", name) for name in ("train", "pool"))
    assert list(train.ids) == ["a@y0_x32", "a@y32_x64"] and train.has_mask.all()
    assert train.masks[0, 3:20, 3:20].all() and train.masks[0].sum() == 19 * 19 and not train.ignore[0].any()
    assert train.ignore[1, :, 16:].all() and not train.ignore[1, :, :16].any(), "only the padding ignored"
    assert sorted(pool.ids) == ["a@y0_x0", "a@y0_x64", "a@y32_x0", "a@y32_x32"] and not pool.has_mask.any()
    corner = list(pool.ids).index("a@y0_x64")
    assert pool.ignore[corner, :, 16:].all() and not pool.ignore[corner, :, :16].any(), "pool tiles: padding only"
    assert not pool.masks.any()


def test_the_pool_is_tiles_and_the_query_ranks_and_exports_tiles_ingest_reads_back(tmp_path):
    """With tiles the pool's images are cut like train's; the ranking lists tiles with their
    source and position; the export is the tile at the processing scale without padding, and its
    JSON, corrected and read by ingest, labels that tile of the image."""
    rng = np.random.default_rng(4)
    ingested = tmp_path / "ingested"
    write_image(ingested / "images" / "p.png", rng.integers(0, 255, (100, 70), dtype=np.uint8))
    write_image(ingested / "images" / "t.png", rng.integers(0, 255, (40, 40), dtype=np.uint8))
    write_image(ingested / "masks" / "t.png", np.zeros((40, 40), np.uint8))
    split = pd.DataFrame({"id": ["p", "t"], "split": ["pool", "train"], "has_mask": [False, True]})
    preprocess(ingested, split, PreprocessParams(size=32, channels=1, tile_size=32, scale=0.5), tmp_path / "prepared")
    pool = load_split_arrays(tmp_path / "prepared", "pool")
    assert list(pool.ids) == [tile_id("p", y, x) for y, x in TileGrid(50, 35, 32).positions]

    scores = np.array([0.1, 0.9, 0.3, 0.2])
    table = rank(pool.ids, scores, "entropy", tiles=True)
    assert list(table.columns) == ["id", "source", "y", "x", "score", "rank", "strategy"]
    assert table.iloc[0][["id", "source", "y", "x", "rank"]].tolist() == ["p@y0_x32", "p", 0, 32, 1]
    assert list(rank(pool.ids, scores, "entropy").columns) == ["id", "score", "rank", "strategy"]

    probabilities = np.zeros((4, 32, 32), np.float32)
    probabilities[1, 2:10, 0:3] = 0.9
    scored = PoolScores(scores, np.full((4, 32, 32), 0.2, np.float32), probabilities)
    export_for_annotation(tmp_path / "query", ["p@y0_x32"], pool.ids, scored, ingested, "entropy", 0.5,
                          "foreground", tile_size=32, scale=0.5, ranking=table, model_version="untracked",
                          served_export="data/query/export")
    export = tmp_path / "query" / "export"
    assert sorted(path.name for path in export.iterdir() if path.is_file()) == ["p@y0_x32.json", "p@y0_x32.png"]
    pixels = imageio.read_image(export / "p@y0_x32.png")
    np.testing.assert_array_equal(pixels, rescale(imageio.read_image(ingested / "images" / "p.png"), 0.5)[0:32, 32:35])
    document = json.loads((export / "p@y0_x32.json").read_text())
    assert (document["imageHeight"], document["imageWidth"]) == (32, 3) and document["flags"] == {QUERIED_FLAG: True}
    assert document[TILE_KEY] == {"image": "p", "y": 0, "x": 32, "scale": 0.5, "tile_size": 32}
    assert len(document["shapes"]) == 1
    assert imageio.read_image(tmp_path / "query" / "uncertainty" / "p@y0_x32.png").shape == (32, 3, 3)
    assert parse_tile_id("p@y0_x32") == ("p", 0, 32) and parse_tile_id("p") is None

    # the annotator redraws the object; the corrected JSON and its PNG go to raw/annotations
    raw = tmp_path / "raw"
    write_image(raw / "images" / "p.png", imageio.read_native(ingested / "images" / "p.png"))
    document["shapes"] = [polygon([(0, 4), (2, 4), (2, 12), (0, 12)])]
    (raw / "annotations").mkdir()
    (raw / "annotations" / "p@y0_x32.json").write_text(json.dumps(document))
    (raw / "annotations" / "p@y0_x32.png").write_bytes((export / "p@y0_x32.png").read_bytes())
    ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "ingested2")
    ignore = imageio.read_image(tmp_path / "ingested2" / "ignore" / "p.png") > 0
    mask = imageio.read_image(tmp_path / "ingested2" / "masks" / "p.png") > 0
    assert not ignore[0:64, 64:70].any() and ignore.sum() == 100 * 70 - 64 * 6
    assert mask[8:25, 64:69].all() and not mask[:, :64].any() and not mask[30:].any()


def test_a_tile_that_a_whole_query_left_ignored_can_be_annotated_later(tmp_path):
    """An image annotated whole through the query, with an __ignore__ rectangle over one tile:
    that tile went back to the pool; annotated as a tile later, its label fills that block and
    the whole query's label stays elsewhere. A mask of your own takes no tile annotation."""
    raw = tmp_path / "raw"
    write_image(raw / "images" / "a.png", np.full((64, 64, 3), 80, np.uint8))
    whole = {"version": "5.5.0", "flags": {QUERIED_FLAG: True}, "imagePath": "a.png", "imageData": None,
             "imageHeight": 64, "imageWidth": 64,
             "shapes": [polygon([(2, 2), (10, 2), (10, 10), (2, 10)]),
                        polygon([(32, 32), (63, 32), (63, 63), (32, 63)], label="__ignore__")]}
    (raw / "images" / "a.json").write_text(json.dumps(whole))
    tile_file(raw / "annotations", TilePlacement("a", 32, 32, 1.0, 32), 32, 32, [polygon(TRIANGLE)])
    write_image(raw / "annotations" / "a@y32_x32.png", np.zeros((32, 32, 3), np.uint8))
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "ingested").set_index("id")
    assert bool(manifest.loc["a", "queried"]) and manifest.loc["a", "ignore_fraction"] == 0
    mask = imageio.read_image(tmp_path / "ingested" / "masks" / "a.png") // 255
    assert mask[2:11, 2:11].all() and mask[:32].sum() == 81
    np.testing.assert_array_equal(mask[32:, 32:], drawn([polygon(TRIANGLE)], 32, 32))

    (raw / "images" / "a.json").unlink()
    write_image(raw / "masks" / "a.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(ActivesegError, match=r"a@y32_x32\.json: annotates a tile of image 'a', which already has"):
        ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "ingested2")


def owned_by_tile(length: int, scaled_length: int, start: int, end: int) -> np.ndarray:
    """The original pixels along one axis that the tile over resampled pixels [start, end) owns,
    asked of OpenCV's nearest-neighbour resize of an index ramp: a pixel that resampled pixels
    sample belongs to the tile only when every one of them lies in it; a pixel none samples (a
    shrinking scale skips it) goes with the pixel before it (the first tile's, before any)."""
    ramp = np.arange(length, dtype=np.float32).reshape(length, 1)
    source = cv2.resize(ramp, (1, scaled_length), interpolation=cv2.INTER_NEAREST)[:, 0].astype(int)
    inside = np.zeros(scaled_length, bool)
    inside[start:end] = True
    owned = np.zeros(length, bool)
    for pixel in range(length):
        samplers = np.flatnonzero(source == pixel)
        if samplers.size:
            owned[pixel] = inside[samplers].all()
        else:
            before = np.flatnonzero(source < pixel)
            owned[pixel] = inside[before[-1]] if before.size else inside[0]
    return owned


@pytest.mark.parametrize("scale", [0.37, 0.5, 1.0, 1.5, 2.0])
def test_a_tiles_label_unignores_exactly_the_original_pixels_only_that_tile_samples(tmp_path, scale):
    """Every tile of a 100 x 140 image, labelled alone, un-ignores the original pixels that only
    it samples through OpenCV's nearest-neighbour indices, no more (a pixel shared with a
    neighbour stays ignored) and no fewer (at scale > 1 the last row only the tile samples)."""
    height, width, tile_size = 100, 140, 32
    scaled_height, scaled_width = rescale(np.zeros((height, width), np.uint8), scale).shape
    for y in range(0, scaled_height, tile_size):
        for x in range(0, scaled_width, tile_size):
            where = TilePlacement("img", y, x, scale, tile_size)
            rows, columns = where.extent(height, width)
            _, ignore = source_labels([tile_file(tmp_path / f"{y}_{x}", where, rows, columns, [])], height, width)
            expected = np.outer(owned_by_tile(height, scaled_height, y, y + rows),
                                owned_by_tile(width, scaled_width, x, x + columns))
            assert np.array_equal(ignore == 0, expected), (y, x)
