"""Split: seeded, sticky under growth, counts or fractions, queried images in train."""

from __future__ import annotations

import pandas as pd
import pytest

from activeseg.errors import ActivesegError
from activeseg.params import SplitParams
from activeseg.split import assign_splits, fraction_notes, simulation_note


def manifest(labeled: int, unlabeled: int = 0, queried=(), prefix="img") -> pd.DataFrame:
    ids = [f"{prefix}{index:04d}" for index in range(labeled + unlabeled)]
    return pd.DataFrame({"id": ids, "labeled": [index < labeled for index in range(len(ids))],
                         "queried": [image_id in queried for image_id in ids], "source": "images/x.png",
                         "height": 8, "width": 8, "foreground_fraction": 0.5})


def by_id(frame: pd.DataFrame) -> dict:
    return dict(zip(frame["id"], frame["split"]))


REAL = SplitParams(simulate=False)


def test_fractions_are_sticky_when_images_and_masks_are_added():
    before = by_id(assign_splits(manifest(100, unlabeled=50), REAL, seed=3))
    grown = manifest(150, unlabeled=80)  # the 50 pool images got masks by hand, 80 new images arrived
    after = by_id(assign_splits(grown, REAL, seed=3))
    for image_id, split in before.items():
        if split != "pool":
            assert after[image_id] == split, image_id
    assert {after[image_id] for image_id, split in before.items() if split == "pool"} <= {"train", "val", "test"}


def test_counts_are_exact_and_sticky_when_unlabeled_images_and_query_annotations_arrive():
    params = SplitParams(val_count=50, test_count=25, simulate=False)
    before = assign_splits(manifest(225, unlabeled=278), params, seed=1)
    assert before["split"].value_counts().to_dict() == {"pool": 278, "train": 150, "val": 50, "test": 25}
    pool = before[before["split"] == "pool"]["id"].tolist()
    queried = set(pool[:10])
    grown = manifest(225 + 10, unlabeled=268 + 40, queried=queried)
    # the first ten pool images came back annotated through the round trip (ids keep their order)
    after = by_id(assign_splits(grown, params, seed=1))
    for image_id, split in by_id(before).items():
        if split != "pool":
            assert after[image_id] == split
    assert all(after[image_id] == "train" for image_id in queried)


def test_queried_images_always_join_train_even_where_the_hash_says_val_or_test():
    frame = manifest(200, queried={f"img{index:04d}" for index in range(200)})
    frame.loc[:99, "queried"] = False
    result = assign_splits(frame, REAL, seed=0)
    assert (result.loc[result["queried"], "split"] == "train").all() and result["queried"].sum() == 100


def test_simulation_matches_the_seed_study_shape():
    params = SplitParams(val_count=50, test_count=25, simulate=True, initial_labeled=150)
    result = assign_splits(manifest(503), params, seed=42)
    assert result["split"].value_counts().to_dict() == {"pool": 278, "train": 150, "val": 50, "test": 25}
    pool = result[result["split"] == "pool"]
    assert pool["has_mask"].all() and not pool["labeled"].any()  # hidden masks are the oracle


def test_seed_changes_the_split_and_output_is_readable_with_pandas(tmp_path):
    a, b = assign_splits(manifest(60), REAL, seed=1), assign_splits(manifest(60), REAL, seed=2)
    assert by_id(a) != by_id(b)
    a.to_csv(tmp_path / "split.csv", index=False)
    reread = pd.read_csv(tmp_path / "split.csv")
    assert {"id", "split", "labeled", "has_mask", "queried", "source", "height", "width",
            "foreground_fraction"} <= set(reread.columns)


@pytest.mark.parametrize("params, problem", [
    (SplitParams(val_count=3, test_count=2, simulate=False), "asks for 3 val \\+ 2 test images but only 5"),
    (SplitParams(val_count=40, simulate=False), "asks for 40 val"),
])
def test_asking_for_more_val_or_test_than_exist_is_a_clear_error(params, problem):
    with pytest.raises(ActivesegError, match=problem) as raised:
        assign_splits(manifest(5, unlabeled=20), params, seed=0)
    assert str(raised.value).startswith("params.yaml:")


