"""Split: train / val / test / pool, seeded and sticky.

An image's split is derived from a hash of its id and the seed, never from a shuffle of the whole
list, so adding images or masks never moves an existing image between val, test and train.
Images without a mask form the unlabeled pool. Images labeled through the active-learning round
trip (``queried`` in the manifest: Labelme files flagged ``activeseg_queried``) always join
train: the model chose them, so they are no fair sample for val or test, and the rule needs no
memory of earlier splits. In simulation mode (``split.simulate``; ``auto`` turns it on for the
built-in data set only, never for a user's masks) only ``initial_labeled``
training images keep theirs; the other training masks are hidden in the pool and serve as the
oracle for simulated annotation rounds. Which ones keep theirs is, likewise, a count
(``initial_labeled``: the smallest hashes, exact, but a newly labeled image with a smaller hash
takes the place of one; an exact count cannot be sticky without a memory of earlier splits) or a
fraction (``initial_fraction``: each training image by its own hash against a fixed threshold,
sticky whatever is added). Annotated queries never count, so they displace nothing.

Fractions (``val_fraction``/``test_fraction``) compare each id's hash with a fixed threshold, so
they are sticky whatever is added, but approximate: each image is held out with that
probability, so 60 labeled images at 0.15 give 9 on average and 5 (8%) for the default seed.
Making them exact (hash order, round(fraction x labeled) images) was rejected: no rule that
depends only on the current images can be both exact and sticky (which of two images fills a
single place cannot depend on which came first), and there every addition shifts images between
test, val and train. Counts (``val_count``/``test_count``) are the exact option: they take the
ids with the smallest hashes among the labeled, non-queried images, sticky when unlabeled images
or query annotations arrive, while a new hand-labeled image with a small hash can take the place
of one. :func:`fraction_notes` says where a fraction landed off its target.

A data set's own split (``split.predefined``, recorded by ingest in the manifest's
``predefined_split`` column; see :mod:`activeseg.predefined`) comes first: its labeled images
keep their split, and only the rest follow the rules above.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from activeseg.errors import ActivesegError
from activeseg.params import SplitParams
from activeseg.predefined import PREDEFINED_SPLITS

SPLITS = ("train", "val", "test", "pool")
BUILT_IN_SOURCE = "synthetic"  # the manifest's source of the built-in data set's images


def unit_hash(image_id: str, seed: int, salt: str = "split") -> float:
    """A number in [0, 1) fixed by the id, the seed and the salt alone."""
    digest = hashlib.sha256(f"{salt}:{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


OUTPUT_COLUMNS = ["id", "split", "labeled", "has_mask", "queried", "source", "height", "width",
                  "foreground_fraction", "predefined_split"]


def _holdout(ids: pd.Series, candidates: np.ndarray, position: np.ndarray, params: SplitParams) -> np.ndarray:
    """'test' / 'val' / '' for each image; only ``candidates`` may be held out."""
    holdout = np.full(len(ids), "", dtype=object)
    available = int(candidates.sum())
    if params.val_count or params.test_count:
        test_count = params.test_count or int(round(params.test_fraction * available))
        val_count = params.val_count or int(round(params.val_fraction * available))
        if test_count + val_count >= available:
            raise ActivesegError(
                f"params.yaml: split asks for {val_count} val + {test_count} test images but only {available} "
                "labeled images (not counting annotated queries) exist and train needs at least one; "
                "lower split.val_count / split.test_count or add labeled images")
        order = np.flatnonzero(candidates)[np.argsort(position[candidates], kind="stable")]
        holdout[order[:test_count]] = "test"
        holdout[order[test_count:test_count + val_count]] = "val"
    else:
        holdout[candidates & (position < params.test_fraction)] = "test"
        holdout[candidates & (position >= params.test_fraction)
                & (position < params.test_fraction + params.val_fraction)] = "val"
        # A handful of images (three Labelme photos, say) often draws no val or test image at all;
        # the lowest-hash free image fills it, as long as train keeps one, so a tiny set still runs.
        for name in ("test", "val"):
            free = np.flatnonzero(candidates & (holdout == ""))
            if not (holdout == name).any() and len(free) >= 2:
                holdout[free[np.argmin(position[free])]] = name
    return holdout


def _hidden_in_simulation(ids: pd.Series, candidates: np.ndarray, params: SplitParams, seed: int) -> np.ndarray:
    """Which training images hide their mask in simulation mode: all but ``initial_labeled`` of them
    (the smallest hashes), or with ``initial_fraction`` those whose own hash is at or above it."""
    position = np.array([unit_hash(image_id, seed, salt="simulation") for image_id in ids])
    if params.initial_fraction:
        return candidates & (position >= params.initial_fraction)
    hidden = np.zeros(len(ids), bool)
    order = np.flatnonzero(candidates)[np.argsort(position[candidates], kind="stable")]
    hidden[order[params.initial_labeled:]] = True
    return hidden


def simulation_mode(manifest: pd.DataFrame, params: SplitParams) -> bool:
    """Whether to hide training masks: ``split.simulate`` as set, or with ``auto`` only for the
    built-in synthetic data (simulation measures active learning; it must never quietly take
    masks away from a user who brought them)."""
    if params.simulate == "auto":
        return bool((manifest["source"].astype(str) == BUILT_IN_SOURCE).any()) if "source" in manifest else False
    return bool(params.simulate)


def simulation_note(frame: pd.DataFrame, params: SplitParams) -> str | None:
    """The summary line of a split that hid masks: how many, why, and how to stop it."""
    hidden = int((frame["has_mask"].astype(bool) & ~frame["labeled"].astype(bool)).sum())
    if not hidden:
        return None
    training = hidden + int(((frame["split"] == "train") & frame["labeled"].astype(bool)).sum())
    why = ("split.simulate: auto hides them for the built-in data set" if params.simulate == "auto"
           else "split.simulate: true")
    return (f"split: simulation mode hid {hidden} of {training} training masks in the pool ({why}, as the "
            "oracle for active-learning simulation); set split.simulate: false to train on all of them")


def assign_splits(manifest: pd.DataFrame, params: SplitParams, seed: int) -> pd.DataFrame:
    """One row per image: id, split, labeled (mask usable for training), has_mask (oracle),
    queried, and the manifest's source, size and foreground fraction."""
    ids = manifest["id"].astype(str).reset_index(drop=True)
    has_mask = manifest["labeled"].astype(bool).to_numpy()
    queried = (manifest["queried"].astype(bool).to_numpy() if "queried" in manifest
               else np.zeros(len(ids), bool)) & has_mask
    predefined = (manifest["predefined_split"].fillna("").astype(str).to_numpy() if "predefined_split" in manifest
                  else np.full(len(ids), ""))
    kept = has_mask & np.isin(predefined, PREDEFINED_SPLITS)
    position = np.array([unit_hash(image_id, seed) for image_id in ids])
    holdout = _holdout(ids, has_mask & ~queried & ~kept, position, params)
    split = np.where(holdout != "", holdout, np.where(has_mask, "train", "pool")).astype(object)
    split[kept] = predefined[kept]
    labeled = has_mask.copy()
    if simulation_mode(manifest, params):
        moved = _hidden_in_simulation(ids, (split == "train") & ~queried, params, seed)
        split[moved] = "pool"
        labeled[moved] = False
    frame = pd.DataFrame({"id": ids, "split": split, "labeled": labeled, "has_mask": has_mask, "queried": queried})
    for column in OUTPUT_COLUMNS[5:]:
        frame[column] = manifest[column].to_numpy() if column in manifest else np.nan
    counts = frame["split"].value_counts()
    for name in ("train", "val", "test"):
        if counts.get(name, 0) == 0:
            raise ActivesegError(
                f"params.yaml: split leaves no {name} images out of {int(has_mask.sum())} labeled; add labeled "
                "images or change split.val_fraction / split.test_fraction (or split.val_count / split.test_count)")
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def fraction_notes(frame: pd.DataFrame, params: SplitParams) -> list[str]:
    """A line for each of val and test whose size is not round(fraction x labeled): fractions are
    per-image chances (see the module docstring), which small sets feel most."""
    if params.val_count or params.test_count:
        return []
    predefined = frame["predefined_split"].fillna("").astype(str).isin(PREDEFINED_SPLITS)
    free = frame["has_mask"].astype(bool) & ~frame["queried"].astype(bool) & ~predefined
    labeled = int(free.sum())
    notes = []
    for name, fraction in (("val", params.val_fraction), ("test", params.test_fraction)):
        held_out, target = int((free & (frame["split"] == name)).sum()), int(round(fraction * labeled))
        if labeled and held_out != target:
            notes.append(f"split: note: {name} has {held_out} of {labeled} labeled images"
                         + (" outside split.predefined" if params.predefined else "")
                         + f" ({held_out / labeled:.0%}) for split.{name}_fraction {fraction:g}, a per-image chance "
                         "that keeps the split sticky"
                         + ("" if params.predefined else f"; split.{name}_count: {max(target, 1)} gives an exact size"))
    return notes


def read_split(split_csv) -> pd.DataFrame:
    path = Path(split_csv)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro split` first")
    return pd.read_csv(path, dtype={"id": str})
