"""uint8 crops to the accelerator: the host's share of the augmentation and the step's share.

The values the model trains on must be the paper's augmentation as before: bit for bit where
no resize happens (256x256 records), within the uint8 rounding (0.5) where one does, with the
same statistics, and a saved model that still takes float32 mean-subtracted pixels.
"""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import imagenet
from alexnet_tf.data import augment, device_input
from alexnet_tf.train import steps
from alexnet_tf.data import pipeline as data
from tests.record_fixtures import write_image_records


def _jpeg(pixels: np.ndarray) -> tf.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return tf.constant(buffer.getvalue())


def _host_float_reference(jpeg_bytes, seed, image_size, lighting=True):
    """The training map as it was before the uint8 hand-over: everything in float32 here."""
    crop_seed, flip_seed, lighting_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    image = data.decode_and_random_crop(jpeg_bytes, crop_seed, image_size)
    image = augment.random_flip(image, flip_seed)
    return augment.subtract_mean(image, augment.lighting_shift(lighting_seed) if lighting else None)


def _finished(jpeg_bytes, seed, image_size, lighting=True):
    image, offset = data.augment_for_train(jpeg_bytes, seed, image_size, lighting)
    assert image.dtype == tf.uint8 and offset.dtype == tf.float32
    return device_input.to_model_input(image[tf.newaxis], offset[tf.newaxis])[0].numpy()


@pytest.mark.parametrize("height, width, worst",
                         [(256, 256, 0.0), (256, 300, 0.0), (375, 500, 0.5)],
                         ids=["paper_256", "shorter_side_256", "imagenet_sized"])
def test_finished_crops_equal_the_float_path_to_the_uint8_rounding(height, width, worst):
    """No resize (a 227 window of a 256 image): bit for bit. A resize: within 0.5 of 0..255."""
    pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    jpeg = _jpeg(pixels)
    for number in range(6):
        seed = tf.constant([number, 7], tf.int64)
        expected = _host_float_reference(jpeg, seed, 227).numpy()
        got = _finished(jpeg, seed, 227)
        assert np.abs(got - expected).max() <= worst + 1e-4
        np.testing.assert_array_equal(got, data.preprocess_for_train(jpeg, seed, 227).numpy())


def test_per_image_offsets_are_added_to_their_own_image_exactly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    offsets = rng.normal(0, 50, (3, 3)).astype(np.float32)
    got = device_input.to_model_input(tf.constant(images), tf.constant(offsets)).numpy()
    np.testing.assert_array_equal(got, images.astype(np.float32) + offsets[:, None, None, :])


@pytest.fixture(scope="module")
def many_small_records(tmp_path_factory):
    """1,024 tiny records, enough draws for the lighting statistics."""
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(1024)]
    path = str(tmp_path_factory.mktemp("small") / "train-00000-of-00001")
    return write_image_records(path, pixels, [0] * len(pixels))


def test_training_batches_hand_over_uint8_crops_and_one_offset_per_image(many_small_records):
    dataset = data.build_dataset(many_small_records, training=True, batch_size=32, image_size=8,
                                 seed=4, finish_on_device=True, lighting=False)
    (images, offsets), labels = dataset.element_spec
    assert images.dtype == tf.uint8 and images.shape.as_list() == [32, 8, 8, 3]
    assert offsets.dtype == tf.float32 and offsets.shape.as_list() == [32, 3]
    assert labels.dtype == tf.int32
    (_, offsets), _ = next(iter(dataset))
    np.testing.assert_array_equal(offsets, np.broadcast_to(-imagenet.RGB_MEAN, (32, 3)))


def test_the_handed_over_lighting_has_the_paper_pca_statistics(many_small_records):
    """Section 4.1: one RGB shift per image, alpha_i ~ N(0, 0.1) along the eigenvectors."""
    dataset = data.build_dataset(many_small_records, training=True, batch_size=256,
                                 image_size=8, seed=5, finish_on_device=True)
    shifts = np.concatenate([offsets.numpy() for (_, offsets), _ in dataset]).astype(np.float64)
    shifts += imagenet.RGB_MEAN
    assert shifts.shape == (1024, 3)
    eigenvectors = imagenet.PCA_EIGENVECTORS.astype(np.float64)
    alphas = np.linalg.solve(eigenvectors, shifts.T).T / (imagenet.PCA_EIGENVALUES * 255)
    np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.1)
    np.testing.assert_allclose(alphas.mean(axis=0), [0.0] * 3, atol=0.01)
    assert np.all(np.abs(np.corrcoef(alphas.T) - np.eye(3)) < 0.1)


def test_finishing_on_the_device_gives_the_host_finished_batches(many_small_records):
    arguments = dict(training=True, batch_size=16, image_size=8, seed=6, repeat=True,
                     batches_per_epoch=4)
    on_host = data.build_dataset(many_small_records, **arguments)
    deferred = data.build_dataset(many_small_records, finish_on_device=True, **arguments)
    for (host_images, host_labels), (inputs, labels) in zip(on_host.take(8), deferred.take(8)):
        np.testing.assert_array_equal(device_input.to_model_input(*inputs), host_images)
        np.testing.assert_array_equal(labels, host_labels)


def _tiny_trained_weights(dataset, finish_in_step: bool):
    network = keras.Sequential([
        keras.Input((8, 8, 3), name="images"), keras.layers.Flatten(),
        keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotNormal(1))])
    if finish_in_step:  # the trainer's step; else Keras's own, fed float images
        network = steps.TrainingModel(network)
    network.compile(keras.optimizers.SGD(1e-4, momentum=0.9),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    network.fit(dataset, epochs=1, steps_per_epoch=4, verbose=0)
    return network


def test_a_step_fed_uint8_crops_trains_exactly_like_one_fed_float_images(many_small_records):
    arguments = dict(training=True, batch_size=16, image_size=8, seed=7)
    host = _tiny_trained_weights(data.build_dataset(many_small_records, **arguments), False)
    device = _tiny_trained_weights(
        data.build_dataset(many_small_records, finish_on_device=True, **arguments), True)
    for expected, got in zip(host.get_weights(), device.get_weights()):
        np.testing.assert_array_equal(got, expected)
    # Evaluation and prediction still take the float input the saved model declares.
    assert device.inputs[0].dtype == "float32"
    floats = data.build_dataset(many_small_records, training=False, batch_size=16, image_size=8)
    np.testing.assert_array_equal(device.predict(floats.take(1), verbose=0),
                                  host.predict(floats.take(1), verbose=0))


def test_finish_on_device_is_for_training_only(many_small_records):
    with pytest.raises(ValueError, match="finish_on_device"):
        data.build_dataset(many_small_records, training=False, batch_size=4,
                           finish_on_device=True)
