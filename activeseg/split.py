"""Split: train / val / test / pool, seeded and sticky.

An image's split is derived from a hash of its id and the seed, never from a shuffle of the whole
list, so adding images or masks never moves an existing image between val, test and train.
Images without a mask form the unlabeled pool. In simulation mode (every image has a mask) only
``initial_labeled`` training images keep theirs; the other training masks are hidden in the pool
and serve as the oracle for simulated annotation rounds.
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


def assign_splits(manifest: pd.DataFrame, params: SplitParams, seed: int) -> pd.DataFrame:
    """One row per image: id, split, labeled (mask usable for training), has_mask (oracle)."""
    ids = manifest["id"].astype(str)
    has_mask = manifest["labeled"].astype(bool).to_numpy()
    position = np.array([unit_hash(image_id, seed) for image_id in ids])
    split = np.where(position < params.test_fraction, "test",
                     np.where(position < params.test_fraction + params.val_fraction, "val", "train"))
    split = np.where(has_mask, split, "pool").astype(object)
    labeled = has_mask.copy()
    if params.simulate:
        train_ids = ids[split == "train"]
        order = sorted(train_ids, key=lambda image_id: unit_hash(image_id, seed, salt="simulation"))
        hidden = set(order[params.initial_labeled:])
        moved = ids.isin(hidden).to_numpy()
        split[moved] = "pool"
        labeled[moved] = False
    frame = pd.DataFrame({"id": ids, "split": split, "labeled": labeled, "has_mask": has_mask})
    counts = frame["split"].value_counts()
    for name in ("train", "val", "test"):
        if counts.get(name, 0) == 0:
            raise ActivesegError(
                f"params.yaml: split leaves no {name} images out of {int(has_mask.sum())} labeled; "
                "add labeled images or change split.val_fraction / split.test_fraction")
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def read_split(split_csv) -> pd.DataFrame:
    path = Path(split_csv)
    if not path.is_file():
        raise ActivesegError(f"{path}: not found; run `dvc repro split` first")
    return pd.read_csv(path, dtype={"id": str})
