"""params.yaml validation: every bad key or value is one line naming the key and the file."""

from __future__ import annotations

import pytest

from activeseg.errors import ActivesegError
from activeseg.params import flatten, load_params, parse_params
from conftest import REPO_ROOT, tiny_params_dict


def test_project_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert (params.epochs == "auto" or params.epochs >= 1) and isinstance(params.seed, int)


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "two", "`epochs` must be a whole number, not 'two'"),
    ("epochs", 0, "`epochs` must be at least 1"),
    ("data_seed", "fixed", "`data_seed` must be a whole number, not 'fixed' (or auto"),
    ("train.backbone", "resnet999", "`train.backbone` must be one of"),
    ("train.loss", "bce+hinge", "`train.loss` must be one of"),
    ("preprocess.size", 50, "`preprocess.size` must be a multiple of 32"),
    ("split.val_fraction", 1.5, "`split.val_fraction` must be between 0 and 1"),
    ("split.simulate", "yes", "`split.simulate` must be true, false or auto, not 'yes'"),
    ("train.learning_rate", "fast", "`train.learning_rate` must be a number"),
    ("query.strategy", "psychic", "`query.strategy` must be one of"),
    ("query.strategy", "random_foreground", "reads the hidden masks: simulation.strategies only"),
    ("query.candidates_per_pick", 0, "`query.candidates_per_pick` must be at least 1"),
    ("simulation.steps_per_epoch", -1, "`simulation.steps_per_epoch` must be 0 (one pass) or more"),
    ("preprocess.intensity", "16bit", "`preprocess.intensity` must be one of 8bit, minmax, percentile"),
    ("preprocess.percentiles", [99.5, 0.5], "`preprocess.percentiles` must be [low, high] with 0 <= low < high"),
    ("preprocess.tile_size", 100, "`preprocess.tile_size` must be 0 (resize whole images to preprocess.size) or a "
                                  "multiple of 32"),
    ("preprocess.tile_overlap", 8, "`preprocess.tile_overlap` must be at least 0 and below half of"),
    ("preprocess.scale", 0.5, "`preprocess.scale` only applies to tiles: set preprocess.tile_size"),
    ("train.time_budget", -5, "`train.time_budget` must be auto or 0 (no budget) or a number of minutes"),
    ("train.time_budget", "soon", "`train.time_budget` must be auto or 0 (no budget) or a number of minutes"),
    ("train.precision", "float16", "`train.precision` must be auto, float32 or mixed_bfloat16"),
])
def test_bad_values_are_named(key, value, message):
    raw = tiny_params_dict(train__architecture="sm_unet", **{key.replace(".", "__"): value})  # sm_unet's divisor, 32
    with pytest.raises(ActivesegError, match="^params.yaml: ") as caught:
        parse_params(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_key_is_named():
    raw = tiny_params_dict()
    raw["train"]["epochz"] = 3
    with pytest.raises(ActivesegError, match="`train.epochz` is not a known parameter"):
        parse_params(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ActivesegError, match="not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1\n")
    with pytest.raises(ActivesegError, match="not valid YAML"):
        load_params(broken)


def test_flatten_gives_dotted_keys(tiny_params):
    flat = flatten(tiny_params())
    assert flat["epochs"] == 1
    assert flat["train.backbone"] == "resnet18"
    assert flat["ingest.synthetic.count"] == 24


@pytest.mark.parametrize("overrides, message", [
    ({"preprocess__tile_size": 64, "preprocess__tile_overlap": 32}, "`preprocess.tile_overlap` must be at least 0"),
    ({"preprocess__tile_size": 64, "preprocess__scale": 0}, "`preprocess.scale` must be above 0 and at most 4"),
    ({"preprocess__tile_size": 64, "simulation__enabled": True}, "`simulation.enabled` must be false with"),
    ({"preprocess__tile_size": 64, "train__crop_size": 96},
     "`train.crop_size` must be auto, 0 (no crop) or a multiple"),
])
def test_bad_tile_params_are_named(overrides, message):
    with pytest.raises(ActivesegError, match="^params.yaml: ") as caught:
        parse_params(tiny_params_dict(**overrides))
    assert message in str(caught.value)


def test_tiles_may_be_larger_than_the_resize_side_and_crops_up_to_the_tile():
    params = parse_params(tiny_params_dict(preprocess__tile_size=128, preprocess__tile_overlap=16,
                                           preprocess__scale=0.5, train__crop_size=96))
    assert (params.preprocess.tile_size, params.preprocess.tile_overlap, params.preprocess.scale) == (128, 16, 0.5)
