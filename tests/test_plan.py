"""The data's plan: each `auto` rule on a made-up manifest, determinism, explicit params winning."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from activeseg.errors import ActivesegError
from activeseg.params import AUTO_KEYS, parse_params
from activeseg.plan import EPOCHS, PREPROCESS_KEYS, describe, effective_params, make_plan, plan_values
from conftest import make_project, run, tiny_params_dict

AUTO_PARAMS = {key: "auto" for key in AUTO_KEYS}


def made_up(train: int, side: int | tuple[int, int] = 512, gray: bool = True, val: int = 4, test: int = 5,
            pool: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A manifest and split of ``train + val + test`` labeled images (and ``pool`` unlabeled) of one size."""
    height, width = (side, side) if isinstance(side, int) else side
    splits = ["train"] * train + ["val"] * val + ["test"] * test + ["pool"] * pool
    ids = [f"image_{index:03d}" for index in range(len(splits))]
    labeled = [split != "pool" for split in splits]
    manifest = pd.DataFrame({"id": ids, "source": "images", "height": height, "width": width,
                             "channels": 1 if gray else 3, "labeled": labeled, "foreground_fraction": 0.2,
                             "ignore_fraction": 0.0, "queried": False, "checksum": "x", "predefined_split": ""})
    split = pd.DataFrame({"id": ids, "split": splits, "labeled": labeled, "has_mask": labeled})
    return manifest, split


def params_with(**overrides):
    """params.yaml with every plan-able key at `auto`, then ``overrides`` (dotted keys as ``a__b``)."""
    return parse_params(tiny_params_dict(**{**{key.replace(".", "__"): "auto" for key in AUTO_KEYS}, **overrides}))


def decided(plan: dict) -> dict:
    return {key: decision["value"] for key, decision in plan["params"].items()}


def test_the_plan_is_deterministic_and_json_safe():
    manifest, split = made_up(train=21)
    first = make_plan(params_with(), manifest, split)
    assert json.loads(json.dumps(first)) == first
    assert make_plan(params_with(), manifest.copy(), split.copy()) == first


def test_gray_images_get_one_channel_and_any_colour_image_three():
    manifest, split = made_up(train=21, gray=True)
    assert decided(make_plan(params_with(), manifest, split))["preprocess.channels"] == 1
    manifest.loc[3, "channels"] = 3
    assert decided(make_plan(params_with(), manifest, split))["preprocess.channels"] == 3


@pytest.mark.parametrize("train, gray, side, architecture", [
    (21, True, 512, "unet_plain"),   # ISBI: a small gray set
    (21, True, 64, "unet_plain"),    # small gray images too
    (43, False, 960, "unet_plain"),  # soybean: a small set of large colour photographs
    (32, False, 64, "sm_unet"),      # the built-in set: small colour images, cheap resnet steps
    (150, True, 512, "sm_unet"),     # a large set
])
def test_the_plain_unet_for_small_gray_or_large_image_sets(train, gray, side, architecture):
    manifest, split = made_up(train=train, gray=gray, side=side)
    assert decided(make_plan(params_with(), manifest, split))["train.architecture"] == architecture


def test_a_later_rule_uses_an_explicit_earlier_value_gray_images_fed_as_three_channels_get_the_sm_unet():
    manifest, split = made_up(train=21, side=64, gray=True)
    assert decided(make_plan(params_with(), manifest, split))["train.architecture"] == "unet_plain"  # decided: 1
    plan = make_plan(params_with(preprocess__channels=3), manifest, split)
    assert plan["params"]["preprocess.channels"]["by"] == "params.yaml"
    assert decided(plan)["train.architecture"] == "sm_unet", plan["params"]["train.architecture"]["reason"]
    assert plan["params"]["train.architecture"]["reason"].startswith("3-channel input of side <= 64 px")
    assert decided(plan)["preprocess.normalization"] == "unit"  # and the rule after it follows the sm_unet


