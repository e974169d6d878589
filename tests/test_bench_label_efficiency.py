"""bench/label_efficiency.py's ISBI tiles: ``--tile`` cuts every section edge to edge."""

import sys
from pathlib import Path

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
