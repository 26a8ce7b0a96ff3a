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
