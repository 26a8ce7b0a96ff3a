"""The paper's image geometry and data augmentation, as small graph-compatible ops.

Krizhevsky et al. (2012), section 2: images are rescaled so the shorter side is 256 pixels.
Section 4.1: training takes random 224x224 patches (227 in the ports that make the arithmetic
of conv1 work) and their horizontal reflections, and adds multiples of the RGB principal
components ("lighting"); testing averages the predictions on the four corner patches, the
centre patch and their reflections (ten crops).

Every random op here is stateless and takes an explicit `seed` of shape [2], so the input
pipeline can hand each image its own seed and a fixed `--seed` reproduces a run.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf import imagenet

# Paper, section 2: "rescaled the image such that the shorter side was of length 256".
SHORTER_SIDE = 256


def scaled_size(height: tf.Tensor, width: tf.Tensor, shorter_side: int = SHORTER_SIDE):
    """(height, width) after scaling the image so its shorter side is `shorter_side`.

    The shorter side is set exactly (no float round-off), the longer side is rounded.
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = shorter_side / tf.minimum(height, width)
    new_height = tf.where(height <= width, float(shorter_side), tf.round(height * scale))
    new_width = tf.where(width < height, float(shorter_side), tf.round(width * scale))
    return tf.cast(new_height, tf.int32), tf.cast(new_width, tf.int32)


def resize_shorter_side(image: tf.Tensor, shorter_side: int = SHORTER_SIDE) -> tf.Tensor:
    """float32 image whose shorter side is `shorter_side`; bilinear, no antialiasing.

    Antialiasing stays off everywhere (evaluation, serving and the training crops) so that the
    model sees the same kind of pixels at training and test time. The image is resized in its
    own dtype, which gives the same values as `resize_bilinear`'s float32 copy without that
    copy: 0.6 GB for a 50 MP image at serving.
    """
    shape = tf.shape(image)
    new_height, new_width = scaled_size(shape[0], shape[1], shorter_side)
    size = tf.stack([new_height, new_width])
    return tf.image.resize(image, size, method="bilinear", antialias=False)


