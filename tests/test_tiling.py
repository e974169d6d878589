"""Tiling and stitching (activeseg/tiling.py): the grid covers the image, padding is marked, and
stitching an image's own tiles gives the image back."""

import numpy as np
import pytest

from activeseg.tiling import TileGrid, blend_weight, rescale, sliding_window, stitch


def _mask(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((height, width)) > 0.6).astype(np.float32)


@pytest.mark.parametrize("shape", [(64, 64), (97, 131), (20, 33), (1, 1), (5, 300)])
@pytest.mark.parametrize("tile_size, overlap", [(32, 0), (32, 8), (32, 16), (48, 47)])
@pytest.mark.parametrize("mode", ["gaussian", "linear"])
def test_tiling_then_stitching_a_mask_gives_it_back_exactly(shape, tile_size, overlap, mode):
    mask = _mask(*shape)
    grid = TileGrid(*shape, tile_size, overlap)
    tiles = list(grid.tiles(mask))
    assert all(tile.shape == (tile_size, tile_size) for _, tile, _ in tiles)
    stitched = stitch(grid, [(position, tile) for position, tile, _ in tiles], blend_weight(tile_size, overlap, mode))
    assert stitched.shape == shape
    np.testing.assert_array_equal(stitched, mask)


def test_grid_covers_the_image_with_the_fewest_tiles_and_marks_the_padding():
    grid = TileGrid(100, 64, 32, 8)  # stride 24: rows start 0, 24, 48, 72 (72 + 32 > 100: padded)
    assert grid.starts(100) == [0, 24, 48, 72]
    assert grid.starts(64) == [0, 24, 48]
    assert len(grid) == 12 == len(grid.positions)
    image = np.arange(100 * 64, dtype=np.int32).reshape(100, 64)
    tile, valid = grid.cut(image, 72, 24)
    assert valid[:28, :32].all() and not valid[28:].any()
    np.testing.assert_array_equal(tile[:28], image[72:100, 24:56])
    np.testing.assert_array_equal(tile[28:32], image[99:95:-1, 24:56])  # mirrored back from the edge
    small, small_valid = TileGrid(10, 7, 32).cut(np.ones((10, 7, 3), np.uint8), 0, 0)
    assert small.shape == (32, 32, 3) and small_valid.sum() == 70


def test_overlap_is_blended_with_weights_falling_towards_the_tile_border():
    for mode in ("gaussian", "linear"):
        weight = blend_weight(64, 16, mode)
        assert weight.min() > 0 and weight[32, 32] == pytest.approx(1.0)
        assert weight[0, 32] < weight[8, 32] < weight[32, 32]
    np.testing.assert_array_equal(blend_weight(64, 0), np.ones((64, 64), np.float32))
    # two tiles disagreeing over the shared band: the stitched map moves smoothly between them
    grid = TileGrid(32, 48, 32, 16)
    stitched = stitch(grid, [((0, 0), np.zeros((32, 32))), ((0, 16), np.ones((32, 32)))], blend_weight(32, 16))
    band = stitched[16, 16:32]
    assert stitched[16, 0] == 0 and stitched[16, 47] == 1
    assert np.all(np.diff(band) > 0)


def test_sliding_window_predicts_tile_batches_and_stitches_at_the_image_size():
    image = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)
    batches = []

    def predict_batch(tiles):
        batches.append(len(tiles))
        return tiles[..., 0].astype(np.float32) / 255.0

    probabilities = sliding_window(image, 32, 8, predict_batch, batch_size=5)
    assert probabilities.shape == (70, 90)
    assert sum(batches) == len(TileGrid(70, 90, 32, 8)) and max(batches) == 5
    np.testing.assert_allclose(probabilities, image[..., 0] / 255.0, atol=1e-6)


def test_rescale_keeps_channels_and_identity_at_scale_one():
    image = np.zeros((40, 60, 3), np.uint8)
    assert rescale(image, 1.0) is image
    assert rescale(image, 0.5).shape == (20, 30, 3)
    assert rescale(np.zeros((40, 60), np.uint8), 1.5).shape == (60, 90)
