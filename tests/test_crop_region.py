"""Where training crops and ten crops lie: the paper's central 256x256 patch, or the full image.

Section 2 of the paper: "down-sampled the images to a fixed resolution of 256 x 256 [...]
rescaled the image such that the shorter side was of length 256, and then cropped out the
central 256x256 patch"; section 4.1 takes the training crops and the ten test crops from it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import imagenet
from alexnet_tf.data import augment
from alexnet_tf.data import pipeline as data
from tests.record_fixtures import write_image_records


def window_ranges(height: int, width: int, region: str | None, draws: int = 400):
    """(tops, lefts) of `draws` random 227 windows on a height x width original."""
    options = {} if region is None else {"region": region}
    windows = np.array([
        augment.random_crop_window(height, width, 227, tf.constant([seed, 3]), **options).numpy()
        for seed in range(draws)
    ])
    return windows[:, 0], windows[:, 1], windows[:, 2]


def test_paper_windows_on_a_500x375_image_lie_in_columns_62_to_104():
    # 500x375 scales to 341x256; its central 256 columns start at 42, i.e. at 62 of the original,
    # and a 227 crop (333 original pixels) can start 29 scaled (42 original) columns further.
    tops, lefts, sides = window_ranges(375, 500, region=None)
    assert set(sides) == {333}
    assert (lefts.min(), lefts.max()) == (62, 104)
    assert (tops.min(), tops.max()) == (0, 42)


def test_full_image_windows_on_a_500x375_image_lie_in_columns_0_to_167():
    tops, lefts, _ = window_ranges(375, 500, region="full_image")
    assert (lefts.min(), lefts.max()) == (0, 167)
    assert (tops.min(), tops.max()) == (0, 42)


@pytest.mark.parametrize("height, width", [(500, 375), (256, 256), (80, 140)])
def test_paper_windows_stay_inside_the_central_square(height, width):
    tops, lefts, sides = window_ranges(height, width, region="central_square", draws=100)
    square = min(height, width)
    square_top, square_left = (height - square) // 2, (width - square) // 2
    assert (tops >= square_top).all() and (tops + sides <= square_top + square).all()
    assert (lefts >= square_left).all() and (lefts + sides <= square_left + square).all()


def column_image(height: int, width: int) -> tf.Tensor:
    """Channel 0 holds each pixel's column, channel 1 its row."""
    columns = np.arange(width)[None, :].repeat(height, 0)
    rows = np.arange(height)[:, None].repeat(width, 1)
    return tf.constant(np.stack([columns, rows, np.zeros_like(rows)], axis=-1), tf.float32)


def test_ten_crop_corners_of_a_256x341_image_are_at_columns_42_and_71():
    crops = augment.ten_crop(column_image(256, 341), 227).numpy()
    top_left = [(int(crop[0, 0, 1]), int(crop[0, 0, 0])) for crop in crops[:4]]
    assert top_left == [(0, 42), (0, 71), (29, 42), (29, 71)]
    np.testing.assert_array_equal(crops[4], augment.center_crop(column_image(256, 341), 227))
    np.testing.assert_array_equal(crops[5:], crops[:5, :, ::-1, :])


def test_full_image_ten_crop_corners_of_a_256x341_image_are_at_columns_0_and_114():
    crops = augment.ten_crop(column_image(256, 341), 227, region="full_image").numpy()
    top_left = [(int(crop[0, 0, 1]), int(crop[0, 0, 0])) for crop in crops[:4]]
    assert top_left == [(0, 0), (0, 114), (29, 0), (29, 114)]


def gradient(height: int, width: int) -> np.ndarray:
    """Red encodes x: 0 at the left edge, 255 at the right."""
    red = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    flat = np.full((height, width), 128.0)
    return np.stack([red, flat, flat], axis=-1).round().astype(np.uint8)


@pytest.fixture(scope="module")
def wide_records(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("wide") / "train-00000-of-00001")
    return write_image_records(path, [gradient(300, 400)] * 64, [0] * 64)


def training_reds(pattern: str, **options) -> np.ndarray:
    dataset = data.build_dataset(
        pattern, training=True, batch_size=64, image_size=64, lighting=False, seed=0, **options
    )
    images, _ = next(iter(dataset))
    return (images.numpy() + imagenet.RGB_MEAN)[..., 0]


def test_the_pipeline_crops_from_the_central_square_by_default(wide_records):
    # The central 300 of 400 columns carry red 32..224; the whole image 0..255.
    reds = training_reds(wide_records)
    assert reds.min() > 26 and reds.max() < 230
    assert reds.min() < 45 and reds.max() > 210  # the 64 windows still reach both sides of it
    wide = training_reds(wide_records, crop_region="full_image")
    assert wide.min() < 20 and wide.max() > 235


def test_an_unknown_crop_region_is_refused_by_name(wide_records):
    with pytest.raises(ValueError, match="crop_region"):
        data.build_dataset(wide_records, training=True, batch_size=8, crop_region="corners")