def test_two_labeled_images_cannot_fill_train_val_and_test():
    with pytest.raises(ActivesegError, match="params.yaml: split leaves no val images out of 2 labeled"):
        assign_splits(manifest(2, unlabeled=20), REAL, seed=0)


@pytest.mark.parametrize("labeled", [3, 4, 5])
def test_a_tiny_set_whose_fractions_draw_no_val_or_test_image_still_gets_one_of_each(labeled):
    tiny_fractions = SplitParams(val_fraction=0.01, test_fraction=0.01, simulate=False)
    frame = assign_splits(manifest(labeled, unlabeled=4), tiny_fractions, seed=0)
    counts = frame["split"].value_counts()
    assert (counts["val"], counts["test"], counts["train"], counts["pool"]) == (1, 1, labeled - 2, 4)
    assert by_id(assign_splits(manifest(labeled, unlabeled=4), tiny_fractions, seed=0)) == by_id(frame)


def test_annotated_queries_do_not_count_as_val_or_test_candidates():
    frame = manifest(5, queried={"img0000", "img0001", "img0002"})
    with pytest.raises(ActivesegError, match="only 2 labeled images \\(not counting annotated queries\\)"):
        assign_splits(frame, SplitParams(val_count=1, test_count=1, simulate=False), seed=0)


def test_predefined_images_keep_their_split_and_the_rest_follow_the_hash():
    frame = manifest(120, unlabeled=20)
    predefined = ["train", "val", "test"] * 30 + [""] * 50  # 90 of the labeled; 20 pool images are "train"
    frame["predefined_split"] = predefined[:100] + [""] * 20 + ["train"] * 20
    frame.loc[5, "queried"] = True  # a predefined image keeps its split even if annotated through a query
    result = by_id(assign_splits(frame, REAL, seed=3))
    plain = by_id(assign_splits(manifest(120, unlabeled=20), REAL, seed=3))
    for index, image_id in enumerate(frame["id"]):
        if index < 90:
            assert result[image_id] == predefined[index], image_id
        elif index < 120:
            assert result[image_id] == plain[image_id], image_id  # today's sticky rule
        else:
            assert result[image_id] == "pool"  # without a mask the predefined split cannot hold it
    notes = fraction_notes(assign_splits(frame, REAL, seed=3), SplitParams(simulate=False, predefined="folders"))
    assert notes and all("of 30 labeled images outside split.predefined" in note and "_count" not in note
                         for note in notes)


