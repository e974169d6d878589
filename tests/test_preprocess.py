"""Resize / normalise: one transform, identical in NumPy and TensorFlow, statistics from train."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from activeseg.imageio import write_png
from activeseg.preprocess import Transform, load_split_arrays, preprocess
from activeseg.params import PreprocessParams


@pytest.mark.parametrize("normalization", ["unit", "zscore"])
def test_tensor_normalisation_matches_numpy(normalization):
    transform = Transform(8, 3, normalization, (0.2, 0.4, 0.6), (0.1, 0.2, 0.3))
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(transform.normalize_tensor(images)), transform.normalize(images),
                               rtol=1e-6, atol=1e-6)


def test_resize_converts_channels_and_keeps_masks_binary():
    transform = Transform(16, 3, "unit", (0.0,), (1.0,))
    gray = np.arange(40 * 40, dtype=np.uint32).reshape(40, 40).astype(np.uint8)
    assert transform.resize_image(gray).shape == (16, 16, 3)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    resized = transform.resize_mask(mask)
    assert resized.shape == (16, 16, 1) and set(np.unique(resized)) == {0, 1}


def test_statistics_come_from_the_training_split_only(tmp_path):
    for index, value in enumerate((50, 150, 250)):
        write_png(tmp_path / "images" / f"i{index}.png", np.full((20, 20), value, np.uint8))
        write_png(tmp_path / "masks" / f"i{index}.png", np.zeros((20, 20), np.uint8))
    split = pd.DataFrame({"id": ["i0", "i1", "i2"], "split": ["train", "train", "test"], "has_mask": True})
    transform = preprocess(tmp_path, split, PreprocessParams(size=16, channels=1, normalization="zscore"),
                           tmp_path / "prepared")
    assert transform.mean[0] == pytest.approx(100 / 255, abs=1e-4)
    assert transform.std[0] == pytest.approx(50 / 255, abs=1e-4)
    assert Transform.load(tmp_path / "prepared" / "stats.json") == transform
    test = load_split_arrays(tmp_path / "prepared", "test")
    assert test.images.dtype == np.uint8 and test.images.shape == (1, 16, 16, 1)


def twelve_bit_ramp() -> np.ndarray:
    """A 12-bit camera's image with 256 known grey levels, 1000..1255 (a narrow part of 0..4095)."""
    return (1000 + np.arange(256, dtype=np.uint16)).reshape(16, 16)


def test_twelve_bit_levels_survive_ingest_and_preprocess(tmp_path):
    from activeseg.ingest import ingest
    from activeseg.params import IngestParams

    raw = tmp_path / "raw"
    write_png(raw / "images" / "cells.png", twelve_bit_ramp())
    write_png(raw / "masks" / "cells.png", np.zeros((16, 16), np.uint8))
    ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "ingested")
    split = pd.DataFrame({"id": ["cells"], "split": ["train"], "has_mask": True})

    def prepared(intensity, percentiles=(0.5, 99.5)):
        out = tmp_path / f"prepared_{intensity}_{percentiles[0]}"
        transform = preprocess(tmp_path / "ingested", split,
                               PreprocessParams(size=16, channels=1, intensity=intensity, percentiles=percentiles), out)
        assert Transform.load(out / "stats.json") == transform
        return load_split_arrays(out, "train").images[0, ..., 0], json.loads((out / "stats.json").read_text())

    eight_bit, _ = prepared("8bit")
    assert np.array_equal(eight_bit, twelve_bit_ramp() // 257)  # today's scaling: 2 grey levels left
    minmax, stats = prepared("minmax")
    assert np.array_equal(minmax, twelve_bit_ramp() - 1000)  # all 256 levels, stretched to 0..255
    assert stats["intensity"] == "minmax"
    full_range, _ = prepared("percentile", (0.0, 100.0))
    assert np.array_equal(full_range, minmax)
    clipped, stats = prepared("percentile", (10.0, 90.0))
    assert stats["intensity"] == "percentile" and stats["percentiles"] == [10.0, 90.0]
    low, high = np.percentile(np.arange(256), (10.0, 90.0))  # 25.5 and 229.5 above 1000
    expected = np.round(np.clip((np.arange(256) - low) * 255 / (high - low), 0, 255)).reshape(16, 16)
    assert np.array_equal(clipped, expected.astype(np.uint8))
    assert (clipped == 0).sum() == 26 and (clipped == 255).sum() == 26


def test_flat_image_has_no_range_to_stretch():
    flat = np.full((8, 8), 3000, np.uint16)
    for intensity in ("minmax", "percentile"):
        assert not Transform(8, 1, "unit", (0.0,), (1.0,), intensity).scale_intensity(flat).any()


def test_stats_json_without_intensity_loads_as_8bit(tmp_path):
    """A stats.json written before preprocess.intensity existed (a model trained then) keeps working."""
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"size": 8, "channels": 1, "normalization": "unit", "mean": [0.0], "std": [1.0]}))
    assert Transform.load(stats).intensity == "8bit"


def test_ignore_regions_are_resized_like_the_masks_and_default_to_none(tmp_path):
    region = np.zeros((40, 40), np.uint8)
    region[5:25, 10:35] = 255
    for name in ("a", "b"):
        write_png(tmp_path / "images" / f"{name}.png", np.full((40, 40), 90, np.uint8))
        write_png(tmp_path / "masks" / f"{name}.png", region)
    write_png(tmp_path / "ignore" / "a.png", region)  # only a has __ignore__ regions
    split = pd.DataFrame({"id": ["a", "b"], "split": ["test", "test"], "has_mask": True})
    params = PreprocessParams(size=16, channels=1, normalization="unit")
    preprocess(tmp_path, split, params, tmp_path / "prepared")
    test = load_split_arrays(tmp_path / "prepared", "test")
    assert test.ignore.dtype == np.uint8 and test.ignore.shape == test.masks.shape
    np.testing.assert_array_equal(test.ignore[0], test.masks[0])  # same geometry as the mask
    assert test.ignore[0].any() and not test.ignore[1].any()
    first = (tmp_path / "prepared" / "test.npz").read_bytes()
    preprocess(tmp_path, split, params, tmp_path / "prepared")
    assert (tmp_path / "prepared" / "test.npz").read_bytes() == first  # still byte-reproducible


def test_labelme_voc_ignore_regions_reach_the_prepared_arrays(tmp_path, shared_datasets):
    from activeseg.ingest import ingest
    from activeseg.params import IngestParams

    manifest = ingest(IngestParams(raw_dir=str(shared_datasets / "labelme-voc2011")), 0, tmp_path / "ingested")
    split = pd.DataFrame({"id": manifest["id"], "split": "test", "has_mask": True})
    preprocess(tmp_path / "ingested", split, PreprocessParams(size=64, channels=3, normalization="unit"),
               tmp_path / "prepared")
    test = load_split_arrays(tmp_path / "prepared", "test")
    fractions = dict(zip(manifest["id"], manifest["ignore_fraction"]))
    for image_id, ignore, mask in zip(test.ids, test.ignore, test.masks):
        assert ignore.mean() == pytest.approx(fractions[image_id], abs=0.02), image_id
        assert not (ignore & mask).any()  # __ignore__ cuts the foreground; resizing keeps them apart
    assert (test.ignore.reshape(len(test), -1).any(axis=1)).sum() == 2
