"""The evaluation preprocessing a model's weights expect, chosen from its model_info.json.

Models trained here evaluate with `data.preprocess_for_eval` ("paper"); those trained on resized
records first scale an image as the converter did (`records_resize`). Weights imported from
torchvision were trained and measured with torchvision's eval transform, so serving them
with ours would cost accuracy: `torchvision_eval` reproduces that transform in TensorFlow
ops (for the SavedModel, which must not need PIL or torch). Both return what every
alexnet_tf model takes: float32 RGB on the 0..255 scale minus `imagenet.RGB_MEAN`; the
model's own first layer does any further normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from alexnet_tf.data import augment, records_resize
from alexnet_tf.data import pipeline as data
from alexnet_tf.model import model_info

ACCURATE_IDCT = "INTEGER_ACCURATE"  # tf.io.decode_jpeg's name for libjpeg's JDCT_ISLOW


def _torchvision_resized(
    image_bytes: tf.Tensor, resize_shorter_side: int, max_pixels: int | None
) -> tf.Tensor:
    """float32 [H, W, 3]: torchvision's `Resize(256)` on a PIL image, back on whole 8-bit steps.

    torchvision sizes the longer side as int(256 * long / short) (truncated, not rounded),
    and PIL's bilinear filter widens with the scale when shrinking (antialiasing) and returns
    8-bit pixels.
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
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def _torchvision_center_crop(image: tf.Tensor, crop_size: int) -> tf.Tensor:
    """CenterCrop: offsets rounded with Python's round (half to even, as tf.round does)."""
    shape = tf.shape(image)
    top = tf.cast(tf.round(tf.cast(shape[0] - crop_size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(shape[1] - crop_size, tf.float32) / 2.0), tf.int32)
    return image[top : top + crop_size, left : left + crop_size, :]


def torchvision_eval(
    image_bytes: tf.Tensor,
    crop_size: int = 224,
    resize_shorter_side: int = 256,
    max_pixels: int | None = None,
) -> tf.Tensor:
    """float32 [S, S, 3]: torchvision's `Resize(256)` then `CenterCrop(224)` on a PIL image.

    The truncated longer side, PIL's antialiasing and 8-bit rounding, and CenterCrop's
    half-to-even offsets are each a pixel or a rounding step away from our "paper"
    preprocessing; together they decide top-1 on a share of images.
    """
    resized = _torchvision_resized(image_bytes, resize_shorter_side, max_pixels)
    crop = _torchvision_center_crop(resized, crop_size)
    crop.set_shape([crop_size, crop_size, 3])
    return augment.subtract_mean(crop)


def torchvision_ten_crop(
    image_bytes: tf.Tensor,
    crop_size: int = 224,
    resize_shorter_side: int = 256,
    crop_region: str = "full_image",
    max_pixels: int | None = None,
) -> tf.Tensor:
    """float32 [10, S, S, 3]: torchvision's `TenCrop` after its `Resize`, mean subtracted.

    TenCrop takes the corners of the whole resized image ("full_image") and torchvision's
    centre crop, then the same five of the mirrored image; mirrored corners are the mirrors
    of the corners, so `augment.ten_crop` gives those (in another order, which the averaged
    softmax does not see).
    """
    resized = _torchvision_resized(image_bytes, resize_shorter_side, max_pixels)
    crops = augment.ten_crop(resized, crop_size, crop_region)
    centre = _torchvision_center_crop(resized, crop_size)
    # The centre crop of the mirrored image: on an odd margin, round-half-even puts it one
    # pixel from the mirror of the centre crop.
    mirrored_centre = _torchvision_center_crop(tf.image.flip_left_right(resized), crop_size)
    crops = tf.concat(
        [crops[:4], centre[tf.newaxis], crops[5:9], mirrored_centre[tf.newaxis]], axis=0
    )
    crops.set_shape([10, crop_size, crop_size, 3])
    return augment.subtract_mean(crops)


def default_crop_region(info: dict | None) -> str:
    """Where a model's own ten-crop protocol puts its corners: the paper's central square for
    models trained here, the whole resized image for torchvision's weights (its TenCrop)."""
    if info is not None and info["preprocessing"]["name"] == "torchvision":
        return "full_image"
    return augment.PAPER_CROP_REGION


def check_fits(info: dict, image_size: int) -> dict:
    """The record's preprocessing if it fits a model of `image_size` inputs; else a
    ModelInfoError naming the mismatch."""
    preprocessing = info["preprocessing"]
    crop_size = preprocessing["crop_size"]
    if crop_size != image_size:
        raise model_info.ModelInfoError(
            f"model_info.json crops {crop_size}x{crop_size}, but the model takes "
            f"{image_size}x{image_size}"
        )
    # Larger would let a served image's resized copy outgrow what serving's limits allow for.
    if (preprocessing["name"] == "paper"
            and preprocessing["resize_shorter_side"] > augment.SHORTER_SIDE):
        raise model_info.ModelInfoError(
            f"model_info.json: 'paper' preprocessing resizes to at most {augment.SHORTER_SIDE}, "
            f"not {preprocessing['resize_shorter_side']}"
        )
    return preprocessing


def _preparation(info: dict | None, image_size: int) -> tuple[str, int, dict | None]:
    """What eval_function and ten_crop_function dispatch on: the record's scheme, its shorter
    side and its resized records' settings (None: originals); no record: the paper's at 256."""
    if info is None:
        return "paper", augment.SHORTER_SIDE, None
    preprocessing = check_fits(info, image_size)
    return (preprocessing["name"], preprocessing["resize_shorter_side"],
            preprocessing.get(model_info.RECORDS_RESIZE))


def ten_crop_function(
    info: dict | None, image_size: int, crop_region: str | None = None
) -> Callable[[tf.Tensor], tf.Tensor]:
    """bytes -> float32 [10, image_size, image_size, 3], the ten crops as `info` prepares them.

    `crop_region` None: the model's own (`default_crop_region`).
    """
    crop_region = crop_region or default_crop_region(info)
    scheme, shorter_side, records = _preparation(info, image_size)
    if scheme == "torchvision":
        return lambda image_bytes: torchvision_ten_crop(
            image_bytes, image_size, shorter_side, crop_region)
    if records is not None:
        decode = _decode_as_records_hold(records, None)
        return lambda image_bytes: data.ten_crops(
            decode(image_bytes), image_size, crop_region, shorter_side)
    return lambda image_bytes: data.preprocess_for_ten_crop(
        image_bytes, image_size, crop_region, shorter_side)


def _decode_as_records_hold(
    records: dict, max_pixels: int | None
) -> Callable[[tf.Tensor], tf.Tensor]:
    """bytes -> uint8 image as the resized records the model trained on hold it.

    An original the converter resizes is decoded as its Pillow decodes it (libjpeg's accurate
    IDCT, not TF's fast default; mean |diff| to the record 1.6 -> 0.9); one it stores as sent,
    and the records' JPEG round trip in `as_records_hold`, as training decodes records."""
    shorter_side, center_crop = records["shorter_side"], records["center_crop"]

    def decode(image_bytes):
        accurate = data.decode_image(image_bytes, max_pixels, jpeg_dct_method=ACCURATE_IDCT)
        shape = tf.shape(accurate)
        image = tf.cond(
            records_resize.stored_as_sent(shape[0], shape[1], shorter_side, center_crop),
            lambda: data.decode_image(image_bytes, max_pixels),
            lambda: accurate,
        )
        return records_resize.as_records_hold(image, shorter_side, center_crop,
                                              records.get("jpeg_quality"))

    return decode


def eval_function(
    info: dict | None, image_size: int, max_pixels: int | None = None
) -> Callable[[tf.Tensor], tf.Tensor]:
    """bytes -> float32 [image_size, image_size, 3], as the record `info` asks (None: "paper").

    Images over `max_pixels` are refused from their headers either way (`data.decode_image`).
    """
    scheme, shorter_side, records = _preparation(info, image_size)
    if scheme == "torchvision":
        return lambda image_bytes: torchvision_eval(
            image_bytes, image_size, shorter_side, max_pixels)
    if records is not None:
        decode = _decode_as_records_hold(records, max_pixels)
        return lambda image_bytes: data.eval_crop(decode(image_bytes), image_size, shorter_side)
    return lambda image_bytes: data.preprocess_for_eval(
        image_bytes, image_size, max_pixels, shorter_side)
