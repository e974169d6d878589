"""Split: train / val / test / pool, seeded and sticky.

An image's split is derived from a hash of its id and the seed, never from a shuffle of the whole
list, so adding images or masks never moves an existing image between val, test and train.
Images without a mask form the unlabeled pool. Images labeled through the active-learning round
trip (``queried`` in the manifest: Labelme files flagged ``activeseg_queried``) always join
train: the model chose them, so they are no fair sample for val or test, and the rule needs no
memory of earlier splits. In simulation mode (every image has a mask) only ``initial_labeled``
training images keep theirs; the other training masks are hidden in the pool and serve as the
oracle for simulated annotation rounds.

Fractions (``val_fraction``/``test_fraction``) compare each id's hash with a fixed threshold, so
they are sticky whatever is added. Counts (``val_count``/``test_count``) take the ids with the
smallest hashes among the labeled, non-queried images: sticky when unlabeled images or query
annotations arrive, but a new hand-labeled image with a small hash can take the place of one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from activeseg.errors import ActivesegError
from activeseg.params import SplitParams

SPLITS = ("train", "val", "test", "pool")


def unit_hash(image_id: str, seed: int, salt: str = "split") -> float:
    """A number in [0, 1) fixed by the id, the seed and the salt alone."""
    digest = hashlib.sha256(f"{salt}:{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


OUTPUT_COLUMNS = ["id", "split", "labeled", "has_mask", "queried", "source", "height", "width",
                  "foreground_fraction"]


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
    return holdout


def assign_splits(manifest: pd.DataFrame, params: SplitParams, seed: int) -> pd.DataFrame:
    """One row per image: id, split, labeled (mask usable for training), has_mask (oracle),
    queried, and the manifest's source, size and foreground fraction."""
    ids = manifest["id"].astype(str).reset_index(drop=True)
    has_mask = manifest["labeled"].astype(bool).to_numpy()
    queried = (manifest["queried"].astype(bool).to_numpy() if "queried" in manifest
               else np.zeros(len(ids), bool)) & has_mask
    position = np.array([unit_hash(image_id, seed) for image_id in ids])
    holdout = _holdout(ids, has_mask & ~queried, position, params)
    split = np.where(holdout != "", holdout, np.where(has_mask, "train", "pool")).astype(object)
    labeled = has_mask.copy()
    if params.simulate:
        train_ids = ids[(split == "train") & ~queried]
        order = sorted(train_ids, key=lambda image_id: unit_hash(image_id, seed, salt="simulation"))
        hidden = set(order[params.initial_labeled:])
        moved = ids.isin(hidden).to_numpy()
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


def read_split(split_csv) -> pd.DataFrame:
    path = Path(split_csv)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro split` first")
    return pd.read_csv(path, dtype={"id": str})
