"""The input pipeline: what comes out of build_dataset, and the paper's augmentation."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import imagenet
from alexnet_tf.data import augment, records
from alexnet_tf.data import pipeline as data
from tests.record_fixtures import class_colour, write_image_records, write_records

SMALL = 64  # crop size for tests that do not need 227: same code paths, less arithmetic


def _all_batches(dataset):
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _gradient_image(height: int, width: int) -> np.ndarray:
    """Red encodes x (0 at the left edge, 255 at the right), green encodes y, blue is flat."""
    red = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    green = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    blue = np.full((height, width), 128.0)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def _encode(pixels: np.ndarray, image_format: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 records in 2 shards, labels 1..4 (the 1-based convention), 80..140 px per side."""
    directory = str(tmp_path_factory.mktemp("records"))
    write_records(directory, num_classes=4, images_per_class=5, label_offset=1)
    return os.path.join(directory, "train-*")


@pytest.fixture(scope="module")
def gradient_records(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gradient") / "train-00000-of-00001")
    return write_image_records(path, [_gradient_image(300, 400)] * 64, [0] * 64)


@pytest.mark.parametrize("label_offset", [0, 1])
def test_labels_are_zero_based_whatever_the_record_convention(tmp_path, label_offset):
    write_records(str(tmp_path), num_classes=3, images_per_class=2, label_offset=label_offset)
    dataset = data.build_dataset(
        str(tmp_path / "train-*"), training=False, batch_size=4, image_size=SMALL,
        label_offset=label_offset,
    )
    _, labels = _all_batches(dataset)
    assert labels.dtype == np.int32
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_wrong_label_offset_fails_with_a_message_naming_it(tmp_path):
    write_records(str(tmp_path), num_classes=2, images_per_class=1, label_offset=0)
    dataset = data.build_dataset(
        str(tmp_path / "train-*"), training=False, batch_size=2, image_size=SMALL, label_offset=1
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="label_offset=1"):
        _all_batches(dataset)


def test_training_batches_have_the_paper_shape_and_drop_the_remainder(corpus):
    dataset = data.build_dataset(corpus, label_offset=1, training=True, batch_size=8, seed=3)
    images, labels = _all_batches(dataset)
    assert dataset.element_spec[0].shape.as_list() == [8, 227, 227, 3]
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (16, 227, 227, 3)  # 20 records, remainder of 4 dropped
    assert set(labels.tolist()) <= {0, 1, 2, 3}


def test_evaluation_sees_every_record_centred_on_the_mean(corpus):
    images, labels = _all_batches(
        data.build_dataset(corpus, label_offset=1, training=False, batch_size=8, image_size=SMALL)
    )
    assert images.shape == (20, SMALL, SMALL, 3)
    assert np.bincount(labels).tolist() == [5, 5, 5, 5]
    # Adding the mean back gives each class's colour (up to the fixture's pixel noise).
    for image, label in zip(images, labels):
        pixel = (image + imagenet.RGB_MEAN).mean(axis=(0, 1))
        np.testing.assert_allclose(pixel, class_colour(label, 4), atol=8)


def _paper_centre_crop_by_hand(pixels: np.ndarray, size: int, shorter_side: int = 256) -> np.ndarray:
    """The paper's evaluation input written out in numpy: shorter side scaled to 256 or
    `shorter_side` (bilinear, half-pixel centres, no antialiasing), the central size x size
    patch, the mean subtracted."""
    height, width = pixels.shape[:2]
    scale = np.float32(shorter_side) / np.float32(min(height, width))
    new_height = shorter_side if height <= width else int(np.round(np.float32(height) * scale))
    new_width = shorter_side if width < height else int(np.round(np.float32(width) * scale))

    def sample(out_size: int, in_size: int):
        position = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        low = np.floor(position)
        return (np.clip(low, 0, in_size - 1).astype(int),
                np.clip(low + 1, 0, in_size - 1).astype(int), (position - low)[:, None])

    top = (new_height - size) // 2
    left = (new_width - size) // 2
    rows = [part[top:top + size] for part in sample(new_height, height)]
    columns = [part[left:left + size] for part in sample(new_width, width)]
    image = pixels.astype(np.float64)
    across = (image[:, columns[0]] * (1 - columns[2][:, 0, None])
              + image[:, columns[1]] * columns[2][:, 0, None])
    resized = across[rows[0]] * (1 - rows[2][:, :, None]) + across[rows[1]] * rows[2][:, :, None]
    return resized - np.asarray(imagenet.RGB_MEAN, np.float64)


# 76: --resize_side for a small crop (the whole photo in view, as 227 of 256 gives).
@pytest.mark.parametrize("shorter_side", [256, 76])
def test_evaluation_equals_preprocess_for_eval_on_the_same_bytes(tmp_path, shorter_side):
    rng = np.random.default_rng(0)
    # Scaled up, and one scaled down (where antialiasing would change the pixels).
    sizes = [(90 + 7 * i, 130 - 5 * i) for i in range(5)] + [(300, 420)]
    pictures = [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for size in sizes]
    path = write_image_records(str(tmp_path / "validation-00000-of-00001"), pictures,
                               [0] * len(pictures))
    images, _ = _all_batches(
        data.build_dataset(path, training=False, batch_size=2, image_size=SMALL,
                           shorter_side=shorter_side)
    )
    assert len(images) == len(pictures)
    for image, record in zip(images, tf.data.TFRecordDataset(path)):
        encoded = tf.io.parse_single_example(record, records.PARSE_SPEC)[records.ENCODED]
        expected = data.preprocess_for_eval(encoded, SMALL, shorter_side=shorter_side).numpy()
        np.testing.assert_array_equal(image, expected)
        # Both come from one function: check it against the paper's recipe written out here.
        by_hand = _paper_centre_crop_by_hand(tf.io.decode_jpeg(encoded, channels=3).numpy(), SMALL,
                                             shorter_side)
        np.testing.assert_allclose(expected, by_hand, atol=0.01)  # float32 round-off


def test_ten_crop_is_corners_centre_and_their_mirrors(corpus):
    ten_crops, _ = _all_batches(
        data.build_dataset(
            corpus, label_offset=1, training=False, batch_size=8, image_size=SMALL, ten_crop=True
        )
    )
    centre_crops, _ = _all_batches(
        data.build_dataset(corpus, label_offset=1, training=False, batch_size=8, image_size=SMALL)
    )
    assert ten_crops.shape == (20, 10, SMALL, SMALL, 3)
    np.testing.assert_array_equal(ten_crops[:, 4], centre_crops)
    np.testing.assert_array_equal(ten_crops[:, 5:], ten_crops[:, :5, :, ::-1, :])


def test_ten_crop_of_the_full_image_takes_its_four_corners():
    image = tf.constant(_gradient_image(256, 300), tf.float32)
    crops = augment.ten_crop(image, 100, region="full_image").numpy()
    assert crops[0, 0, 0, :2].tolist() == image[0, 0, :2].numpy().tolist()  # top-left
    assert crops[1, 0, -1, :2].tolist() == image[0, -1, :2].numpy().tolist()  # top-right
    assert crops[2, -1, 0, :2].tolist() == image[-1, 0, :2].numpy().tolist()  # bottom-left
    assert crops[3, -1, -1, :2].tolist() == image[-1, -1, :2].numpy().tolist()  # bottom-right


@pytest.mark.parametrize("crop, shorter_side", [(227, 256), (67, 76)])
def test_crop_window_is_the_crop_of_the_scaled_image(crop, shorter_side):
    for height, width in [(300, 400), (500, 375), (80, 140), (256, 256), (1000, 300)]:
        for seed in range(50):
            top, left, side_y, side_x = augment.random_crop_window(
                height, width, crop, tf.constant([seed, 7]), shorter_side=shorter_side
            ).numpy()
            assert side_y == side_x == round(crop * min(height, width) / shorter_side)
            assert 0 <= top <= height - side_y and 0 <= left <= width - side_x


# The paper's 256, and a --resize_side that makes the same SMALL crop see twice as much.
@pytest.mark.parametrize("shorter_side, window", [(256, 75), (128, 150)])
def test_training_crops_cover_an_image_size_share_of_the_scaled_shorter_side(
        gradient_records, shorter_side, window):
    images, _ = _all_batches(
        data.build_dataset(
            gradient_records, training=True, batch_size=64, image_size=SMALL, lighting=False,
            seed=0, crop_region="full_image", shorter_side=shorter_side,
        )
    )
    pixels = images + imagenet.RGB_MEAN
    # A SMALL crop of the 300x400 image scaled to 256 on its shorter side is a 75-pixel square
    # of the original (75 = SMALL * 300 / 256), whose SMALL samples span 75 * (SMALL - 1) / SMALL
    # pixels; scaled to 128, a 150-pixel square.
    span = window * (SMALL - 1) / SMALL
    red_step = np.abs(pixels[:, :, -1, 0].mean(axis=1) - pixels[:, :, 0, 0].mean(axis=1))
    green_step = pixels[:, -1, :, 1].mean(axis=1) - pixels[:, 0, :, 1].mean(axis=1)
    np.testing.assert_allclose(red_step, span * 255 / 399, atol=1.5)
    np.testing.assert_allclose(green_step, span * 255 / 299, atol=1.5)
    # Over 64 draws the windows wander over the whole image.
    assert pixels[..., 0].min() < 20 and pixels[..., 0].max() > 235
    assert pixels[..., 1].min() < 20 and pixels[..., 1].max() > 235


def test_training_mirrors_about_half_of_the_images(gradient_records):
    images, _ = _all_batches(
        data.build_dataset(
            gradient_records, training=True, batch_size=64, image_size=SMALL, lighting=False,
            seed=1,
        )
    )
    red = images[..., 0]
    mirrored = red[:, :, 0].mean(axis=1) > red[:, :, -1].mean(axis=1)  # red falls to the right
    assert 0.3 < mirrored.mean() < 0.7


def test_lighting_shift_has_the_pca_covariance():
    seeds = tf.random.stateless_uniform(
        [4000, 2], seed=[1, 2], minval=0, maxval=2**31 - 1, dtype=tf.int64
    )
    shifts = tf.vectorized_map(augment.lighting_shift, seeds).numpy().astype(np.float64)
    eigenvectors = imagenet.PCA_EIGENVECTORS.astype(np.float64)
    scaled = imagenet.PCA_NOISE_STDDEV * imagenet.PCA_EIGENVALUES.astype(np.float64) * 255
    expected = eigenvectors @ np.diag(scaled**2) @ eigenvectors.T
    np.testing.assert_allclose(np.cov(shifts.T), expected, atol=0.1 * scaled[0] ** 2)
    # In the eigenbasis each coefficient is alpha_i * lambda_i with alpha_i ~ N(0, 0.1).
    alphas = np.linalg.solve(eigenvectors, shifts.T).T / (imagenet.PCA_EIGENVALUES * 255)
    np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.06)
    np.testing.assert_allclose(alphas.mean(axis=0), [0.0] * 3, atol=0.01)
    assert np.all(np.abs(np.corrcoef(alphas.T) - np.eye(3)) < 0.06)


