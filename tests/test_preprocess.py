"""Resize / normalise: one transform, identical in NumPy and TensorFlow, statistics from train."""

from __future__ import annotations

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
