"""bench/label_efficiency.py's data sets: ISBI tiles (``--tile`` cuts every section edge to edge) and
the soybean photographs as tiles, split by photograph."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import label_efficiency  # noqa: E402

from activeseg import imageio  # noqa: E402


def test_isbi_tiles_cover_each_section_at_the_chosen_side(shared_datasets):
    groups = label_efficiency.load_dataset("isbi", 0, 0, isbi_foreground="membrane", tile=96)
    assert sorted(groups) == list(range(30))
    tiles = groups[7]
    assert len(tiles) == 25   # 5 x 5 tiles of 96 px; the last 32 px of each side are dropped
    tile_id, image, membrane = tiles[7]   # row 1, column 2
    assert tile_id == "7_96_192" and image.shape == membrane.shape == (96, 96)
    section = imageio.read_image(shared_datasets / "isbi2012-em" / "images" / "7.png")
    interior = imageio.read_image(shared_datasets / "isbi2012-em" / "masks" / "7.png")
    assert (image == section[96:192, 192:288]).all()
    assert (membrane == 255 - interior[96:192, 192:288]).all()


def test_isbi_default_tiles_are_the_four_quarters(shared_datasets):
    groups = label_efficiency.load_dataset("isbi", 0, 0, isbi_foreground="interior")
    assert [tile_id for tile_id, _, _ in groups[3]] == ["3_0_0", "3_0_256", "3_256_0", "3_256_256"]
    interior = imageio.read_image(shared_datasets / "isbi2012-em" / "masks" / "3.png")
    assert (groups[3][3][2] == interior[256:, 256:]).all()


def test_fixed_groups_go_whole_to_test_and_val():
    groups = {name: [(f"{name}_{index}", None, None) for index in range(5)] for name in range(1, 9)}
    test, val, initial, pool = label_efficiency.split_groups(groups, 0, 0, 3, seed=0, fixed=([7, 8], [6]))
    assert sorted(item[0] for item in test) == sorted(f"{name}_{index}" for name in (7, 8) for index in range(5))
    assert sorted(item[0] for item in val) == [f"6_{index}" for index in range(5)]
    rest = [item[0] for item in initial + pool]
    assert len(initial) == 3 and len(rest) == len(set(rest)) == 25
    assert {item.split("_")[0] for item in rest} == {str(name) for name in range(1, 6)}


def test_initial_groups_start_labeled_whole_and_the_pool_holds_every_other_tile():
    groups = {name: [(f"{name}_{index}", None, None) for index in range(5)] for name in range(1, 9)}
    test, val, initial, pool = label_efficiency.split_groups(groups, 0, 0, 3, seed=0, fixed=([7, 8], [6]),
                                                             initial_groups=2)
    initial_names = {item[0].split("_")[0] for item in initial}
    assert len(initial) == 10 and len(initial_names) == 2 and not initial_names & {"6", "7", "8"}
    assert sorted(item[0] for item in pool) == sorted(f"{name}_{index}" for name in range(1, 6) for index in range(5)
                                                     if str(name) not in initial_names)


def test_soybean_photograph_is_cut_into_tiles_of_its_rescaled_pixels(shared_datasets):
    from activeseg import imageio
    from activeseg.tiling import rescale, tile_source

    folder = shared_datasets / "soybean-rust"
    tiles = label_efficiency.soybean_groups(folder, 0.125, 32, numbers=[1])[1]
    image = rescale(imageio.read_image(folder / "images" / "image1.jpeg"), 0.125)
    assert len(tiles) == (image.shape[0] // 32) * (image.shape[1] // 32)
    assert {tile_source(tile_id) for tile_id, _, _ in tiles} == {"image1"}
    for tile_id, tile, mask in tiles:
        y, x = (int(part[1:]) for part in tile_id.split("@")[1].split("_"))
        assert tile.shape[:2] == mask.shape[:2] == (32, 32)
        np.testing.assert_array_equal(tile, image[y:y + 32, x:x + 32])
    assert set(np.unique(np.concatenate([mask.ravel() for _, _, mask in tiles]))) <= {0, 255}
    assert any(mask.any() for _, _, mask in tiles) and not all(mask.any() for _, _, mask in tiles)


def test_picked_foreground_share_counts_revealed_images_per_strategy():
    import pandas as pd

    runs = pd.DataFrame({"strategy": ["entropy", "entropy", "entropy", "random", "random"],
                         "round": [0, 1, 2, 0, 1],
                         "added_ids": [None, "a b", "c d", None, "c e"]})
    holds = {"a": True, "b": True, "c": False, "d": True, "e": False}
    assert label_efficiency.picked_foreground_share(runs, holds) == {"entropy": 0.75, "random": 0.0}


def _write_run(folder, seeds, dice_offset=0.0, picked=None):
    """A label-efficiency run folder as bench/label_efficiency.py writes it: random and entropy,
    round 0 at 4 labels, round 1 at 8 (entropy reaches the target there, random only at 12)."""
    import json

    import pandas as pd

    rows = []
    for seed in seeds:
        for strategy, dice in (("entropy", [0.5, 0.9, 0.92]), ("random", [0.5, 0.7, 0.9])):
            rows += [{"strategy": strategy, "seed": seed, "round": number, "labeled": 4 + 4 * number,
                      "dice": value + dice_offset, "added_ids": "", "spearman": 0.5, "error_lift": 2.0}
                     for number, value in enumerate(dice)]
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
    pd.DataFrame({"seed": seeds, "labeled": 40, "dice": [0.94 + dice_offset] * len(seeds)}).to_csv(
        folder / "full_pool.csv", index=False)
    arguments = {"dataset": "soybean", "out": str(folder), "seeds": len(seeds), "first_seed": seeds[0],
                 "strategies": "entropy,random", "rounds": 2, "per_round": 4}
    (folder / "summary.json").write_text(json.dumps({"seeds": len(seeds), "benchmark": {
        "dataset": "soybean", "arguments": arguments, "pool_foreground_share": 0.2,
        "picked_foreground_share": picked or {"entropy": 0.5, "random": 0.2}}}))


def test_combine_extends_a_run_with_later_seeds_and_refuses_a_shared_seed_that_differs(tmp_path):
    import json
    import subprocess

    script = Path(__file__).resolve().parents[1] / "bench" / "combine_label_efficiency.py"
    _write_run(tmp_path / "first", [1, 2])
    _write_run(tmp_path / "later", [3, 4, 5, 6], picked={"entropy": 0.8, "random": 0.2})
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "all"),
                           str(tmp_path / "first"), str(tmp_path / "later")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["seeds"] == 6
    assert summary["strategies"]["entropy"]["labels_ratio_to_random"] == round(8 / 12, 4)
    # weighted by seeds: (0.5 * 2 + 0.8 * 4) / 6
    assert summary["benchmark"]["picked_foreground_share"] == {"entropy": 0.7, "random": 0.2}
    import pandas as pd
    assert pd.read_csv(tmp_path / "all" / "full_pool.csv")["seed"].tolist() == [1, 2, 3, 4, 5, 6]

    _write_run(tmp_path / "other", [2, 3], dice_offset=0.01)   # seed 2 again, but not the same simulation
    refused = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "bad"),
                              str(tmp_path / "first"), str(tmp_path / "other")], capture_output=True, text=True)
    assert refused.returncode != 0 and "differ for a seed they share" in refused.stderr
    assert not (tmp_path / "bad").exists()