@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 5, 7, 3), (10, 4, 6, 5, 3), (3, 1, 3)])
def test_fast_per_channel_add_equals_broadcasting_exactly(shape):
    image = tf.random.stateless_uniform(shape, seed=[0, 1], maxval=255.0)
    offset = tf.constant([-123.68, 3.25, 0.001])
    np.testing.assert_array_equal(augment.add_per_channel(image, offset), image + offset)


def test_training_adds_one_colour_shift_per_image(corpus):
    def batch(lighting):
        dataset = data.build_dataset(
            corpus, training=True, batch_size=8, image_size=SMALL, seed=5, lighting=lighting,
            label_offset=1,
        )
        return next(iter(dataset))[0].numpy()

    shift = batch(True) - batch(False)
    per_image = shift[:, :1, :1, :]
    np.testing.assert_allclose(shift, np.broadcast_to(per_image, shift.shape), atol=1e-3)
    assert np.all(np.abs(per_image).max(axis=-1) > 0)
    assert len({tuple(np.round(s.ravel(), 3)) for s in per_image}) == 8


def test_same_seed_same_batches_and_new_crops_every_epoch(corpus):
    def seeded():
        return data.build_dataset(
            corpus, label_offset=1, training=True, batch_size=4, image_size=SMALL, seed=9
        )

    dataset = seeded()
    first_epoch, labels_1 = _all_batches(dataset)
    second_epoch, _ = _all_batches(dataset)
    again, labels_2 = _all_batches(seeded())
    np.testing.assert_array_equal(first_epoch, again)
    np.testing.assert_array_equal(labels_1, labels_2)
    assert not np.array_equal(first_epoch, second_epoch)