def test_an_explicit_small_size_makes_the_sm_unet_cheap_enough():
    plan = make_plan(params_with(preprocess__size=64), *made_up(train=43, side=960, gray=False))
    assert decided(plan)["train.architecture"] == "sm_unet"


def test_encoder_weights_need_the_sm_unet():
    plan = make_plan(params_with(train__encoder_weights="encoder.weights.h5"), *made_up(train=21, gray=False))
    assert decided(plan)["train.architecture"] == "sm_unet" and "encoder_weights" in \
        plan["params"]["train.architecture"]["reason"]


@pytest.mark.parametrize("side, architecture, size", [
    (512, "auto", 256),           # capped for CPU cost
    ((1280, 960), "auto", 256),   # the short side counts, then the cap
    (88, "unet_plain", 80),       # a multiple of unet_plain's 16 …
    (88, "sm_unet", 64),          # … or of sm_unet's 32
    (20, "unet_plain", 16),       # never below the divisor
])
def test_size_is_the_typical_side_capped_and_divisible(side, architecture, size):
    manifest, split = made_up(train=21, side=side, gray=False)
    assert decided(make_plan(params_with(train__architecture=architecture), manifest, split))["preprocess.size"] == size


def test_normalization_is_zscore_unless_the_encoder_normalises_its_input():
    gray = decided(make_plan(params_with(), *made_up(train=21, gray=True)))
    assert (gray["train.architecture"], gray["preprocess.normalization"]) == ("unet_plain", "zscore")
    colour = decided(make_plan(params_with(), *made_up(train=21, side=64, gray=False)))
    assert (colour["train.architecture"], colour["preprocess.normalization"]) == ("sm_unet", "unit")
    vgg = decided(make_plan(params_with(train__backbone="vgg16"), *made_up(train=21, side=64, gray=False)))
    assert vgg["preprocess.normalization"] == "zscore"


def test_large_inputs_train_on_crops_of_half_the_side():
    assert decided(make_plan(params_with(), *made_up(train=21, side=512)))["train.crop_size"] == 128
    assert decided(make_plan(params_with(), *made_up(train=21, side=64)))["train.crop_size"] == 0


def test_with_tiles_crops_and_steps_follow_the_tiles():
    # 21 sections of 512 px in 256 px tiles: 4 tiles each, x 3 with variants, 4 crops of 128 per tile
    plan = make_plan(params_with(preprocess__tile_size=256, train__batch_size=8, augment__variants=2),
                     *made_up(train=21, side=512))
    assert decided(plan)["train.crop_size"] == 128 and decided(plan)["train.steps_per_epoch"] == 30
    assert "252 augmented training tiles" in plan["params"]["train.steps_per_epoch"]["reason"]
    small_tiles = make_plan(params_with(preprocess__tile_size=96), *made_up(train=21, side=512))
    assert decided(small_tiles)["train.crop_size"] == 0


def test_with_tiles_at_a_scale_steps_count_the_tiles_of_the_scaled_images():
    # 9 sections of 512 px at scale 0.5 are 256 px: 2 x 2 tiles of 128 each, 36 in all (unscaled: 144)
    plan = make_plan(params_with(preprocess__tile_size=128, preprocess__scale=0.5, train__batch_size=8,
                                 augment__variants=0), *made_up(train=9, side=512))
    reason = plan["params"]["train.steps_per_epoch"]["reason"]
    assert reason.startswith("one pass over 36 augmented training tiles is 5 steps of 8"), reason
    assert decided(plan)["train.steps_per_epoch"] == 10 and decided(plan)["train.crop_size"] == 0
    # three times the tiles with two variants each: 108 tiles, ceil(108 / 8) = 14 steps, inside the bounds
    varied = make_plan(params_with(preprocess__tile_size=128, preprocess__scale=0.5, train__batch_size=8,
                                   augment__variants=2), *made_up(train=9, side=512))
    assert decided(varied)["train.steps_per_epoch"] == 14
    assert "108 augmented training tiles" in varied["params"]["train.steps_per_epoch"]["reason"]


