"""params.yaml: the typed, validated view of every knob.

Each section of params.yaml is a frozen dataclass below; :func:`load_params` checks every key
and type before any heavy work starts and names the offending key on error. The defaults here
mirror params.yaml, which is where each knob is documented.

The keys in :data:`AUTO_KEYS` also accept ``auto``: :mod:`activeseg.plan` decides them from the
ingested data (``data/plan.json``); stages read the decided values through
:func:`activeseg.plan.effective_params`, never these raw ones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import yaml

from activeseg.errors import ActivesegError

BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenetv2", "efficientnetb0", "vgg16")
ARCHITECTURES = ("sm_unet", "unet_plain")
LOSSES = ("bce", "dice", "focal", "jaccard")
NORMALIZATIONS = ("unit", "zscore")
INTENSITIES = ("8bit", "minmax", "percentile")
STRATEGIES = ("mc_dropout", "entropy", "bald", "margin", "random")
# the simulation's foreground-aware random baseline (nnActive's): it reads the hidden masks, so no query can use it
FOREGROUND_RANDOM = "random_foreground"
REDUCTIONS = ("mean", "foreground_border", "distance_weighted")
SAMPLINGS = ("head_dropout", "tta", "mc_network")
DROPOUT_PLACEMENTS = ("head", "encoder", "encoder_decoder")
DISTRIBUTE_STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")
PRECISIONS = ("float32", "mixed_bfloat16")
INGEST_FORMATS = ("folders", "tiff_stacks", "labelme", "coco", "label_studio")
MASK_RULE_PATTERN = r"nonzero|threshold:\d+|value:\d+"
AUTO = "auto"
# params that may be left to the data's plan (activeseg/plan.py decides them)
AUTO_KEYS = ("preprocess.channels", "train.architecture", "preprocess.size", "preprocess.normalization",
             "train.crop_size", "train.steps_per_epoch", "epochs")
IntOrAuto = typing.Union[int, str]
FloatOrAuto = typing.Union[float, str]


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    count: int = 60
    size: int = 96
    min_objects: int = 2
    max_objects: int = 6


@dataclasses.dataclass(frozen=True)
class LabelmeParams:
    foreground_labels: list = dataclasses.field(default_factory=list)
    line_width: int = 10
    point_size: int = 5


@dataclasses.dataclass(frozen=True)
class IngestParams:
    raw_dir: str = "data/raw"
    formats: list = dataclasses.field(default_factory=lambda: list(INGEST_FORMATS))
    tiff_stacks: list = dataclasses.field(default_factory=list)
    mask_rule: str = "nonzero"
    coco_categories: typing.Union[str, list] = "all"
    labelme: LabelmeParams = LabelmeParams()
    synthetic: SyntheticParams = SyntheticParams()


@dataclasses.dataclass(frozen=True)
class SplitParams:
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    val_count: int = 0
    test_count: int = 0
    simulate: typing.Union[bool, str] = "auto"
    initial_labeled: int = 12
    predefined: Optional[str] = None
    initial_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    size: IntOrAuto = 64
    channels: IntOrAuto = 3
    normalization: str = "unit"
    intensity: str = "8bit"
    percentiles: tuple[float, ...] = (0.5, 99.5)
    tile_size: int = 0
    tile_overlap: int = 0
    scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    variants: int = 2
    pipeline: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainParams:
    architecture: str = "sm_unet"
    backbone: str = "resnet18"
    encoder_weights: Optional[str] = None
    plain_filters: int = 16
    cascade: bool = False
    cascade_factor: int = 4
    batchnorm_momentum: float = 0.9
    loss: str = "bce+dice"
    batch_size: int = 8
    crop_size: IntOrAuto = 0
    foreground_crop_fraction: float = 0.0
    steps_per_epoch: IntOrAuto = 0
    learning_rate: float = 0.001
    lr_patience: int = 3
    early_stopping_patience: int = 10
    val_dice_smoothing: float = 0.0
    time_budget: FloatOrAuto = AUTO
    precision: str = AUTO
    dropout: float = 0.3
    dropout_placement: str = "head"
    distribute: str = "none"
    resume: bool = False


@dataclasses.dataclass(frozen=True)
class QueryParams:
    strategy: str = "mc_dropout"
    mc_dropout_passes: int = 8
    sampling: str = "head_dropout"
    reduction: str = "mean"
    top_k: int = 5
    candidates_per_pick: int = 1
    batch_size: int = 16
    label: str = "foreground"


@dataclasses.dataclass(frozen=True)
class SimulationParams:
    enabled: bool = False
    strategies: tuple[str, ...] = ("mc_dropout", "entropy", "bald", "margin", "random")
    rounds: int = 4
    images_per_round: int = 4
    epochs_per_round: int = 4
    steps_per_epoch: int = 0
    warm_start: bool = False
    seeds: int = 3
    target_fraction: float = 0.95


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    threshold: float = 0.5
    overlays: int = 3


@dataclasses.dataclass(frozen=True)
class TrackingParams:
    enabled: bool = True
    experiment: str = "activeseg"
    log_model: bool = True
    required: bool = True


@dataclasses.dataclass(frozen=True)
class Params:
    epochs: IntOrAuto = 2
    seed: int = 42
    # auto (a params.yaml written before data_seed existed): `seed` draws the data and the split too
    data_seed: IntOrAuto = AUTO
    ingest: IngestParams = IngestParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessParams = PreprocessParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    query: QueryParams = QueryParams()
    simulation: SimulationParams = SimulationParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()

    @property
    def dataset_seed(self) -> int:
        """The seed of the built-in data set and of the split: `data_seed`, or `seed` where it is auto."""
        return self.seed if self.data_seed == AUTO else self.data_seed


def _fail(source: str, key: str, problem: str) -> ActivesegError:
    return ActivesegError(f"{source}: `{key}` {problem}; fix it in params.yaml (see the comment beside it)")


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    if annotation == IntOrAuto:
        if value == AUTO:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, f"must be a whole number, not {value!r} (or auto: decided from the data)")
        return value
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key, source)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if type(None) in typing.get_args(annotation) and (
                value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        for option in options[:-1]:  # the first type the value fits; the last one names the error
            try:
                return _convert(value, option, key, source)
            except ActivesegError:
                pass
        return _convert(value, options[-1], key, source)
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, list):
            raise _fail(source, key, f"must be a list such as [a, b], not {value!r}")
        return tuple(_convert(item, typing.get_args(annotation)[0], key, source) for item in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise _fail(source, key, f"must be true or false, not {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, f"must be a whole number, not {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, key, f"must be a number, not {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _fail(source, key, f"must be text, not {value!r}")
        return value
    if annotation is dict:
        if not isinstance(value, dict):
            raise _fail(source, key, f"must be a mapping, not {value!r}")
        return value
    if annotation is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _fail(source, key, f"must be a list, not {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r}")


def _build(cls, raw: Any, prefix: str, source: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(source, prefix or "(top level)", "must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise _fail(source, key, f"is not a known parameter (known here: {', '.join(sorted(names))})")
    values = {}
    for name in names:
        if name in raw:
            key = f"{prefix}.{name}" if prefix else name
            values[name] = _convert(raw[name], hints[name], key, source)
    return cls(**values)


def _check_ranges(params: Params, source: str) -> None:
    def check(condition: bool, key: str, problem: str) -> None:
        if not condition:
            raise _fail(source, key, problem)

    check(is_auto(params.epochs) or params.epochs >= 1, "epochs", "must be at least 1")
    synthetic = params.ingest.synthetic
    check(synthetic.count >= 8, "ingest.synthetic.count", "must be at least 8")
    check(synthetic.size >= 32, "ingest.synthetic.size", "must be at least 32")
    check(1 <= synthetic.min_objects <= synthetic.max_objects, "ingest.synthetic.min_objects",
          "must be at least 1 and at most ingest.synthetic.max_objects")
    _check_ingest(params.ingest, check)
    split = params.split
    for key, value in (("split.val_fraction", split.val_fraction), ("split.test_fraction", split.test_fraction)):
        check(0.0 < value < 1.0, key, "must be between 0 and 1 (exclusive)")
    check(split.val_fraction + split.test_fraction < 0.9, "split.test_fraction",
          "plus split.val_fraction must leave at least 10% of the images for training")
    for key, value in (("split.val_count", split.val_count), ("split.test_count", split.test_count)):
        check(value >= 0, key, "must be 0 (use the fraction) or a number of images")
    check(split.simulate in (True, False, "auto"), "split.simulate",
          f"must be true, false or auto, not {split.simulate!r}")
    check(split.initial_labeled >= 1, "split.initial_labeled", "must be at least 1")
    _check_predefined_split(split, check)
    check(0.0 <= split.initial_fraction < 1.0, "split.initial_fraction",
          "must be 0 (use split.initial_labeled) or between 0 and 1")
    size = params.preprocess.size
    check(is_auto(size) or (size >= 16 and size % 16 == 0), "preprocess.size",
          "must be a multiple of 32 (sm_unet halves it 5 times; 16 is enough for unet_plain) or auto")
    check(params.preprocess.channels in (AUTO, 1, 3), "preprocess.channels", "must be 1 (gray), 3 (RGB) or auto")
    check(params.preprocess.normalization in (AUTO, *NORMALIZATIONS), "preprocess.normalization",
          f"must be one of {', '.join(NORMALIZATIONS)} or auto")
    check(params.preprocess.intensity in INTENSITIES, "preprocess.intensity",
          f"must be one of {', '.join(INTENSITIES)}")
    percentiles = params.preprocess.percentiles
    check(len(percentiles) == 2 and 0.0 <= percentiles[0] < percentiles[1] <= 100.0, "preprocess.percentiles",
          "must be [low, high] with 0 <= low < high <= 100, e.g. [0.5, 99.5]")
    check(params.augment.variants >= 0, "augment.variants", "must be 0 or more")
    train = params.train
    check(train.architecture in (AUTO, *ARCHITECTURES), "train.architecture",
          f"must be one of {', '.join(ARCHITECTURES)} or auto")
    check(train.backbone in BACKBONES, "train.backbone", f"must be one of {', '.join(BACKBONES)}")
    check(train.plain_filters >= 4, "train.plain_filters", "must be at least 4")
    check(train.cascade_factor in (2, 4, 8), "train.cascade_factor", "must be 2, 4 or 8")
    check(0.0 < train.batchnorm_momentum < 1.0, "train.batchnorm_momentum", "must be between 0 and 1")
    # with `auto` on either side the plan picks a fitting value and these run again on its result
    divisor = size_divisor(train) if not is_auto(train.architecture) else 16
    check(is_auto(size) or is_auto(train.architecture) or size % divisor == 0, "preprocess.size",
          f"must be a multiple of {divisor} for train.architecture {train.architecture}"
          + (f" with a cascade_factor {train.cascade_factor} cascade" if train.cascade else ""))
    tile_size = params.preprocess.tile_size
    check(is_auto(train.crop_size) or train.crop_size == 0
          or (train.crop_size % divisor == 0
              and (train.crop_size <= tile_size if tile_size else is_auto(size) or train.crop_size <= size)),
          "train.crop_size", f"must be auto, 0 (no crop) or a multiple of {divisor} no larger than preprocess.size "
          "(preprocess.tile_size with tiles)")
    check(0.0 <= train.foreground_crop_fraction <= 1.0, "train.foreground_crop_fraction",
          "must be between 0 (uniform crops) and 1 (every crop around foreground)")
    _check_tiles(params.preprocess, params.simulation.enabled, divisor, check)
    check(is_auto(train.steps_per_epoch) or train.steps_per_epoch >= 0, "train.steps_per_epoch",
          "must be auto, 0 (one pass over the data) or more")
    check(train.lr_patience >= 1, "train.lr_patience", "must be at least 1")
    check(all(part.strip() in LOSSES for part in train.loss.split("+")), "train.loss",
          f"must be one of {', '.join(LOSSES)} or a sum such as bce+dice")
    check(train.batch_size >= 1, "train.batch_size", "must be at least 1")
    check(train.learning_rate > 0, "train.learning_rate", "must be positive")
    check(0.0 <= train.dropout < 1.0, "train.dropout", "must be in [0, 1)")
    check(train.dropout_placement in DROPOUT_PLACEMENTS, "train.dropout_placement",
          f"must be one of {', '.join(DROPOUT_PLACEMENTS)}")
    check(train.early_stopping_patience >= 1, "train.early_stopping_patience", "must be at least 1")
    check(0 <= train.val_dice_smoothing < 1, "train.val_dice_smoothing", "must be at least 0 and below 1")
    check(is_auto(train.time_budget) or (isinstance(train.time_budget, float) and train.time_budget >= 0),
          "train.time_budget", "must be auto or 0 (no budget) or a number of minutes")
    check(train.precision in (AUTO, *PRECISIONS), "train.precision",
          f"must be auto, {' or '.join(PRECISIONS)}")
    check(train.distribute in DISTRIBUTE_STRATEGIES, "train.distribute",
          f"must be one of {', '.join(DISTRIBUTE_STRATEGIES)}")
    query = params.query
    check(query.strategy in STRATEGIES, "query.strategy", f"must be one of {', '.join(STRATEGIES)}"
          + (f" ({FOREGROUND_RANDOM} reads the hidden masks: simulation.strategies only)"
             if query.strategy == FOREGROUND_RANDOM else ""))
    check(query.reduction in REDUCTIONS, "query.reduction", f"must be one of {', '.join(REDUCTIONS)}")
    check(query.sampling in SAMPLINGS, "query.sampling", f"must be one of {', '.join(SAMPLINGS)}")
    check(query.mc_dropout_passes >= 2, "query.mc_dropout_passes", "must be at least 2")
    check(query.top_k >= 1, "query.top_k", "must be at least 1")
    check(query.candidates_per_pick >= 1, "query.candidates_per_pick", "must be at least 1 (1: plain top-K)")
    check(query.batch_size >= 1, "query.batch_size", "must be at least 1")
    check(bool(query.label.strip()) and query.label != "__ignore__", "query.label",
          "must be a non-empty Labelme label other than __ignore__")
    simulation = params.simulation
    check(len(simulation.strategies) >= 1 and set(simulation.strategies) <= {*STRATEGIES, FOREGROUND_RANDOM}
          and len(set(simulation.strategies)) == len(simulation.strategies), "simulation.strategies",
          f"must list each of at most {', '.join(STRATEGIES + (FOREGROUND_RANDOM,))} once")
    check(simulation.rounds >= 1, "simulation.rounds", "must be at least 1")
    check(simulation.images_per_round >= 1, "simulation.images_per_round", "must be at least 1")
    check(simulation.epochs_per_round >= 1, "simulation.epochs_per_round", "must be at least 1")
    check(simulation.steps_per_epoch >= 0, "simulation.steps_per_epoch", "must be 0 (one pass) or more")
    check(simulation.seeds >= 1, "simulation.seeds", "must be at least 1")
    check(0.0 < simulation.target_fraction <= 1.0, "simulation.target_fraction", "must be in (0, 1]")
    check(0.0 < params.evaluate.threshold < 1.0, "evaluate.threshold", "must be between 0 and 1")
    check(params.evaluate.overlays >= 0, "evaluate.overlays", "must be 0 or more")


def is_auto(value: Any) -> bool:
    """True for a param left to the data's plan (see :mod:`activeseg.plan`)."""
    return value == AUTO