@pytest.fixture
def global_seed():
    """Sets TensorFlow's global seed for one test (as `--seed` and keras.utils.set_random_seed
    do), and clears it afterwards."""
    yield tf.random.set_seed
    tf.random.set_seed(None)


def test_a_global_seed_neither_breaks_nor_changes_a_seeded_training_stream(corpus, global_seed):
    """`python -m alexnet_tf.train --seed=0` sets the global seed 0, under which tf.data's
    shuffle with a tensor seed failed (OperatorNotAllowedInGraphError); any other global
    seed changed the order, so a custom loop's `tf.random.set_seed` changed the data."""

    def stream(repeat: bool):
        return _all_batches(data.build_dataset(
            corpus, label_offset=1, training=True, batch_size=4, image_size=SMALL, seed=9,
            repeat=repeat, batches_per_epoch=10 if repeat else None).take(10))

    tf.random.set_seed(None)
    without_images, without_labels = stream(repeat=True)
    for seed in (0, 5):
        global_seed(seed)
        images, labels = stream(repeat=True)
        np.testing.assert_array_equal(labels, without_labels)
        np.testing.assert_array_equal(images, without_images)
        once_images, _ = stream(repeat=False)  # a custom loop's epochs: runs, whole batches
        assert once_images.shape == (20, SMALL, SMALL, 3)


