"""The evaluation preprocessing a model's weights expect, chosen from its model_info.json.

Models trained here evaluate with `data.preprocess_for_eval` ("paper"). Weights imported from
torchvision were trained and measured with torchvision's eval transform, so serving them
with ours would cost accuracy: `torchvision_eval` reproduces that transform in TensorFlow
ops (for the SavedModel, which must not need PIL or torch). Both return what every
alexnet_tf model takes: float32 RGB on the 0..255 scale minus `imagenet.RGB_MEAN`; the
model's own first layer does any further normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from alexnet_tf import augment, data, model_info


def torchvision_eval(
    image_bytes: tf.Tensor,
    crop_size: int = 224,
    resize_shorter_side: int = 256,
    max_pixels: int | None = None,
) -> tf.Tensor:
    """float32 [S, S, 3]: torchvision's `Resize(256)` then `CenterCrop(224)` on a PIL image.

    torchvision sizes the longer side as int(256 * long / short) (truncated, not rounded),
    PIL's bilinear filter widens with the scale when shrinking (antialiasing) and returns
    8-bit pixels, and CenterCrop rounds its offsets with Python's round (half to even, as
    tf.round does). Each of these is a pixel or a rounding step away from our "paper"
    preprocessing; together they decide top-1 on a share of images.
    """
    image = data.decode_image(image_bytes, max_pixels)  # the same checks and limits as "paper"
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    shorter = tf.minimum(height, width)
    longer = tf.maximum(height, width)
    new_longer = (resize_shorter_side * longer) // shorter
    new_height = tf.where(height <= width, resize_shorter_side, new_longer)
    new_width = tf.where(height <= width, new_longer, resize_shorter_side)
    resized = tf.image.resize(
        tf.cast(image, tf.float32), tf.stack([new_height, new_width]),
        method="bilinear", antialias=True,
    )
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    top = tf.cast(tf.round(tf.cast(new_height - crop_size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - crop_size, tf.float32) / 2.0), tf.int32)
    crop = resized[top : top + crop_size, left : left + crop_size, :]
    crop.set_shape([crop_size, crop_size, 3])
    return augment.subtract_mean(crop)


def eval_function(
    info: dict | None, image_size: int, max_pixels: int | None = None
) -> Callable[[tf.Tensor], tf.Tensor]:
    """bytes -> float32 [image_size, image_size, 3], as the record `info` asks (None: "paper").

    Images over `max_pixels` are refused from their headers either way (`data.decode_image`).
    """

    def paper(image_bytes):
        return data.preprocess_for_eval(image_bytes, image_size, max_pixels)

    if info is None:
        return paper
    preprocessing = info["preprocessing"]
    crop_size = preprocessing["crop_size"]
    if crop_size != image_size:
        raise model_info.ModelInfoError(
            f"model_info.json crops {crop_size}x{crop_size}, but the model takes "
            f"{image_size}x{image_size}"
        )
    if preprocessing["name"] == "torchvision":
        shorter_side = preprocessing["resize_shorter_side"]
        return lambda image_bytes: torchvision_eval(image_bytes, crop_size, shorter_side, max_pixels)
    if preprocessing["resize_shorter_side"] != augment.SHORTER_SIDE:
        raise model_info.ModelInfoError(
            f"model_info.json: 'paper' preprocessing resizes to {augment.SHORTER_SIDE}, not "
            f"{preprocessing['resize_shorter_side']}"
        )
    return paper
