"""The converter's `--resize_shorter_side [--center_crop]` in TensorFlow ops, for serving.

A model trained on resized records saw images the converter had scaled down with Pillow's
antialiased Lanczos filter (`convert/resize.py`) and stored in 8 bits. Evaluating or serving
an original photo with the paper's bilinear resize alone, without antialiasing, shows it
aliased pixels it never trained on (issue 20: mean |diff| 12.7 on a 4000x3000 photo-like
image). So the served graph first does what the converter did: the same sizes (the shorter
side exact, the longer rounded half to even), Lanczos-3 with antialiasing, 8-bit rounding, the
central square at floor offsets, the records' JPEG at their quality; then the evaluation's own
resize and centre crop follow.

Not emulated: Pillow decodes a large JPEG at 1/2..1/8 scale in libjpeg before the Lanczos
(`Image.draft`), and its two resampling passes round to 8 bits in between. Pillow's accurate
IDCT is matched by the caller (`eval_preprocessing`): it decodes the original with
dct_method="INTEGER_ACCURATE", which took the mean |diff| to the records from about 1.6 to 0.9
on the 0..255 scale (tests/test_eval_preprocessing.py).
"""

from __future__ import annotations

import tensorflow as tf


def converter_size(height: tf.Tensor, width: tf.Tensor, shorter_side: int):
    """(height, width) the converter scales an image to: `convert.resize.geometry`'s rule, in
    float64 as Python computes it, and the image as is when it is no larger."""
    height64 = tf.cast(height, tf.float64)
    width64 = tf.cast(width, tf.float64)
    scale = shorter_side / tf.minimum(height64, width64)
    scaled_height = tf.cast(tf.round(height64 * scale), tf.int32)
    scaled_width = tf.cast(tf.round(width64 * scale), tf.int32)
    new_height = tf.where(height <= width, shorter_side, scaled_height)
    new_width = tf.where(width < height, shorter_side, scaled_width)
    larger = tf.minimum(height, width) > shorter_side
    return tf.where(larger, new_height, height), tf.where(larger, new_width, width)


def stored_as_sent(height: tf.Tensor, width: tf.Tensor, shorter_side: int,
                   center_crop: bool) -> tf.Tensor:
    """Whether the converter stores an image of this size unchanged (its own bytes: no resize,
    no crop), so that training decodes the very bytes a client sends."""
    new_height, new_width = converter_size(height, width, shorter_side)
    unchanged = tf.logical_and(tf.equal(new_height, height), tf.equal(new_width, width))
    if center_crop:
        unchanged = tf.logical_and(unchanged, tf.equal(height, width))
    return unchanged


def as_records_hold(
    image: tf.Tensor, shorter_side: int, center_crop: bool, jpeg_quality: int | None = None
) -> tf.Tensor:
    """uint8 [H', W', 3]: a decoded image as `--resize_shorter_side=shorter_side
    [--center_crop]` stores it; with `jpeg_quality`, through the records' JPEG as well (the
    converter encodes a changed image once, 4:2:0, and TensorFlow's libjpeg encodes alike)."""
    shape = tf.shape(image)
    height, width = converter_size(shape[0], shape[1], shorter_side)
    unchanged = stored_as_sent(shape[0], shape[1], shorter_side, center_crop)

    def scaled():
        resized = tf.image.resize(image, tf.stack([height, width]), method="lanczos3",
                                  antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    same_size = tf.logical_and(tf.equal(height, shape[0]), tf.equal(width, shape[1]))
    image = tf.cond(same_size, lambda: image, scaled)
    if center_crop:
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top : top + side, left : left + side, :]
    if jpeg_quality is None:
        return image

    def as_stored():
        encoded = tf.io.encode_jpeg(image, quality=jpeg_quality, chroma_downsampling=True)
        return tf.io.decode_jpeg(encoded, channels=3)

    return tf.cond(unchanged, lambda: image, as_stored)


__all__ = ["as_records_hold", "converter_size", "stored_as_sent"]