def test_simulation_hides_only_predefined_train_masks():
    frame = manifest(60)
    frame["predefined_split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    result = assign_splits(frame, SplitParams(simulate=True, initial_labeled=5), seed=0)
    assert result["split"].value_counts().to_dict() == {"pool": 35, "val": 10, "test": 10, "train": 5}


def test_fraction_notes_say_a_fraction_is_a_per_image_chance():
    frame = assign_splits(manifest(60), REAL, seed=4)
    counts = frame["split"].value_counts()
    assert counts["test"] == 9 and counts["val"] == 13  # round(0.15 x 60) = 9: test is on target, val not
    assert fraction_notes(frame, REAL) == [
        "split: note: val has 13 of 60 labeled images (22%) for split.val_fraction 0.15, a per-image chance that "
        "keeps the split sticky; split.val_count: 9 gives an exact size"]
    counted = SplitParams(val_count=9, test_count=9, simulate=False)
    assert fraction_notes(assign_splits(manifest(60), counted, seed=4), counted) == []


def test_simulation_with_initial_fraction_keeps_the_same_masks_when_labeled_images_arrive():
    params = SplitParams(simulate=True, initial_fraction=0.3)
    before = assign_splits(manifest(100), params, seed=4)
    grown = manifest(140, queried={f"img{index:04d}" for index in range(130, 140)})  # 30 by hand, 10 queried
    after = by_id(assign_splits(grown, params, seed=4))
    assert all(after[image_id] == split for image_id, split in by_id(before).items())
    kept = before[before["split"] == "train"]
    assert 0.15 < len(kept) / (before["split"].isin(["train", "pool"])).sum() < 0.45


def test_simulation_count_is_exact_and_annotated_queries_displace_no_kept_mask():
    params = SplitParams(simulate=True, initial_labeled=10)
    before = assign_splits(manifest(100), params, seed=4)
    assert (before["split"] == "train").sum() == 10
    queried = {f"img{index:04d}" for index in range(100, 120)}
    after = by_id(assign_splits(manifest(120, queried=queried), params, seed=4))
    assert all(after[image_id] == split for image_id, split in by_id(before).items())


def test_initial_fraction_is_checked(tiny_params):
    with pytest.raises(ActivesegError, match="^params.yaml: .*split.initial_fraction.* between 0 and 1"):
        tiny_params(split__initial_fraction=1.5)


def test_simulate_auto_hides_nothing_of_a_users_masks():
    users = manifest(40, unlabeled=5)
    result = assign_splits(users, SplitParams(initial_labeled=6), seed=0)   # simulate: auto, the default
    assert result["labeled"].sum() == 40 and (result["split"] == "pool").sum() == 5
    assert simulation_note(result, SplitParams()) is None
    asked = assign_splits(users, SplitParams(simulate=True, initial_labeled=6), seed=0)
    assert ((asked["split"] == "train") & asked["labeled"]).sum() == 6


def test_simulate_auto_simulates_on_the_built_in_data_and_says_how_many_it_hid():
    built_in = manifest(40).assign(source="synthetic")
    result = assign_splits(built_in, SplitParams(initial_labeled=6), seed=0)
    kept = int(((result["split"] == "train") & result["labeled"]).sum())
    hidden = int((result["has_mask"] & ~result["labeled"]).sum())
    assert kept == 6 and hidden > 0 and (result["split"] == "pool").sum() == hidden
    note = simulation_note(result, SplitParams())
    assert note == (f"split: simulation mode hid {hidden} of {hidden + 6} training masks in the pool (split.simulate: "
                    "auto hides them for the built-in data set, as the oracle for active-learning simulation); set "
                    "split.simulate: false to train on all of them")
    assert assign_splits(built_in, SplitParams(simulate=False), seed=0)["labeled"].all()


def test_seed_retrains_on_the_same_data_and_split_while_data_seed_redraws_them(tmp_path):
    """`dvc exp run -S seed=N` compares training runs on one test set; `data_seed` (or, left auto,
    `seed`, as in a params.yaml written before it existed) draws the built-in data and the split."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from conftest import tiny_params_dict

    stages = Path(__file__).resolve().parents[1] / "stages"

    def data_and_split(name: str, **seeds) -> tuple[bytes, str]:
        folder = tmp_path / name
        folder.mkdir()
        params = {**tiny_params_dict(), **seeds}
        params["ingest"]["raw_dir"] = "data/raw"   # absent: the built-in synthetic data set
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        for stage, args in (("ingest", ["--out", "ingested"]),
                            ("split", ["--ingested", "ingested", "--out", "split.csv"])):
            done = subprocess.run([sys.executable, str(stages / f"{stage}.py"), "--params", "params.yaml", *args],
                                  cwd=folder, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        images = b"".join(path.read_bytes() for path in sorted((folder / "ingested").rglob("*.png")))
        return images, (folder / "split.csv").read_text()

    first = data_and_split("seed1", seed=1, data_seed=42)
    assert data_and_split("seed2", seed=2, data_seed=42) == first
    redrawn = data_and_split("data_seed7", seed=1, data_seed=7)
    assert redrawn[0] != first[0] and redrawn[1] != first[1]
    assert data_and_split("auto", seed=7, data_seed="auto") == redrawn
