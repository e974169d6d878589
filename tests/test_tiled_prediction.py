"""Tiles end to end in the library: preprocess cuts train / val / pool into tiles, and `activeseg predict`
(and evaluate, through the same function) slides a window over the whole original image, with a
4000 x 4000 prediction inside a stated memory bound."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from activeseg.imageio import read_image, write_png
from activeseg.params import PreprocessParams
from activeseg.preprocess import Transform, load_split_arrays, preprocess
from activeseg.tiling import TileGrid, tile_source

TILED = Transform(32, 3, "unit", (0.0,), (1.0,), tile_size=32, tile_overlap=8)


def pixelwise_any_size():
    """:func:`conftest.pixelwise_model` taking any input side: sigmoid(10 (mean intensity - 0.5))."""
    from activeseg.runtime import keras

    inputs = keras.Input((None, None, 3))
    intensity = keras.layers.Conv2D(1, 1, name="intensity")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(keras.layers.Conv2D(1, 1, name="head")(intensity)))
    model.get_layer("intensity").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.array([-0.5], np.float32)])
    model.get_layer("head").set_weights([np.full((1, 1, 1, 1), 10.0, np.float32), np.zeros(1, np.float32)])
    return model


def pixelwise_truth(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float64).mean(axis=-1) / 255.0 if image.ndim == 3 else image / 255.0
    return 1.0 / (1.0 + np.exp(-10.0 * (grey - 0.5)))


def test_predict_with_tiles_slides_over_the_original_image(tmp_path):
    """A pixel-by-pixel model needs no context: the blended sliding window at the original size
    must give its value at every pixel, where resizing to 32 px and back would blur it."""
    from activeseg.cli import main as cli_main
    from activeseg.model import save_model
    from activeseg.outputs import write_json

    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (77, 101, 3), dtype=np.uint8)
    write_png(tmp_path / "in" / "wide.png", image)
    save_model(pixelwise_any_size(), tmp_path / "model.keras")
    write_json(tmp_path / "stats.json", TILED.to_json())
    cli_main(["predict", "--model", str(tmp_path / "model.keras"), "--stats", str(tmp_path / "stats.json"),
              str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--probabilities", "--batch-size", "3"])
    probabilities = read_image(tmp_path / "out" / "probabilities" / "wide.png").astype(float) / 255
    assert probabilities.shape == (77, 101)
    assert np.abs(probabilities - pixelwise_truth(image)).max() <= 1 / 255 + 1e-6
    mask = read_image(tmp_path / "out" / "masks" / "wide.png") > 0
    assert np.mean(mask != (pixelwise_truth(image) > 0.5)) < 0.001


def test_scale_resamples_the_image_and_the_prediction_comes_back_at_the_original_size():
    from activeseg.predict import probability_map

    image = np.zeros((90, 130, 3), np.uint8)
    image[:, 65:] = 255  # left half certain background, right half certain foreground
    probabilities = probability_map(pixelwise_any_size(), dataclasses.replace(TILED, scale=0.5), image)
    assert probabilities.shape == (90, 130)
    assert probabilities[:, :60].max() < 0.01 and probabilities[:, 70:].min() > 0.99


# Measured: 4000 x 4000 RGB, 256-px tiles overlapping by 32 (324 tiles), batches of 8: the NumPy
# peak is the two float32 accumulators (128 MB) plus one batch; holding every tile's prediction
# at once would add 85 MB more.
FOUR_K_BOUND_BYTES = 150 * 2 ** 20


def test_a_4000_pixel_image_is_predicted_within_the_memory_bound():
    from activeseg.predict import probability_map

    model = pixelwise_any_size()
    transform = dataclasses.replace(TILED, tile_size=256, tile_overlap=32)
    image = np.full((4000, 4000, 3), 255, np.uint8)
    image[1000:3000, 500:1500] = 0
    tracemalloc.start()
    try:
        probabilities = probability_map(model, transform, image, batch_size=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert probabilities.shape == (4000, 4000)
    assert probabilities[2000, 1000] < 0.01 and probabilities[0, 0] > 0.99
    print(f"4000 x 4000 prediction: NumPy peak {peak / 2 ** 20:.0f} MiB")
    assert peak <= FOUR_K_BOUND_BYTES, f"peak {peak / 2 ** 20:.0f} MiB"


def test_preprocess_cuts_train_and_val_into_tiles_and_marks_their_padding(tmp_path):
    rng = np.random.default_rng(5)
    split = pd.DataFrame({"id": ["a", "b", "c", "d"], "split": ["train", "val", "test", "pool"],
                          "has_mask": [True, True, True, False]})
    for image_id in split["id"]:
        write_png(tmp_path / "images" / f"{image_id}.png", rng.integers(0, 255, (50, 70), dtype=np.uint8))
        write_png(tmp_path / "masks" / f"{image_id}.png", (rng.random((50, 70)) > 0.5).astype(np.uint8) * 255)
    params = PreprocessParams(size=32, channels=3, tile_size=32, tile_overlap=8)
    transform = preprocess(tmp_path, split, params, tmp_path / "prepared")
    assert (transform.tile_size, transform.tile_overlap, transform.scale) == (32, 8, 1.0)
    assert Transform.load(tmp_path / "prepared" / "stats.json") == transform
    train = load_split_arrays(tmp_path / "prepared", "train")
    grid = TileGrid(50, 70, 32, 8)
    assert len(train) == len(grid) and train.images.shape[1:] == (32, 32, 3)
    assert list(train.ids) == [f"a@y{y}_x{x}" for y, x in grid.positions]
    mask = read_image(tmp_path / "masks" / "a.png") > 127
    last = list(train.ids).index("a@y24_x48")  # 26 rows, 22 columns inside the image
    np.testing.assert_array_equal(train.masks[last, :26, :22, 0], mask[24:, 48:])
    assert not train.ignore[last, :26, :22].any()
    assert train.ignore[last, 26:].all() and train.ignore[last, :, 22:].all()
    assert len(load_split_arrays(tmp_path / "prepared", "val")) == len(grid)
    pool = load_split_arrays(tmp_path / "prepared", "pool")   # the query ranks tiles
    assert list(pool.ids) == [f"d@y{y}_x{x}" for y, x in grid.positions] and not pool.has_mask.any()
    np.testing.assert_array_equal(pool.ignore[last], train.ignore[last])   # the padding alone
    # evaluate reads the test originals
    assert load_split_arrays(tmp_path / "prepared", "test").images.shape == (1, 32, 32, 3)
    assert json.loads((tmp_path / "prepared" / "stats.json").read_text())["tile_size"] == 32


def test_tiles_stay_in_their_source_images_split(tmp_path):
    rng = np.random.default_rng(6)
    ids = [f"img{index}" for index in range(8)]
    split = pd.DataFrame({"id": ids, "split": ["train"] * 4 + ["val"] * 2 + ["test", "pool"], "has_mask": True})
    for image_id in ids:
        side = int(rng.integers(20, 90))
        write_png(tmp_path / "images" / f"{image_id}.png", rng.integers(0, 255, (side, 90 - side // 2), dtype=np.uint8))
        write_png(tmp_path / "masks" / f"{image_id}.png", np.zeros((side, 90 - side // 2), np.uint8))
    params = PreprocessParams(size=32, channels=1, tile_size=32, tile_overlap=4)
    preprocess(tmp_path, split, params, tmp_path / "prepared")
    sources = {name: {tile_source(tile) for tile in load_split_arrays(tmp_path / "prepared", name).ids}
               for name in ("train", "val")}
    assert sources == {"train": set(ids[:4]), "val": set(ids[4:6])}