def size_divisor(train: TrainParams) -> int:
    """Input sides must be multiples of this (5 halvings for sm, 4 for plain, times the cascade's)."""
    divisor = 32 if train.architecture == "sm_unet" else 16
    return divisor * (train.cascade_factor if train.cascade else 1)


def check_params(params: Params, source: str = "params.yaml") -> Params:
    """Check value ranges and their combinations (again on the plan's result); returns ``params``."""
    _check_ranges(params, source)
    return params


def _check_tiles(preprocess: PreprocessParams, simulation: bool, divisor: int, check) -> None:
    tile_size, overlap = preprocess.tile_size, preprocess.tile_overlap
    check(tile_size == 0 or (tile_size >= divisor and tile_size % divisor == 0), "preprocess.tile_size",
          f"must be 0 (resize whole images to preprocess.size) or a multiple of {divisor}, e.g. 256")
    check(0 <= overlap and (overlap == 0 or overlap < tile_size / 2), "preprocess.tile_overlap",
          "must be at least 0 and below half of preprocess.tile_size (e.g. tile_size / 8); 0 without tiles")
    check(0.0 < preprocess.scale <= 4.0, "preprocess.scale",
          "must be above 0 and at most 4 (1: the originals' resolution, 0.5: half of it)")
    check(tile_size > 0 or preprocess.scale == 1.0, "preprocess.scale",
          "only applies to tiles: set preprocess.tile_size, or leave scale at 1")
    check(tile_size == 0 or not simulation, "simulation.enabled",
          "must be false with preprocess.tile_size > 0 (the simulation does not replay tiles yet); set tile_size 0")