@pytest.mark.parametrize(
    "image_format, mode",
    [("PNG", None), ("PNG", "L"), ("PNG", "RGBA"), ("GIF", None), ("BMP", None), ("JPEG", None)],
)
def test_preprocess_for_eval_reads_any_format(image_format, mode):
    colour = np.array([200, 100, 50], np.uint8)
    pixels = np.broadcast_to(colour, (300, 400, 3)).copy()
    image = data.preprocess_for_eval(tf.constant(_encode(pixels, image_format, mode)), SMALL)
    assert image.shape == (SMALL, SMALL, 3) and image.dtype == tf.float32
    if mode is None and image_format != "JPEG":  # lossless and still RGB: exact
        np.testing.assert_allclose(image.numpy(), np.broadcast_to(colour - imagenet.RGB_MEAN,
                                                                  image.shape), atol=1e-4)


def test_preprocess_for_eval_runs_in_a_serving_graph():
    """The exporter maps it over a batch of request strings inside a tf.function."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(image_bytes):
        return tf.map_fn(
            lambda b: data.preprocess_for_eval(b, SMALL),
            image_bytes,
            fn_output_signature=tf.TensorSpec([SMALL, SMALL, 3], tf.float32),
        )

    png = _encode(_gradient_image(120, 90), "PNG")
    jpeg = _encode(_gradient_image(300, 200), "JPEG")
    batch = serve(tf.constant([png, jpeg]))
    assert batch.shape == (2, SMALL, SMALL, 3)
    np.testing.assert_array_equal(batch[0], data.preprocess_for_eval(tf.constant(png), SMALL))


def test_no_matching_files_is_a_value_error_naming_the_pattern(tmp_path):
    pattern = str(tmp_path / "train-*")
    with pytest.raises(ValueError, match="no files match.*train-\\*"):
        data.build_dataset(pattern, training=True, batch_size=8)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(training=True, ten_crop=True), "ten_crop"),
        (dict(training=False, batch_size=0), "batch_size"),
        (dict(training=False, image_size=300), "image_size"),
        (dict(training=True, image_size=80, shorter_side=76), "image_size must be in \\[1, 76\\]"),
        (dict(training=False, shorter_side=300), "shorter_side"),
        (dict(training=True, shuffle_buffer=0), "shuffle_buffer"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_argument(corpus, arguments, message):
    arguments = {"batch_size": 8, **arguments}
    with pytest.raises(ValueError, match=message):
        data.build_dataset(corpus, label_offset=1, **arguments)


def _image_keys(images):
    return [image.tobytes() for image in images]


def test_files_are_dealt_out_only_when_they_divide_evenly():
    assert data.shards_by_file(1024, 8) and data.shards_by_file(4, 2)
    assert not data.shards_by_file(1024, 3) and not data.shards_by_file(1, 2)
    assert not data.shards_by_file(16, 1)  # one pipeline: nothing to split


@pytest.mark.parametrize("num_shards", [2, 1], ids=["by_file", "by_record"])
def test_two_pipelines_read_disjoint_halves_that_cover_everything(tmp_path, num_shards):
    write_records(str(tmp_path), num_classes=3, images_per_class=4, num_shards=num_shards,
                  min_side=40, max_side=60)
    pattern = str(tmp_path / "train-*")
    everything, _ = _all_batches(
        data.build_dataset(pattern, training=False, batch_size=4, image_size=32)
    )
    halves = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        dataset = data.build_dataset(
            pattern, training=False, batch_size=4, image_size=32, input_context=context
        )
        options = dataset.options().experimental_distribute
        assert options.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
        images, _ = _all_batches(dataset)
        assert max(len(b) for b, _ in dataset) == 2  # the per-replica share of the global 4
        halves.append(_image_keys(images))
    assert len(halves[0]) == len(halves[1]) == 6
    assert not set(halves[0]) & set(halves[1])
    assert sorted(halves[0] + halves[1]) == sorted(_image_keys(everything))


def _batches(dataset, count):
    return [images.numpy() for images, _ in dataset.take(count)]


def test_a_resumed_stream_reads_what_the_uninterrupted_one_reads(corpus):
    """Epoch e (and step k of it) depends on the seed and e alone: resuming repeats nothing."""

    def stream(**resume):
        return data.build_dataset(
            corpus, label_offset=1, training=True, batch_size=4, image_size=SMALL, seed=11,
            repeat=True, batches_per_epoch=3, **resume)

    uninterrupted = _batches(stream(), 9)  # three epochs of three batches
    from_epoch_1 = _batches(stream(first_epoch=1), 6)
    from_epoch_1_step_2 = _batches(stream(first_epoch=1, skip_batches=2), 4)
    np.testing.assert_array_equal(np.stack(from_epoch_1), np.stack(uninterrupted[3:]))
    np.testing.assert_array_equal(np.stack(from_epoch_1_step_2), np.stack(uninterrupted[5:]))
    # 20 records, 12 per epoch: each epoch is its own shuffle and its own crops.
    assert not np.array_equal(uninterrupted[0], uninterrupted[3])


def test_an_epoch_longer_than_the_data_takes_another_pass(corpus):
    dataset = data.build_dataset(
        corpus, label_offset=1, training=True, batch_size=4, image_size=SMALL, seed=2,
        repeat=True, batches_per_epoch=8)  # 32 images from 20 records
    epoch = np.concatenate(_batches(dataset, 8))
    assert len({image.tobytes() for image in epoch}) == 32  # no crop drawn twice


@pytest.mark.parametrize("num_shards", [1, 3, 4], ids=["one_file", "uneven", "by_file"])
def test_two_pipelines_train_on_every_record_once_per_epoch(tmp_path, num_shards):
    """With one shard, the pipelines' per-replica batches of each step also make up exactly
    the global batch a single pipeline yields: the same step on one machine or two."""
    write_records(str(tmp_path), num_classes=4, images_per_class=6, num_shards=num_shards,
                  min_side=40, max_side=60)
    pattern = str(tmp_path / "train-*")
    arguments = dict(training=True, batch_size=8, image_size=32, seed=4, repeat=True,
                     batches_per_epoch=3, lighting=False)
    single = _batches(data.build_dataset(pattern, **arguments), 3)
    shares = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2)
        shares.append(_batches(data.build_dataset(pattern, input_context=context, **arguments), 3))
    assert all(batch.shape[0] == 4 for share in shares for batch in share)
    both = [np.concatenate([shares[0][step], shares[1][step]]) for step in range(3)]
    epoch_keys = sorted(image.tobytes() for batch in both for image in batch)
    assert len(set(epoch_keys)) == 24  # all 24 records, none twice
    assert epoch_keys == sorted(image.tobytes() for batch in single for image in batch)
    if num_shards != 4:  # dealt by record
        for step in range(3):
            assert sorted(_image_keys(both[step])) == sorted(_image_keys(single[step]))


def test_record_keys_are_the_file_index_and_the_position_in_the_file(tmp_path):
    """Each record's augmentation is keyed by (file index << 32) + its position in the file."""
    paths = write_records(str(tmp_path), num_classes=3, images_per_class=3, num_shards=2,
                          min_side=20, max_side=30)
    files = tf.data.Dataset.from_tensor_slices((tf.range(2, dtype=tf.int64), paths))
    keyed = {record.numpy(): int(key)
             for record, key in data._keyed_records(files, cycle_length=2, deterministic=False)}
    expected = {record.numpy(): (index << 32) + position
                for index, path in enumerate(paths)
                for position, record in enumerate(tf.data.TFRecordDataset(path))}
    assert keyed == expected and len(expected) == 9
