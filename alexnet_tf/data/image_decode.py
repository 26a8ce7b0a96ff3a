"""Bounded decoding of client images into the RGB pixels the training records hold, in TF ops.

Two jobs, both for `data.decode_image` and so for the serving graph and `predict`:

- **Bounded.** Each image's size is read from its header (`image_headers`) and the image is
  refused with InvalidArgument, before any decoder runs, if it has more than `max_pixels`
  pixels, an empty size, or a malformed header. An animated GIF is cut after its first frame,
  so the decoder never sees the rest (`tf.io.decode_gif` decodes every frame, even under
  `decode_image(expand_animations=False)`); animated WebP is refused.
- **Work bounded by pixels, not bytes.** Sizes are read where and as each decoder reads them
  (JPEG by libjpeg's own header reader). A JPEG of more than `MAX_JPEG_SCANS` (100) scans is
  refused, since each progressive scan is decoded over every pixel again; a GIF's sub-blocks
  are walked in runs of one length, at most `MAX_GIF_SUB_BLOCK_RUNS` (1,024) runs. Padding
  costs a few ms per MB: a 1 MP image with 4 MB of comments, text chunks or sub-blocks
  decodes or is refused in 12-73 ms of CPU; what remains grows with pixels x scans (1 MP with
  100 heavy scans: ~0.25 s). `benchmarks/serving_decode_work.py` measures it.
- **The same pixels as training.** The converter (`convert/images.py`) composites RGBA, LA and
  palette-with-transparency images over white with Pillow and scales 16-bit grayscale to 8 bits
  with rounding; `decode_image(channels=3)` would drop the alpha (transparent areas turn black
  or garbage) and keep the high byte. The same rules are applied here with Pillow's integer
  arithmetic, so a PNG sent to the server gives exactly the pixels the converter JPEG-encodes.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf.data import image_headers as headers

# Every photograph a camera or phone takes passes: 45.7 MP full-frame bodies (Nikon D850/Z8,
# 8256x5504), 48 and 50 MP phone sensors at full resolution (8064x6048, 8160x6120). Above that
# are 61 MP and medium-format bodies and 200 MP phone modes: raise --max_pixels to serve those.
DEFAULT_MAX_PIXELS = 50_000_000
_PALETTE_OR_ALPHA_PNG = (3, 4, 6)  # PNG colour types whose alpha the converter honours
_GRAY_PNG = 0
_BYTE_STRINGS = [bytes([value]) for value in range(256)]
_HEX_DIGITS = [f"{value:02x}" for value in range(256)]


def _refusal(image_format: str, height, width, problem: tf.Tensor, max_pixels: int | None):
    """The reason to refuse this image, or "" to decode it."""
    size = tf.strings.format("{}x{}", (width, height))
    reason = tf.where(
        tf.not_equal(problem, ""), problem, tf.constant("", tf.string)
    )
    empty = tf.logical_or(height <= 0, width <= 0)
    reason = tf.where(
        tf.logical_and(tf.equal(reason, ""), empty),
        tf.strings.join([image_format, " with an empty size ", size]),
        reason,
    )
    if max_pixels is not None:
        over = height * width > max_pixels
        reason = tf.where(
            tf.logical_and(tf.equal(reason, ""), over),
            tf.strings.join(
                [
                    image_format,
                    " of ",
                    size,
                    f" pixels is over the limit of {max_pixels:,} pixels per image "
                    "(set by alexnet_tf.export --max_pixels)",
                ]
            ),
            reason,
        )
    return reason


def _refuse_unless_fine(reasons: list[tf.Tensor]) -> tf.Operation:
    reason = reasons[0]
    for other in reasons[1:]:
        reason = tf.where(tf.equal(reason, ""), other, reason)
    return tf.debugging.Assert(tf.equal(reason, ""), [reason], name="refuse_image")


def composite_over_white(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3]: RGBA pixels over an opaque white background, as Pillow's
    `Image.alpha_composite` computes it (libImaging/AlphaComposite.c, 7 bits of precision).

    Over opaque white, Pillow's ((m >> 8) + m) >> 15, with m = 128 * (c * a + 255 * (255 - a)
    + 128), equals (c * a + 127) // 255 + 255 - a for every colour c and alpha a (checked on
    all 65,536 pairs by the tests). c * a + 127 <= 65,152 fits uint16, so a 50 MP image costs
    0.3 GB for its one 16-bit step, where int32 arithmetic held several 0.6 GB tensors.
    """
    alpha = pixels[..., 3:]
    if_opaque = pixels[..., :3]

    def composite():
        colour = tf.cast(pixels[..., :3], tf.uint16) * tf.cast(alpha, tf.uint16) + 127
        return tf.cast(colour // 255, tf.uint8) + (255 - alpha)

    return tf.cond(tf.reduce_all(tf.equal(alpha, 255)), lambda: if_opaque, composite)


def _decode_jpeg(image_bytes, max_pixels, dct_method=""):
    height, width, problem = headers.jpeg_size(image_bytes)
    reasons = [_refusal("JPEG", height, width, problem, max_pixels)]
    if max_pixels is not None:  # a hostile client: bound the scans, each decoded over every pixel
        scans = headers.jpeg_scan_count(image_bytes)
        reasons.append(
            tf.where(
                scans > headers.MAX_JPEG_SCANS,
                f"JPEG of over {headers.MAX_JPEG_SCANS} scans is over the limit of "
                f"{headers.MAX_JPEG_SCANS} scans per image (libjpeg decodes each over every pixel)",
                "",
            )
        )
    with tf.control_dependencies([_refuse_unless_fine(reasons)]):
        return tf.io.decode_jpeg(image_bytes, channels=3, dct_method=dct_method)


def _rounded_to_8_bits(wide: tf.Tensor) -> tf.Tensor:
    """The converter's (v * 255 + 32767) // 65535 for 16-bit v, in uint16: with v = 257k + r
    that is k + (r >= 129), as 65535 = 255 * 257."""
    whole = wide // 257
    rest = wide - whole * 257
    return tf.cast(whole, tf.uint8) + tf.cast(rest >= 129, tf.uint8)


def _decode_png(image_bytes, max_pixels):
    height, width, bit_depth, color_type, problem = headers.png_size(image_bytes)
    check = _refuse_unless_fine([_refusal("PNG", height, width, problem, max_pixels)])

    def gray_sixteen_bit():
        # The converter rounds 16-bit gray to 8 bits; one channel, rounded in 16 bits, keeps
        # a 50 MP image at 0.1 GB where four int32 channels took 0.8 GB.
        gray = _rounded_to_8_bits(tf.io.decode_png(image_bytes, channels=1, dtype=tf.uint16))
        return tf.tile(gray, [1, 1, 3])

    def other():
        # For 16-bit colour, gray-alpha and RGBA, Pillow keeps the high byte, which is what
        # libpng's 8-bit output of them is (png_set_strip_16).
        # Gray and RGB PNGs may carry a tRNS colour key, which the converter ignores.
        honours_alpha = tf.reduce_any(tf.equal(color_type, _PALETTE_OR_ALPHA_PNG))
        return tf.cond(
            honours_alpha,
            lambda: composite_over_white(tf.io.decode_png(image_bytes, channels=4)),
            lambda: tf.io.decode_png(image_bytes, channels=3),
        )

    with tf.control_dependencies([check]):
        gray_16 = tf.logical_and(tf.equal(bit_depth, 16), tf.equal(color_type, _GRAY_PNG))
        return tf.cond(gray_16, gray_sixteen_bit, other)


def _replace_bytes(text: tf.Tensor, first_at, first: tf.Tensor, second_at, second: tf.Tensor, length: int = 3):
    """`text` with the byte at `first_at` replaced by `first` (one byte) and the `length`
    bytes at `second_at` by `second`, in whichever order they lie."""
    def in_order(a_at, a, a_length, b_at, b, b_length):
        return tf.strings.join(
            [
                _substr(text, 0, a_at),
                a,
                _substr(text, a_at + a_length, b_at - a_at - a_length),
                b,
                _substr(text, b_at + b_length, -1),
            ]
        )

    return tf.cond(
        first_at < second_at,
        lambda: in_order(first_at, first, 1, second_at, second, length),
        lambda: in_order(second_at, second, length, first_at, first, 1),
    )


def _substr(text: tf.Tensor, position, length) -> tf.Tensor:
    return tf.strings.substr(text, tf.cast(position, tf.int64), tf.cast(length, tf.int64))


def _decode_gif(image_bytes, max_pixels):
    frame = headers.gif_first_frame(image_bytes)
    check = _refuse_unless_fine(
        [
            _refusal("GIF", frame["screen_height"], frame["screen_width"], frame["problem"], max_pixels),
            _refusal("GIF frame", frame["frame_height"], frame["frame_width"], frame["problem"], max_pixels),
        ]
    )
    with tf.control_dependencies([check]):  # the frame's data is walked only once accepted
        frame_end, problem = headers.gif_frame_end(image_bytes, frame["image_data_at"])
    with tf.control_dependencies([_refuse_unless_fine([problem])]):
        one_frame = tf.strings.join([_substr(image_bytes, 0, frame_end), b"\x3b"])

    def transparent_to_white():
        # The transparent colour becomes opaque white, as the converter's composite makes it.
        flags = tf.bitwise.bitwise_and(frame["control_flags"], 0xFE)
        return _replace_bytes(
            one_frame,
            frame["control_at"],
            tf.gather(_BYTE_STRINGS, flags),
            frame["transparent_at"],
            tf.constant(b"\xff\xff\xff"),
        )

    one_frame = tf.cond(frame["control_at"] >= 0, transparent_to_white, lambda: one_frame)
    return tf.io.decode_gif(one_frame)[0]


def _decode_bmp(image_bytes, max_pixels):
    height, width, problem = headers.bmp_size(image_bytes)
    with tf.control_dependencies([_refuse_unless_fine([_refusal("BMP", height, width, problem, max_pixels)])]):
        return tf.io.decode_bmp(image_bytes, channels=3)


def _decode_webp(image_bytes, max_pixels):
    height, width, animated, problem = headers.webp_size(image_bytes)
    problem = tf.where(
        tf.logical_and(animated, tf.equal(problem, "")),
        "animated WebP is not served: send one frame as PNG or JPEG",
        problem,
    )
    with tf.control_dependencies([_refuse_unless_fine([_refusal("WebP", height, width, problem, max_pixels)])]):
        pixels = tf.io.decode_webp(image_bytes)[0]  # [1, H, W, 3 or 4] for a still image
    return tf.cond(
        tf.shape(pixels)[-1] == 4, lambda: composite_over_white(pixels), lambda: pixels[..., :3]
    )


def _refuse_unknown(image_bytes):
    start = tf.strings.substr(image_bytes, 0, 8)
    reason = tf.strings.join(
        ["not a JPEG, PNG, GIF, BMP or WebP image (its first bytes: ", _hex(start), ")"]
    )
    with tf.control_dependencies([tf.debugging.Assert(False, [reason], name="refuse_image")]):
        return tf.zeros([1, 1, 3], tf.uint8)


def _hex(text: tf.Tensor) -> tf.Tensor:
    digits = tf.gather(_HEX_DIGITS, tf.cast(tf.io.decode_raw(text, tf.uint8), tf.int32))
    return tf.strings.reduce_join(digits, separator=" ")


def decode_image(
    image_bytes: tf.Tensor, max_pixels: int | None = DEFAULT_MAX_PIXELS, jpeg_dct_method: str = ""
) -> tf.Tensor:
    """uint8 [H, W, 3] from JPEG, PNG, GIF (first frame), BMP or WebP bytes, as the records
    hold it; InvalidArgument naming the fault for an image over `max_pixels` (None: no limit),
    with a malformed header, or in another format.

    `jpeg_dct_method`: `tf.io.decode_jpeg`'s. "" (TF's fast integer IDCT) decodes a JPEG as the
    input pipeline decodes the records; "INTEGER_ACCURATE" as Pillow, and so the converter,
    decodes an original before resizing it (libjpeg's default, JDCT_ISLOW)."""
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    branches = {
        headers.JPEG: lambda data, limit: _decode_jpeg(data, limit, jpeg_dct_method),
        headers.PNG: _decode_png,
        headers.GIF: _decode_gif,
        headers.BMP: _decode_bmp,
        headers.WEBP: _decode_webp,
    }

    def branch(code):
        if code == headers.UNKNOWN:
            return lambda: _refuse_unknown(image_bytes)
        return lambda: branches[code](image_bytes, max_pixels)

    image = tf.switch_case(
        headers.sniff_format(image_bytes),
        [branch(code) for code in range(len(headers.FORMAT_NAMES))],
    )
    image.set_shape([None, None, 3])
    return image
