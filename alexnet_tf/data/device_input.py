"""The training input's last step, run on the accelerator as the first step of each training step.

The host hands over uint8 crops (already cropped, resized and mirrored) and one float32 offset
per image (minus the ImageNet mean plus that image's PCA lighting draw, computed from the
image's own seed, `augment.pixel_offset`); the training step casts and adds them. That is a
quarter of the bytes of float32 images to batch, copy and transfer (a 256 x 227 x 227 x 3 batch
is 40 MB as uint8, 158 MB as float32), and the per-pixel float work moves off the CPU cores
that also decode the JPEGs. Each pixel is still one float32 addition of the same two numbers
as `augment.subtract_mean` makes on the host, so the model sees the same values.

Only the training step changes: `model.keras`, export, serving, evaluation and validation keep
the model's input contract, float32 mean-subtracted pixels ("images" [batch, S, S, 3]).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def to_model_input(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """float32 [B, H, W, 3] model input from uint8 [B, H, W, 3] crops and [B, 3] offsets.

    Adds the offsets to rows of W pixels ([B, H, W * 3] + [B, 1, W * 3]) rather than
    broadcasting over an innermost axis of 3, which TensorFlow's CPU kernel does slowly (see
    `augment.add_per_channel`); the sums are the same float32 additions either way.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    rows = tf.reshape(tf.cast(images, tf.float32), [batch, height, width * 3])
    row_offsets = tf.tile(tf.cast(offsets, tf.float32), [1, width])[:, tf.newaxis, :]
    return tf.reshape(rows + row_offsets, shape)


def is_deferred(inputs) -> bool:
    """Whether a batch's inputs are (uint8 crops, offsets) still to be finished on the device."""
    return isinstance(inputs, (tuple, list)) and len(inputs) == 2


def finish_batch(inputs, labels):
    """A dataset map that does on the host what the training step does on the device."""
    return (to_model_input(*inputs) if is_deferred(inputs) else inputs), labels


def finish_in_train_step(model: keras.Model, image_size: int) -> None:
    """Makes `model.fit` accept (uint8 crops, offsets) batches and finish them in the step.

    Wraps whatever `train_step` the model has by then (Keras's, the per-replica XLA step of
    `distribution.compile_replica_step_with_xla`, the multi-worker one), so call it last.
    Batches of float images (synthetic data) pass through unchanged. The wrapper is an
    attribute of this Python object only: `model.save` writes the same model as before.
    """
    step = model.train_step

    def train_step(data):
        inputs, labels = data[0], data[1]
        if is_deferred(inputs):
            inputs = to_model_input(*inputs)
        return step((inputs, labels))

    model.train_step = train_step
    if getattr(model, "_distribute_strategy", None) is not None and (
            "_maybe_symbolic_build" not in vars(model)):
        # Under a strategy Keras builds the metrics from the first batch it reads, by calling
        # the model on it; a (crops, offsets) pair is not the model's input. Build from the
        # model's own input signature instead.
        spec = (tf.TensorSpec([None, image_size, image_size, 3], tf.float32),
                tf.TensorSpec([None], tf.int32))

        def build_from_spec(iterator=None, data_batch=None):
            with model.distribute_strategy.scope():
                model._symbolic_build(data_batch=spec)

        model._maybe_symbolic_build = build_from_spec