def _check_predefined_split(split: SplitParams, check) -> None:
    predefined = split.predefined
    if predefined not in (None, "folders"):
        path = PurePosixPath(predefined.replace("\\", "/"))
        check(path.suffix.lower() == ".csv" and not path.is_absolute() and ".." not in path.parts, "split.predefined",
              f"is {predefined!r}; use none, folders (raw_dir/train/, val/, test/) or the path of an id,split CSV "
              "relative to ingest.raw_dir (e.g. split.csv), not leaving it")
    check(predefined is None or not (split.val_count or split.test_count), "split.val_count",
          "and split.test_count must be 0 with split.predefined (the data set's split fixes val and test; images "
          "outside it follow split.val_fraction / split.test_fraction)")


def _check_ingest(ingest: IngestParams, check) -> None:
    check(bool(ingest.formats) and all(name in INGEST_FORMATS for name in ingest.formats), "ingest.formats",
          f"must list one or more of {', '.join(INGEST_FORMATS)}")
    check(re.fullmatch(MASK_RULE_PATTERN, ingest.mask_rule) is not None, "ingest.mask_rule",
          "must be nonzero, threshold:N or value:N (N a whole number)")
    for index, stack in enumerate(ingest.tiff_stacks):
        check(isinstance(stack, dict) and isinstance(stack.get("images"), str) and set(stack) <= {"images", "labels"}
              and isinstance(stack.get("labels", ""), (str, type(None))), f"ingest.tiff_stacks[{index}]",
              "must be {images: FILE.tif} or {images: FILE.tif, labels: FILE.tif}")
    check(ingest.coco_categories == "all" or (isinstance(ingest.coco_categories, list) and ingest.coco_categories
          and all(isinstance(name, str) for name in ingest.coco_categories)), "ingest.coco_categories",
          "must be all or a list of COCO category names")
    labelme = ingest.labelme
    check(all(isinstance(label, str) for label in labelme.foreground_labels), "ingest.labelme.foreground_labels",
          "must be a list of label names (empty: every label but __ignore__)")
    check(labelme.line_width >= 1, "ingest.labelme.line_width", "must be at least 1")
    check(labelme.point_size >= 0, "ingest.labelme.point_size", "must be 0 or more")


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`."""
    params = _build(Params, raw, "", source)
    _check_ranges(params, source)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; a missing file or bad YAML is a one-line error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ActivesegError(f"{path}: not found; run from the project root, where params.yaml lives") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ActivesegError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    return parse_params(raw, str(path))


def flatten(params: Params) -> dict[str, Any]:
    """Dotted keys to values, as MLflow shows params (``train.backbone`` → ``resnet18``)."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name), f"{prefix}.{field.name}" if prefix else field.name)
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}")
        else:
            flat[prefix] = value

    walk(params, "")
    return flat
