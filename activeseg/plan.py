"""The data plans the defaults: a fingerprint of the ingested data decides every param left at ``auto``.

After nnU-Net (Isensee et al. 2021): the training configuration follows from a few facts about
the data set (its fingerprint: how many images, how many labeled for training, whether all are
gray, their typical side), so a user's own data is trained sensibly without hand tuning. The
params in :data:`activeseg.params.AUTO_KEYS` may be ``auto``; :func:`make_plan` decides each from
the fingerprint and the params already fixed, in the order of :data:`RULES` (a later rule may use
an earlier one's value), and records the value and the reason. A param the user set explicitly
wins and the plan says so. The plan is a pure function of the manifest, the split and the params,
so the same data gives the same ``data/plan.json`` and DVC's caching still holds.

Every stage that reads one of those params reads it through :func:`effective_params` (or
:func:`load_effective_params`), never from params.yaml directly. The preprocess stage reads only
:data:`PREPROCESS_KEYS`, from their own file (:func:`plan_values`): a change to a training-only
param such as ``epochs`` re-plans but leaves that file's bytes, and so DVC's preprocess, as they are.

The rules' numbers were measured on this project's data sets (see README "The data plans the
defaults"): the built-in synthetic set must keep its tuned configuration (64 px RGB, sm_unet,
up to 40 epochs of one pass), ISBI EM (30 gray 512 px sections) the one of ``bench/params-isbi.yaml``
(256 px, gray, z-score, plain U-Net, 128 px crops, ~340 steps).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from activeseg.errors import ActivesegError
from activeseg.params import AUTO_KEYS, Params, check_params, is_auto, load_params, size_divisor

SIZE_CAP = 256        # input side ceiling: a 2-core CPU trains a 256 px set in minutes, 512 px four times slower
SMALL_SET = 100       # labeled training images below which a gray or large-image set gets the plain U-Net
CHEAP_SIDE = 64       # at most this side an sm_unet (resnet18) step is cheap on a CPU; at 128 px crops of
                      # soybean photos one epoch of 50 steps took > 4.5 min (findings, 2-core CPU)
CROP_ABOVE = 128      # input sides above this train on random crops of half the side
MIN_STEPS = 10        # an epoch is at least this many steps, however few the training images
MAX_STEPS = 30        # … and at most this many: soybean (43 photos) had its best val Dice after 200 steps of 50
                      # a step budget's worth, so 10 x 30 keeps its Dice and saves 40% of the training time
EPOCHS = 40           # the epoch ceiling, high enough that the plateau rule (activeseg.convergence), not
                      # the ceiling, ends training: the old ceiling of 10 stopped the synthetic set still rising
FEW_TRAIN = 8         # fewer labeled training images than this, or …
FEW_TEST = 5          # … fewer test images than this: the plan warns that the test Dice means little
SM_INPUT_NORMALIZED = ("resnet18", "resnet34", "resnet50")  # encoders whose first layer batch-normalises the input


def fingerprint(manifest: pd.DataFrame, split: pd.DataFrame) -> dict[str, Any]:
    """The facts about the data set that the rules use (from ingest's manifest and the split)."""
    sides = manifest[["height", "width"]].min(axis=1)
    train = split[(split["split"] == "train") & split["has_mask"].astype(bool)]
    labeled = manifest[manifest["labeled"].astype(bool)]
    return {
        "images": int(len(manifest)),
        "labeled": int(len(labeled)),
        "train_labeled": int(len(train)),
        "val": int((split["split"] == "val").sum()),
        "test": int((split["split"] == "test").sum()),
        "all_gray": bool(len(manifest)) and bool((manifest["channels"] == 1).all()),
        "median_side": int(sides.median()) if len(sides) else 0,
        "foreground_fraction": round(float(labeled["foreground_fraction"].mean()), 4) if len(labeled) else 0.0,
    }


# Each rule: (fingerprint, values decided so far, params) → (value, reason).
def _channels(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    if data["all_gray"]:
        return 1, f"all {data['images']} images are gray"
    return 3, "some images are colour"


def _architecture(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    sm = f"the segmentation_models U-Net with {params.train.backbone}"
    if params.train.encoder_weights:
        return "sm_unet", f"train.encoder_weights is set: {sm} (only it has a pretrained encoder)"
    small = f"{data['train_labeled']} labeled training images (< {SMALL_SET})"
    side = values.get("preprocess.size", data["median_side"])  # the size is decided later unless set
    if data["train_labeled"] < SMALL_SET and values["preprocess.channels"] == 1:
        return "unet_plain", f"gray input and {small}: the small plain U-Net"
    if data["train_labeled"] < SMALL_SET and side > CHEAP_SIDE:
        return "unet_plain", (f"{small} of side {side} > {CHEAP_SIDE} px: the small plain U-Net "
                              f"(a {params.train.backbone} step at that size is too slow on a CPU)")
    why = f"3-channel input of side <= {CHEAP_SIDE} px" if data["train_labeled"] < SMALL_SET else \
        f">= {SMALL_SET} labeled training images"
    return "sm_unet", f"{why}: {sm}"


def _divisor(values: dict, params: Params) -> int:
    return size_divisor(dataclasses.replace(params.train, architecture=values["train.architecture"]))


def _size(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    divisor = _divisor(values, params)
    side = data["median_side"]
    explicit_crop = values.get("train.crop_size", 0)  # decided after the size unless set in params.yaml
    size = max(divisor, (min(side, SIZE_CAP) // divisor) * divisor, explicit_crop)
    # large images are resized, not tiled (preprocess.tile_size stays 0): at convergence, tiles of
    # soybean rust's 1280-px photographs scored 0.008 below the resize (3 seeds) and trained 1.4x longer
    # (bench/results/tiles_soybean.json, issue 26 part 4)
    capped = (f", capped at {SIZE_CAP} for CPU cost (resized whole: tiles, preprocess.tile_size, scored no "
              "better at convergence on 1280-px photographs and train longer; bench/RESULTS.md)"
              if side > SIZE_CAP else "")
    raised = f", raised to train.crop_size {explicit_crop}" if size == explicit_crop > divisor else ""
    return size, f"typical image side {side} px{capped}, a multiple of {divisor}{raised}"


def _normalization(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    if values["train.architecture"] == "sm_unet" and params.train.backbone in SM_INPUT_NORMALIZED:
        return "unit", f"the {params.train.backbone} encoder batch-normalises its input itself"
    return "zscore", "mean and std of the training images"


def _training_side(values: dict, params: Params) -> tuple[int, str]:
    """The side of what train sees: the input size, or with preprocess.tile_size the tiles'."""
    if params.preprocess.tile_size:
        return params.preprocess.tile_size, "tile side"
    return values["preprocess.size"], "input side"


def _crop_size(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    (side, what), divisor = _training_side(values, params), _divisor(values, params)
    if side <= CROP_ABOVE:
        return 0, f"{what} {side} <= {CROP_ABOVE}: whole images"
    crop = max(divisor, (side // 2 // divisor) * divisor)
    return crop, f"{what} {side} > {CROP_ABOVE}: random crops of half the side (cheaper steps, more of them)"


def _steps_per_epoch(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    (side, _), crop = _training_side(values, params), values["train.crop_size"]
    images = data["train_labeled"]
    if params.preprocess.tile_size:  # about this many tiles per typical image
        images *= math.ceil(data["median_side"] * params.preprocess.scale / params.preprocess.tile_size) ** 2
    augmented = images * (1 + params.augment.variants)
    crops_per_image = (side / crop) ** 2 if 0 < crop < side else 1
    one_pass = math.ceil(augmented * crops_per_image / params.train.batch_size)
    steps = min(MAX_STEPS, max(MIN_STEPS, one_pass))
    what = "tiles" if params.preprocess.tile_size else "images"
    return steps, (f"one pass over {augmented} augmented training {what}"
                   + (f" in crops ({crops_per_image:g} per image)" if crops_per_image != 1 else "")
                   + f" is {one_pass} steps of {params.train.batch_size}, kept within {MIN_STEPS}..{MAX_STEPS}")


def _epochs(data: dict, values: dict, params: Params) -> tuple[Any, str]:
    return EPOCHS, (f"a ceiling: training ends sooner, after {params.train.early_stopping_patience} epochs "
                    "without a better validation Dice (stopped_by: plateau in metrics/train.json)")


RULES: dict[str, Callable[[dict, dict, Params], tuple[Any, str]]] = {
    "preprocess.channels": _channels,
    "train.architecture": _architecture,
    "preprocess.size": _size,
    "preprocess.normalization": _normalization,
    "train.crop_size": _crop_size,
    "train.steps_per_epoch": _steps_per_epoch,
    "epochs": _epochs,
}
assert set(RULES) == set(AUTO_KEYS)
PREPROCESS_KEYS = tuple(key for key in AUTO_KEYS if key.startswith("preprocess."))  # all that preprocess reads


def _get(params: Params, key: str) -> Any:
    value: Any = params
    for part in key.split("."):
        value = getattr(value, part)
    return value


def make_plan(params: Params, manifest: pd.DataFrame, split: pd.DataFrame) -> dict[str, Any]:
    """Decide every ``auto`` param; explicit ones are recorded as set by params.yaml."""
    data = fingerprint(manifest, split)
    values: dict[str, Any] = {}
    decisions: dict[str, dict[str, Any]] = {}
    # explicit values first, so a rule sees the user's choices (e.g. size respects an explicit crop)
    for key in RULES:
        if not is_auto(_get(params, key)):
            values[key] = _get(params, key)
    for key, rule in RULES.items():
        if key in values:
            decisions[key] = {"value": values[key], "by": "params.yaml", "reason": "set in params.yaml"}
        else:
            values[key], reason = rule(data, values, params)
            decisions[key] = {"value": values[key], "by": "plan", "reason": reason}
    warnings = []
    if data["train_labeled"] < FEW_TRAIN or data["test"] < FEW_TEST:
        warnings.append(f"only {data['train_labeled']} labeled training and {data['test']} test images: "
                        "the test Dice means little; label more images")
    plan = {"fingerprint": data, "params": decisions, "warnings": warnings}
    effective_params(params, plan)  # a conflict between an explicit value and a decided one stops here
    return plan


def plan_values(plan: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The plan's values for ``keys`` alone, in the plan's format: what a stage reading only those
    depends on. Without the reasons, which also name params the values do not depend on (the
    backbone in normalization's), so that such a change does not re-run the stage."""
    return {"params": {key: {"value": plan["params"][key]["value"]} for key in keys}}


def effective_params(params: Params, plan: dict[str, Any], keys: tuple[str, ...] = AUTO_KEYS,
                     source: str = "data/plan.json") -> Params:
    """``params`` with each ``auto`` among ``keys`` replaced by the plan's value (explicit values
    always win); the other ``auto`` params stay ``auto`` (a stage that reads only ``keys``)."""
    decided = plan.get("params", {})
    for key in keys:
        if not is_auto(_get(params, key)):
            continue
        if not isinstance(decided.get(key), dict) or "value" not in decided[key]:
            raise ActivesegError(f"{source}: no value for `{key}`; run `dvc repro plan` to remake the plan")
        params = _replace(params, key.split("."), decided[key]["value"])
    try:
        return check_params(params, "params.yaml")
    except ActivesegError as error:
        raise ActivesegError(f"{error} (with the values {source} decided for the `auto` params)") from None


def _replace(obj: Any, path: list[str], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _replace(getattr(obj, path[0]), path[1:], value)})


def read_plan(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro plan` first")
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ActivesegError(f"{path}: not valid JSON; delete it and run `dvc repro plan`") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("params"), dict):
        raise ActivesegError(f"{path}: not a plan (no `params` mapping); delete it and run `dvc repro plan`")
    return plan


def load_effective_params(params_path: str | Path, plan_path: str | Path,
                          keys: tuple[str, ...] = AUTO_KEYS) -> Params:
    """params.yaml with its ``auto`` values among ``keys`` decided by the plan (``data/plan.json``,
    or for preprocess ``data/plan_preprocess.json``): what every stage after the plan reads."""
    return effective_params(load_params(params_path), read_plan(plan_path), keys, str(plan_path))


def describe(plan: dict[str, Any]) -> str:
    """The plan as one readable block, as the plan stage prints it."""
    data = plan["fingerprint"]
    lines = [f"plan: {data['images']} images, {data['labeled']} labeled ({data['train_labeled']} for training, "
             f"{data['val']} val, {data['test']} test), {'all gray' if data['all_gray'] else 'colour'}, "
             f"typical side {data['median_side']} px, foreground {data['foreground_fraction']:.1%}"]
    width = max(len(key) for key in plan["params"])
    for key, decision in plan["params"].items():
        by = "auto" if decision["by"] == "plan" else "set "
        lines.append(f"  {key:<{width}}  {str(decision['value']):<10}  {by}  {decision['reason']}")
    lines += [f"  warning: {warning}" for warning in plan["warnings"]]
    return "\n".join(lines)