@pytest.mark.parametrize("train, side, steps", [
    (9, 512, 14),   # 9 x 3 augmented, 4 crops each, batches of 8: ceil(108 / 8)
    (1, 512, 10),   # a few images still get a real epoch
    (21, 512, 30),  # ISBI: ceil(252 / 8) = 32 is capped, so training stays within the CPU budget
    (32, 64, 12),   # whole images: one pass, ceil(96 / 8)
])
def test_an_epoch_is_a_pass_in_crops_within_bounds(train, side, steps):
    manifest, split = made_up(train=train, side=side, gray=False)
    assert decided(make_plan(params_with(train__batch_size=8, augment__variants=2), manifest, split)
                   )["train.steps_per_epoch"] == steps


def test_epochs_is_a_ceiling_under_early_stopping():
    plan = make_plan(params_with(), *made_up(train=21))
    assert plan["params"]["epochs"]["value"] == EPOCHS and "without a better validation Dice" in plan["params"]["epochs"]["reason"]


def test_the_built_in_set_gets_its_tuned_configuration():
    # the synthetic default: 160 RGB images of 64 px, 32 of them labeled for training
    manifest, split = made_up(train=32, side=64, gray=False, val=25, test=14, pool=89)
    values = decided(make_plan(params_with(train__batch_size=8, augment__variants=2), manifest, split))
    assert values == {"preprocess.channels": 3, "train.architecture": "sm_unet", "preprocess.size": 64,
                      "preprocess.normalization": "unit", "train.crop_size": 0, "train.steps_per_epoch": 12,
                      "epochs": EPOCHS}


def test_explicit_params_win_and_the_plan_says_so():
    manifest, split = made_up(train=21)
    params = params_with(epochs=4, train__architecture="sm_unet", preprocess__channels=3)
    plan = make_plan(params, manifest, split)
    for key, value in (("epochs", 4), ("train.architecture", "sm_unet"), ("preprocess.channels", 3)):
        assert plan["params"][key] == {"value": value, "by": "params.yaml", "reason": "set in params.yaml"}
    assert plan["params"]["preprocess.size"]["by"] == "plan"
    effective = effective_params(params, plan)
    assert (effective.epochs, effective.train.architecture, effective.preprocess.channels) == (4, "sm_unet", 3)
    assert effective.preprocess.size == 256 and effective.train.crop_size == 128
    # a plan made before the user set a value does not override it
    assert effective_params(params_with(epochs=7), plan).epochs == 7


def test_an_explicit_crop_raises_the_decided_size():
    plan = make_plan(params_with(train__crop_size=96), *made_up(train=21, side=64, gray=False))
    assert decided(plan)["preprocess.size"] == 96
    assert "raised to train.crop_size 96" in plan["params"]["preprocess.size"]["reason"]


def test_too_few_images_still_plan_and_warn():
    plan = make_plan(params_with(), *made_up(train=1, side=(375, 500), gray=False, val=1, test=1))
    assert plan["warnings"] and "means little" in plan["warnings"][0]
    assert "warning: only 1 labeled training and 1 test images" in describe(plan)
    assert not make_plan(params_with(), *made_up(train=21))["warnings"]


def test_describe_is_one_line_per_param_after_the_fingerprint():
    plan = make_plan(params_with(epochs=4), *made_up(train=21))
    lines = describe(plan).splitlines()
    assert lines[0].startswith("plan: 30 images, 30 labeled (21 for training, 4 val, 5 test), all gray")
    assert len(lines) == 1 + len(AUTO_KEYS)
    assert any(line.split()[:3] == ["epochs", "4", "set"] for line in lines)
    assert any(line.split()[:3] == ["preprocess.size", "256", "auto"] for line in lines)


def test_a_plan_without_a_value_for_an_auto_param_is_an_error():
    plan = make_plan(params_with(), *made_up(train=21))
    del plan["params"]["train.crop_size"]
    with pytest.raises(ActivesegError, match=r"data/plan.json: no value for `train.crop_size`; run `dvc repro plan`"):
        effective_params(params_with(), plan)