def resize_bilinear(image: tf.Tensor, size) -> tf.Tensor:
    """float32 bilinear resize without antialiasing, the one resize used everywhere.

    Casting to float first gives the same values as resizing the uint8 image, faster: 0.17 ms
    against 0.29 ms for a 332x332 window to 227x227 on one CPU core (measured).
    """
    return tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=False)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The central size x size patch; the image must be at least that large."""
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size, :]


# Where the training crops and the ten test crops may lie (section 2: "down-sampled the
# images to a fixed resolution of 256 x 256 [...] cropped out the central 256x256 patch"):
# "central_square" is the paper's, the central 256x256 patch of the image scaled to 256 on its
# shorter side; "full_image" lets them range over the whole scaled image (wider on oblong
# images, e.g. columns 0-114 of a 256x341 image instead of 42-71).
CROP_REGIONS = ("central_square", "full_image")
PAPER_CROP_REGION = "central_square"


def crop_region_bounds(height, width, region: str = PAPER_CROP_REGION):
    """(top, left, rows, columns) of the part of a height x width image that crops come from."""
    if region not in CROP_REGIONS:
        raise ValueError(f"crop region must be one of {CROP_REGIONS}, got {region!r}")
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    if region == "full_image":
        return tf.constant(0, tf.int32), tf.constant(0, tf.int32), height, width
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def random_crop_window(
    height: tf.Tensor, width: tf.Tensor, crop_size: int, seed: tf.Tensor,
    region: str = PAPER_CROP_REGION, shorter_side: int = SHORTER_SIDE,
) -> tf.Tensor:
    """[top, left, side, side] in ORIGINAL pixels of a random crop taken after scaling to
    `shorter_side` (the paper's 256).

    A crop_size x crop_size patch of the image scaled to `shorter_side` covers a square of side
    crop_size * shorter / shorter_side in the original image. Returning that window lets
    the pipeline decode only it (`tf.image.decode_and_crop_jpeg`) and resize it to crop_size,
    instead of decoding and resizing the whole image only to throw most of it away. The
    position is uniform over the windows that fit in `region` (see CROP_REGIONS): on a 500x375
    original, columns 62-104 for the paper's central square, 0-167 for the full image.
    """
    region_top, region_left, region_rows, region_columns = crop_region_bounds(
        height, width, region
    )
    shorter = tf.minimum(tf.cast(height, tf.int32), tf.cast(width, tf.int32))
    side = tf.cast(
        tf.round(tf.cast(shorter, tf.float32) * (crop_size / shorter_side)), tf.int32
    )
    side = tf.clip_by_value(side, 1, shorter)
    top = region_top + tf.random.stateless_uniform(
        [], seed=seed, minval=0, maxval=region_rows - side + 1, dtype=tf.int32
    )
    left = region_left + tf.random.stateless_uniform(
        [], seed=tf.random.experimental.stateless_fold_in(seed, 1),
        minval=0, maxval=region_columns - side + 1, dtype=tf.int32,
    )
    return tf.stack([top, left, side, side])


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirrors the image left-right with probability 1/2 (paper, section 4.1)."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def lighting_shift(seed: tf.Tensor, stddev: float = imagenet.PCA_NOISE_STDDEV) -> tf.Tensor:
    """The RGB offset (0..255 scale) that PCA colour noise adds to every pixel of one image.

    Paper, section 4.1: add [p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T with a_i ~ N(0, 0.1) drawn
    once per image, where p_i, l_i are the eigenvectors and eigenvalues of the RGB covariance.
    The published eigenvalues are for 0..1 pixels, hence the factor 255.
    """
    alpha = tf.random.stateless_normal([3], seed=seed, stddev=stddev)
    eigenvectors = tf.constant(imagenet.PCA_EIGENVECTORS)
    eigenvalues = tf.constant(imagenet.PCA_EIGENVALUES)
    return tf.linalg.matvec(eigenvectors, alpha * eigenvalues) * 255.0


def subtract_mean(image: tf.Tensor, lighting: tf.Tensor | None = None) -> tf.Tensor:
    """Centres pixels on the training-set mean (paper, section 2), adding `lighting` if given.

    Adding the lighting shift in the same op saves a pass over every training image.
    """
    return add_per_channel(tf.cast(image, tf.float32), pixel_offset(lighting))


def pixel_offset(lighting: tf.Tensor | None = None) -> tf.Tensor:
    """The [3] float32 offset `subtract_mean` adds to every pixel: minus the mean, plus `lighting`.

    Training computes it per image on the host (from the image's seed) and hands it to the
    accelerator with the uint8 crop (`alexnet_tf.data.device_input`), which adds it there.
    """
    offset = -tf.constant(imagenet.RGB_MEAN)
    if lighting is not None:
        offset += lighting
    return offset


def add_per_channel(image: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """`image + offset` for an [..., W, 3] image and a [3] offset, the same values, faster.

    TensorFlow's CPU kernel broadcasts over an innermost axis of 3 slowly: about 0.25 ms for
    one 227x227x3 image, a quarter of its JPEG decode. Viewing the image as rows of W pixels
    ([-1, W * 3]) and adding the offset repeated W times broadcasts over the outer axis
    instead, which Eigen vectorizes: 0.03 ms (0.09 ms for the matmul-by-ones spelling this
    replaced; one CPU core, measured). Each sum is still one float32 addition of the same two
    numbers, so the result is bit for bit `image + offset`.
    """
    shape = tf.shape(image)
    width = shape[-2]
    rows = tf.reshape(image, [-1, width * 3])
    return tf.reshape(rows + tf.tile(offset, [width])[tf.newaxis], shape)


def ten_crop(image: tf.Tensor, size: int, region: str = PAPER_CROP_REGION) -> tf.Tensor:
    """[10, size, size, C]: four corners, centre, then the same five mirrored (paper, 4.1).

    The corners are those of `region` (the central square by default: columns 42 and 71 of a
    256x341 image, where "full_image" gives 0 and 114). Crop k + 5 is the left-right reflection
    of crop k, and crop 4 (the fifth) is exactly `center_crop(image, size)`, which is what
    single-crop evaluation and serving use (it can sit one pixel off the central square's own
    centre when the two margins round differently).
    """
    region_top, region_left, region_rows, region_columns = crop_region_bounds(
        tf.shape(image)[0], tf.shape(image)[1], region
    )
    top, left = region_top, region_left
    bottom = region_top + region_rows - size
    right = region_left + region_columns - size
    crops = [
        image[top : top + size, left : left + size, :],
        image[top : top + size, right : right + size, :],
        image[bottom : bottom + size, left : left + size, :],
        image[bottom : bottom + size, right : right + size, :],
        center_crop(image, size),
    ]
    crops += [tf.image.flip_left_right(crop) for crop in crops]
    return tf.stack(crops)
