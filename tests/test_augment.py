"""Augmentation: albumentations' own serialisation round trip, seeded variants, masks kept binary,
crops resized back, the ignore mask given the mask's geometry, bad pipelines as one-line errors,
and the preview PNG."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import yaml

from activeseg.augment import augment, build_pipeline, preview_grid
from activeseg.errors import ActivesegError
from activeseg.preprocess import SplitArrays

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PIPELINE = yaml.safe_load((REPO / "params.yaml").read_text())["augment"]["pipeline"]


def _cells(count: int = 3, side: int = 64) -> SplitArrays:
    rng = np.random.default_rng(0)
    masks = np.zeros((count, side, side, 1), np.uint8)
    for index in range(count):
        cv2.circle(masks[index], tuple(int(v) for v in rng.integers(16, side - 16, 2)), 12, 1, -1)
    images = np.clip(masks * 150 + rng.normal(60, 15, masks.shape), 0, 255).astype(np.uint8)
    return SplitArrays(np.array([f"c{i}" for i in range(count)]), images, masks, np.ones(count, bool))


def test_params_pipeline_survives_the_albumentations_round_trip():
    built = build_pipeline(DEFAULT_PIPELINE, side=64, seed=0)
    serialised = A.to_dict(built)
    assert A.to_dict(A.from_dict(serialised)) == serialised
    # every transform and every argument written in params.yaml is what albumentations built
    written = DEFAULT_PIPELINE["transform"]["transforms"]
    built_transforms = serialised["transform"]["transforms"]
    assert [t["__class_fullname__"] for t in built_transforms] == [t["__class_fullname__"] for t in written]
    for mine, theirs in zip(written, built_transforms):
        for key, value in mine.items():
            expected = [64, 64] if value == "auto" else list(value) if isinstance(value, (list, tuple)) else value
            got = list(theirs[key]) if isinstance(theirs[key], (list, tuple)) else theirs[key]
            assert got == expected, (mine["__class_fullname__"], key)


def test_defaults_include_em_distortions_and_crops():
    names = {t["__class_fullname__"] for t in DEFAULT_PIPELINE["transform"]["transforms"]}
    assert {"ElasticTransform", "GridDistortion", "RandomResizedCrop"} <= names


def test_variants_are_seeded_binary_and_keep_their_size():
    data = _cells()
    first = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=7), variants=3)
    again = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=7), variants=3)
    other = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=8), variants=3)
    assert first.images.shape == (12, 64, 64, 1) and first.masks.shape == (12, 64, 64, 1)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.masks, again.masks)
    assert not np.array_equal(first.images[3:], other.images[3:])
    assert set(np.unique(first.masks)) <= {0, 1}
    np.testing.assert_array_equal(first.images[:3], data.images)  # originals first
    assert list(first.ids[3:6]) == ["c0#aug1", "c1#aug1", "c2#aug1"]


def test_a_crop_is_resized_back_to_the_input_size():
    crop = {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "RandomCrop", "height": 32, "width": 32, "p": 1.0}]}}
    result = augment(_cells(), build_pipeline(crop, seed=0), variants=1)
    assert result.images.shape == (6, 64, 64, 1)
    assert set(np.unique(result.masks)) <= {0, 1}


def test_the_ignore_mask_gets_the_same_geometry_as_the_mask():
    data = _cells()
    plain = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=7), variants=3)
    data.ignore = data.masks.copy()  # ignore exactly the foreground: every variant must keep them equal
    carried = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=7), variants=3)
    np.testing.assert_array_equal(carried.ignore, carried.masks)
    np.testing.assert_array_equal(carried.masks, plain.masks)   # the extra target changes no random draw
    np.testing.assert_array_equal(carried.images, plain.images)
    assert not np.array_equal(carried.ignore[3:], np.concatenate([data.ignore] * 3))  # the variants moved


def test_a_crop_of_size_auto_is_made_at_the_input_side():
    zoom = {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "RandomResizedCrop", "size": "auto", "scale": [0.5, 0.5], "p": 1.0}]}}
    assert tuple(build_pipeline(zoom, seed=0, side=256).transforms[0].size) == (256, 256)
    # made at the input side, the zoomed variant keeps detail that a crop made at 32 px blurs away
    data = _cells(count=1, side=128)
    data.images[0] = ((np.indices((128, 128)) // 4).sum(axis=0) % 2 * 255)[..., None]  # 4-pixel checkerboard
    crop_at_32 = {**zoom["transform"]["transforms"][0], "size": [32, 32]}
    small = {"transform": {**zoom["transform"], "transforms": [crop_at_32]}}
    sharp = augment(data, build_pipeline(zoom, seed=0, side=128), variants=1).images[1]
    blurred = augment(data, build_pipeline(small, seed=0, side=128), variants=1).images[1]
    assert sharp.std() > blurred.std() + 20


def test_an_unknown_transform_is_a_one_line_error():
    broken = {"transform": {"__class_fullname__": "Compose", "p": 1.0,
                            "transforms": [{"__class_fullname__": "NoSuchTransform", "p": 1.0}]}}
    with pytest.raises(ActivesegError, match="augment.pipeline"):
        build_pipeline(broken, seed=0)


def test_preview_png_shows_originals_and_variants(tmp_path):
    data = _cells()
    augmented = augment(data, build_pipeline(DEFAULT_PIPELINE, side=64, seed=1), variants=2)
    preview_grid(augmented, originals=3, variants=2, path=tmp_path / "preview.png")
    picture = cv2.imread(str(tmp_path / "preview.png"))
    assert picture.shape == (3 * 66, 3 * 66, 3)
    assert (picture[..., 2] == 255).any()  # the red mask outline (BGR as OpenCV reads it)
