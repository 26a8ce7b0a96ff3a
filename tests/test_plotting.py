"""conv1_filters.png: the kernels' mosaic as in the paper's figure 3."""

from __future__ import annotations

import numpy as np
from PIL import Image

from alexnet_tf.model import alexnet as model
from alexnet_tf.train import plotting

ZOOM, GAP, TOWER_GAP, COLUMNS = 4, 2, 10, 16


def marked_kernels(count: int) -> np.ndarray:
    """Kernel i is 0 but for one weight at row i % 11, column i // 11 (red channel)."""
    kernel = np.zeros((11, 11, 3, count), np.float32)
    for index in range(count):
        kernel[index % 11, index // 11 % 11, 0, index] = 1.0
    return kernel


def tile_origin(index: int, per_tower: int, rows: int) -> tuple[int, int]:
    tower, position = divmod(index, per_tower)
    row, column = divmod(position, COLUMNS)
    top = GAP + (tower * rows + row) * (11 * ZOOM + GAP) + tower * TOWER_GAP
    return top, GAP + column * (11 * ZOOM + GAP)


def test_paper_mosaic_puts_each_towers_48_kernels_in_their_own_three_rows():
    mosaic = plotting.conv1_mosaic(marked_kernels(96), towers=2)
    # 6 rows of 16 tiles (3 per tower) of 44 pixels, 2-pixel gaps, 10 more between towers.
    assert mosaic.shape == (6 * 44 + 7 * 2 + 10, 16 * 44 + 17 * 2, 3)
    for index in range(96):
        top, left = tile_origin(index, 48, 3)
        tile = mosaic[top : top + 44, left : left + 44]
        bright = np.argwhere(tile[..., 0] == 255)
        assert bright.min(axis=0).tolist() == [index % 11 * 4, index // 11 % 11 * 4], index
        assert len(bright) == 16 and (tile[..., 1] == 0).all()
    # The band between the towers is background.
    band = 2 + 3 * 46
    assert (mosaic[band : band + 10] == 255).all()


def test_single_tower_mosaic_and_the_file_written_from_a_model(tmp_path):
    network = model.build_alexnet(num_classes=3, variant="single", image_size=63)
    path = str(tmp_path / plotting.CONV1_FILTERS_FILENAME)
    plotting.plot_conv1_filters(network, path)
    with Image.open(path) as picture:
        assert picture.size == (16 * 44 + 17 * 2, 4 * 44 + 5 * 2)
        pixels = np.asarray(picture.convert("RGB"))
    kernel = network.get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(pixels, plotting.conv1_mosaic(kernel, towers=1))
    first = kernel[..., 0]
    expected = np.round(255 * (first - first.min()) / (first.max() - first.min()))
    np.testing.assert_array_equal(pixels[2:46:4, 2:46:4], expected.astype(np.uint8))