def test_preprocess_values_are_the_preprocess_decisions_alone_and_train_changes_leave_them():
    manifest, split = made_up(train=21, side=64, gray=False)
    plan = make_plan(params_with(), manifest, split)
    values = plan_values(plan, PREPROCESS_KEYS)
    assert values == {"params": {"preprocess.channels": {"value": 3}, "preprocess.size": {"value": 64},
                                 "preprocess.normalization": {"value": "unit"}}}
    # epochs, or a backbone whose reason for `unit` names it: the plan changes, preprocess's values not
    for change in ({"epochs": 4}, {"train__backbone": "resnet34"}):
        replanned = make_plan(params_with(**change), manifest, split)
        assert replanned["params"] != plan["params"]
        assert json.dumps(plan_values(replanned, PREPROCESS_KEYS), sort_keys=True) == json.dumps(values, sort_keys=True)


def test_preprocess_reads_its_auto_params_from_its_own_file_alone(tmp_path):
    import yaml

    from activeseg.outputs import write_json
    from activeseg.plan import load_effective_params

    params_path, values_path = tmp_path / "params.yaml", tmp_path / "plan_preprocess.json"
    params_path.write_text(yaml.safe_dump(tiny_params_dict(**{key.replace(".", "__"): "auto" for key in AUTO_KEYS})))
    write_json(values_path, plan_values(make_plan(params_with(), *made_up(train=21, side=64, gray=False)),
                                        PREPROCESS_KEYS))
    effective = load_effective_params(params_path, values_path, PREPROCESS_KEYS)
    assert (effective.preprocess.channels, effective.preprocess.size, effective.preprocess.normalization) == \
        (3, 64, "unit")
    assert effective.train.architecture == "auto" and effective.epochs == "auto"  # not preprocess's to know
    with pytest.raises(ActivesegError, match=rf"^{re.escape(str(values_path))}: no value for `train.architecture`"):
        load_effective_params(params_path, values_path)  # what train reads needs the full plan
    for text, problem in (("{", "not valid JSON"), ("[]", "not a plan"), ('{"params": {"preprocess.channels": 3}}',
                                                                         "no value for `preprocess.channels`")):
        values_path.write_text(text)
        with pytest.raises(ActivesegError, match=rf"^{re.escape(str(values_path))}: {problem}.*dvc repro plan"):
            load_effective_params(params_path, values_path, PREPROCESS_KEYS)
    values_path.unlink()
    with pytest.raises(ActivesegError, match=r"plan_preprocess.json: not found; run `dvc repro plan`"):
        load_effective_params(params_path, values_path, PREPROCESS_KEYS)


@pytest.mark.parametrize("key, value, message", [
    ("train.batch_size", "auto", "`train.batch_size` must be a whole number, not 'auto'"),
    ("epochs", 2.5, "`epochs` must be a whole number, not 2.5 (or auto: decided from the data)"),
    ("preprocess.channels", 2, "`preprocess.channels` must be 1 (gray), 3 (RGB) or auto"),
    ("train.architecture", "automatic", "`train.architecture` must be one of sm_unet, unet_plain or auto"),
])
def test_auto_is_accepted_only_where_the_plan_decides(key, value, message):
    with pytest.raises(ActivesegError, match="^params.yaml: ") as caught:
        parse_params(tiny_params_dict(**{key.replace(".", "__"): value}))
    assert message in str(caught.value)


def test_params_yaml_leaves_the_plan_able_keys_to_the_plan():
    from conftest import REPO_ROOT
    from activeseg.params import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    assert all(value == "auto" for key, value in
               {"epochs": params.epochs, "size": params.preprocess.size, "channels": params.preprocess.channels,
                "normalization": params.preprocess.normalization, "architecture": params.train.architecture,
                "crop": params.train.crop_size, "steps": params.train.steps_per_epoch}.items()), params


@pytest.mark.slow
def test_plan_stage_in_a_project(tmp_path):
    """`dvc repro preprocess` on the built-in data writes the plan and prints it; `-S epochs=4`
    re-plans but leaves preprocess alone (its outputs would come out the same)."""
    project = make_project(tmp_path / "project", **{key.replace(".", "__"): "auto" for key in AUTO_KEYS})
    output = run(["dvc", "repro", "preprocess"], project).stdout
    plan = json.loads((project / "data" / "plan.json").read_text())
    assert plan["params"]["epochs"] == {"value": EPOCHS, "by": "plan", "reason": plan["params"]["epochs"]["reason"]}
    assert plan["fingerprint"]["images"] == 24 and not plan["fingerprint"]["all_gray"]
    assert "plan: 24 images" in output and "preprocess.size" in output
    # committed with the code like plan.json, so never ignored (`--ignored` would show it as "!!")
    status = run(["git", "status", "--porcelain", "--ignored", "data/plan_preprocess.json"], project).stdout
    assert (project / "data" / "plan_preprocess.json").is_file() and not status.startswith("!!"), status
    output = run(["dvc", "exp", "run", "preprocess", "-S", "epochs=4"], project).stdout
    assert "Running stage 'plan'" in output
    assert "Stage 'preprocess' didn't change, skipping" in output, output
    plan = json.loads((project / "data" / "plan.json").read_text())
    assert plan["params"]["epochs"]["value"] == 4 and plan["params"]["epochs"]["by"] == "params.yaml"
    from activeseg.plan import load_effective_params  # what train reads

    assert load_effective_params(project / "params.yaml", project / "data" / "plan.json").epochs == 4


def test_the_plan_goes_to_mlflow_as_artifact_and_tags(tmp_path):
    from activeseg.outputs import write_json
    from activeseg.tracking import log_plan

    class Recorder:
        def __init__(self):
            self.artifacts, self.tags = [], {}

        def log_artifact(self, path):
            self.artifacts.append(path)

        def set_tags(self, tags):
            self.tags.update(tags)

    plan = make_plan(params_with(epochs=4), *made_up(train=1, val=1, test=1))
    write_json(tmp_path / "plan.json", plan)
    mlflow = Recorder()
    log_plan(mlflow, tmp_path / "plan.json")
    assert mlflow.artifacts == [str(tmp_path / "plan.json")]
    assert "preprocess.size" in mlflow.tags["plan_auto"] and "epochs" not in mlflow.tags["plan_auto"]
    assert "means little" in mlflow.tags["plan_warnings"]


def test_the_plan_stage_reruns_on_every_param_a_rule_reads():
    import yaml

    from conftest import REPO_ROOT

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(AUTO_KEYS) <= set(stages["plan"]["params"])
    # and every other param a rule reads (params.<section>.<key> in activeseg/plan.py), e.g. the
    # tile side: otherwise switching on tiles keeps a plan made for whole images
    read = set(re.findall(r"\bparams\.([a-z_]+\.[a-z_]+)\b", (REPO_ROOT / "activeseg" / "plan.py").read_text()))
    assert {"preprocess.tile_size", "train.backbone"} <= read
    declared = set(stages["plan"]["params"])
    assert {key for key in read if key not in declared and key.split(".")[0] not in declared} == set()
    # the stages that read the plan's values; preprocess its share alone, so `-S epochs=4` skips it
    for stage, plan in (("preprocess", "data/plan_preprocess.json"), ("train", "data/plan.json"),
                        ("simulate", "data/plan.json")):
        assert plan in stages[stage]["deps"] and f"--plan {plan} " in stages[stage]["cmd"]
    assert "data/plan.json" not in stages["preprocess"]["deps"]
    assert {"data/plan.json": {"cache": False}} in stages["plan"]["outs"]
    assert {"data/plan_preprocess.json": {"cache": False}} in stages["plan"]["outs"]
