"""An encoded image's pixel size, read from its header in TensorFlow ops, before any decoding.

The serving graph must refuse a decompression bomb (a 100 KB PNG that says 65535x65535) before
a decoder allocates its pixels, and it must do so with TensorFlow ops alone, since the
SavedModel loads without alexnet_tf. TensorFlow's decoders only refuse images above 2^29
values, and its GIF decoder decodes every frame of an animation with no bound at all, so each
reader here walks no further than the first frame's header:

    JPEG  the first SOF0..SOF15 segment (not DHT C4, JPG C8, DAC CC), found by skipping
          segments by their lengths as libjpeg does
    PNG   IHDR, which the format puts first
    GIF   the logical screen and the first image descriptor; also where that frame's data
          ends, so the caller can cut the animation after it
    BMP   BITMAPCOREHEADER (16-bit sizes) or any later header (32-bit, negative = top-down)
    WebP  VP8 (lossy), VP8L (lossless) or VP8X (extended, with its animation flag)

Every reader returns int64 scalars and a `problem` string that is empty when the header is
well formed, so the caller raises one InvalidArgument that names the image's fault.
"""

from __future__ import annotations

import tensorflow as tf

JPEG, PNG, GIF, BMP, WEBP, UNKNOWN = 0, 1, 2, 3, 4, 5
FORMAT_NAMES = ("JPEG", "PNG", "GIF", "BMP", "WebP", "unknown")

# Real JPEGs have a handful of segments before the frame header (APPn, DQT, DHT); a file that
# needs more is refused rather than walked for as long as the client likes.
MAX_JPEG_SEGMENTS = 256
# The same bound for the extension blocks (comments, application data) before a GIF's frame.
MAX_GIF_EXTENSIONS = 256
_JPEG_SOF_MARKERS = tuple(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))
_JPEG_STANDALONE_MARKERS = (0x01, *range(0xD0, 0xD9))  # TEM, RST0..7, SOI


def sniff_format(image_bytes: tf.Tensor) -> tf.Tensor:
    """int32 scalar: one of JPEG, PNG, GIF, BMP, WEBP, UNKNOWN, from the magic bytes.

    The same signatures `tf.io.decode_image` dispatches on.
    """
    head = _head(image_bytes, 12)

    def starts_with(prefix: bytes, offset: int = 0) -> tf.Tensor:
        return tf.equal(tf.strings.substr(head, offset, len(prefix)), prefix)

    checks = (
        (starts_with(b"\xff\xd8\xff"), JPEG),
        (starts_with(b"\x89PNG\r\n\x1a\n"), PNG),
        (starts_with(b"GIF8"), GIF),
        (starts_with(b"BM"), BMP),
        (tf.logical_and(starts_with(b"RIFF"), starts_with(b"WEBP", 8)), WEBP),
    )
    result = tf.constant(UNKNOWN, tf.int32)
    for matches, code in reversed(checks):
        result = tf.where(matches, tf.constant(code, tf.int32), result)
    return result


def _head(image_bytes: tf.Tensor, length: int) -> tf.Tensor:
    """The first `length` bytes, zero-padded: substr fails on a position past a string's end."""
    return tf.strings.join([tf.strings.substr(image_bytes, 0, length), b"\x00" * length])


class _Bytes:
    """Bounds-checked access to the bytes of one image as int64 values (0 past the end)."""

    def __init__(self, image_bytes: tf.Tensor, prefix: int | None = None):
        if prefix is not None:  # a header at a fixed offset needs only the first bytes
            image_bytes = tf.strings.substr(image_bytes, 0, prefix)
        raw = tf.io.decode_raw(image_bytes, tf.uint8)
        self.length = tf.size(raw, out_type=tf.int64)
        self.raw = tf.pad(raw, [[0, 1]])  # one byte more, so an empty file can be indexed

    def at(self, position) -> tf.Tensor:
        position = tf.cast(position, tf.int64)
        inside = tf.logical_and(position >= 0, position < self.length)
        value = tf.cast(tf.gather(self.raw, tf.clip_by_value(position, 0, self.length)), tf.int64)
        return tf.where(inside, value, tf.constant(0, tf.int64))

    def big_endian(self, position, width: int) -> tf.Tensor:
        value = tf.constant(0, tf.int64)
        for offset in range(width):
            value = value * 256 + self.at(position + offset)
        return value

    def little_endian(self, position, width: int) -> tf.Tensor:
        value = tf.constant(0, tf.int64)
        for offset in reversed(range(width)):
            value = value * 256 + self.at(position + offset)
        return value


def _problem_if(condition: tf.Tensor, message: str, previous: tf.Tensor) -> tf.Tensor:
    """Keeps the first problem found: `message` if `condition` and none was found before."""
    return tf.where(tf.logical_and(condition, tf.equal(previous, "")), message, previous)


def _no_problem() -> tf.Tensor:
    return tf.constant("", tf.string)


def png_size(image_bytes: tf.Tensor):
    """(height, width, bit_depth, color_type, problem) from PNG's IHDR chunk."""
    header = _Bytes(image_bytes, prefix=26)
    problem = _problem_if(header.length < 26, "truncated PNG header", _no_problem())
    is_ihdr = tf.equal(tf.strings.substr(_head(image_bytes, 16), 12, 4), b"IHDR")
    problem = _problem_if(tf.logical_not(is_ihdr), "PNG without IHDR first", problem)
    width = header.big_endian(16, 4)
    height = header.big_endian(20, 4)
    return height, width, header.at(24), header.at(25), problem


def bmp_size(image_bytes: tf.Tensor):
    """(height, width, problem) from a BMP's DIB header; a negative height means top-down."""
    header = _Bytes(image_bytes, prefix=26)
    problem = _problem_if(header.length < 26, "truncated BMP header", _no_problem())
    core_header = tf.equal(header.little_endian(14, 4), 12)
    width = tf.where(core_header, header.little_endian(18, 2), _signed32(header.little_endian(18, 4)))
    height = tf.where(core_header, header.little_endian(20, 2), _signed32(header.little_endian(22, 4)))
    problem = _problem_if(width < 0, "BMP with a negative width", problem)
    return tf.abs(height), width, problem


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2**31, value - 2**32, value)


def webp_size(image_bytes: tf.Tensor):
    """(height, width, animated, problem) from the first chunk of a WebP file."""
    header = _Bytes(image_bytes, prefix=30)
    problem = _problem_if(header.length < 30, "truncated WebP header", _no_problem())
    chunk = tf.strings.substr(_head(image_bytes, 16), 12, 4)
    lossless_bits = header.little_endian(21, 4)
    width = tf.case(
        [
            (tf.equal(chunk, b"VP8 "), lambda: tf.bitwise.bitwise_and(header.little_endian(26, 2), 0x3FFF)),
            (tf.equal(chunk, b"VP8L"), lambda: tf.bitwise.bitwise_and(lossless_bits, 0x3FFF) + 1),
            (tf.equal(chunk, b"VP8X"), lambda: header.little_endian(24, 3) + 1),
        ],
        default=lambda: tf.constant(0, tf.int64),
    )
    height = tf.case(
        [
            (tf.equal(chunk, b"VP8 "), lambda: tf.bitwise.bitwise_and(header.little_endian(28, 2), 0x3FFF)),
            (
                tf.equal(chunk, b"VP8L"),
                lambda: tf.bitwise.bitwise_and(tf.bitwise.right_shift(lossless_bits, 14), 0x3FFF) + 1,
            ),
            (tf.equal(chunk, b"VP8X"), lambda: header.little_endian(27, 3) + 1),
        ],
        default=lambda: tf.constant(0, tf.int64),
    )
    known = tf.reduce_any(tf.equal(chunk, [b"VP8 ", b"VP8L", b"VP8X"]))
    problem = _problem_if(tf.logical_not(known), "WebP without a VP8/VP8L/VP8X chunk first", problem)
    animated = tf.logical_and(
        tf.equal(chunk, b"VP8X"), tf.not_equal(tf.bitwise.bitwise_and(header.at(20), 0x02), 0)
    )
    return height, width, animated, problem


def jpeg_size(image_bytes: tf.Tensor):
    """(height, width, problem) from the first SOFn segment of a JPEG."""
    data = _Bytes(image_bytes)
    searching, found, broken = 0, 1, 2

    def keep_looking(position, state, height, width, segments):
        return tf.logical_and(tf.equal(state, searching), segments < MAX_JPEG_SEGMENTS)

    def next_marker(position, state, height, width, segments):
        marker = data.at(position + 1)
        not_a_marker = tf.logical_or(
            tf.not_equal(data.at(position), 0xFF), position + 4 > data.length
        )
        is_frame = tf.reduce_any(tf.equal(marker, _JPEG_SOF_MARKERS))
        ends_early = tf.logical_or(tf.equal(marker, 0xD9), tf.equal(marker, 0xDA))  # EOI, SOS
        is_fill = tf.equal(marker, 0xFF)
        standalone = tf.reduce_any(tf.equal(marker, _JPEG_STANDALONE_MARKERS))
        one, two = tf.constant(1, tf.int64), tf.constant(2, tf.int64)
        step = tf.where(is_fill, one, tf.where(standalone, two, 2 + data.big_endian(position + 2, 2)))
        new_state = tf.where(
            tf.logical_or(not_a_marker, ends_early),
            broken,
            tf.where(is_frame, found, searching),
        )
        height = tf.where(is_frame, data.big_endian(position + 5, 2), height)
        width = tf.where(is_frame, data.big_endian(position + 7, 2), width)
        return position + step, new_state, height, width, segments + 1

    zero = tf.constant(0, tf.int64)
    _, state, height, width, _ = tf.while_loop(
        keep_looking,
        next_marker,
        (tf.constant(2, tf.int64), tf.constant(searching), zero, zero, tf.constant(0)),
    )
    problem = _problem_if(tf.equal(state, broken), "JPEG without a frame header (SOFn)", _no_problem())
    problem = _problem_if(
        tf.equal(state, searching),
        f"JPEG with no frame header in its first {MAX_JPEG_SEGMENTS} segments",
        problem,
    )
    return height, width, problem


def _after_sub_blocks(data: _Bytes, position: tf.Tensor) -> tf.Tensor:
    """The position after a chain of GIF data sub-blocks (length byte, data) and its 0 byte."""
    (position,) = tf.nest.flatten(
        tf.while_loop(
            lambda at: tf.logical_and(at < data.length, tf.not_equal(data.at(at), 0)),
            lambda at: (at + data.at(at) + 1,),
            (tf.cast(position, tf.int64),),
        )
    )
    return position + 1


def gif_first_frame(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
    """Where a GIF's first frame lies, and how large its screen and that frame are.

    Returns int64 scalars screen_height, screen_width, frame_height, frame_width,
    image_data_at (where the frame's LZW data starts; see `gif_frame_end`), transparent_at
    (the position of the first frame's
    transparent colour in its colour table, -1 if none), control_at (the position of its
    Graphic Control Extension's flags byte, -1 if none), and problem.
    """
    data = _Bytes(image_bytes)
    problem = _problem_if(data.length < 13, "truncated GIF header", _no_problem())
    screen_width = data.little_endian(6, 2)
    screen_height = data.little_endian(8, 2)
    screen_flags = data.at(10)
    has_global_table = tf.not_equal(tf.bitwise.bitwise_and(screen_flags, 0x80), 0)
    global_table_size = 3 * tf.bitwise.left_shift(
        tf.constant(2, tf.int64), tf.bitwise.bitwise_and(screen_flags, 0x07)
    )
    first_block = 13 + tf.where(has_global_table, global_table_size, tf.constant(0, tf.int64))

    def is_extension(position, control_at, extensions):
        return tf.logical_and(tf.equal(data.at(position), 0x21), extensions < MAX_GIF_EXTENSIONS)

    def skip_extension(position, control_at, extensions):
        is_control = tf.equal(data.at(position + 1), 0xF9)
        control_at = tf.where(is_control, position + 3, control_at)
        return _after_sub_blocks(data, position + 2), control_at, extensions + 1

    descriptor, control_at, _ = tf.while_loop(
        is_extension,
        skip_extension,
        (first_block, tf.constant(-1, tf.int64), tf.constant(0)),
    )
    problem = _problem_if(
        tf.not_equal(data.at(descriptor), 0x2C), "GIF without an image before its end", problem
    )
    frame_width = data.little_endian(descriptor + 5, 2)
    frame_height = data.little_endian(descriptor + 7, 2)
    frame_flags = data.at(descriptor + 9)
    has_local_table = tf.not_equal(tf.bitwise.bitwise_and(frame_flags, 0x80), 0)
    local_table_size = 3 * tf.bitwise.left_shift(
        tf.constant(2, tf.int64), tf.bitwise.bitwise_and(frame_flags, 0x07)
    )
    image_data = descriptor + 10 + tf.where(has_local_table, local_table_size, tf.constant(0, tf.int64))

    transparent = tf.logical_and(
        control_at >= 0, tf.not_equal(tf.bitwise.bitwise_and(data.at(control_at), 0x01), 0)
    )
    table_at = tf.where(
        has_local_table, descriptor + 10, tf.where(has_global_table, tf.constant(13, tf.int64), -1)
    )
    table_size = tf.where(has_local_table, local_table_size, global_table_size)
    transparent_index = data.at(control_at + 3)
    in_table = tf.logical_and(table_at >= 0, 3 * transparent_index < table_size)
    transparent_at = tf.where(
        tf.logical_and(transparent, in_table), table_at + 3 * transparent_index, tf.constant(-1, tf.int64)
    )
    return {
        "screen_height": screen_height,
        "screen_width": screen_width,
        "frame_height": frame_height,
        "frame_width": frame_width,
        "image_data_at": image_data,
        "transparent_at": transparent_at,
        "control_at": tf.where(
            tf.logical_and(transparent, in_table), control_at, tf.constant(-1, tf.int64)
        ),
        "control_flags": data.at(control_at),
        "problem": problem,
    }


def gif_frame_end(image_bytes: tf.Tensor, image_data_at: tf.Tensor):
    """(frame_end, problem): the position just past a frame's LZW data, which starts at
    `image_data_at`. Cutting there and appending the trailer 0x3B leaves a one-frame GIF.

    Walks the frame's sub-blocks (one step per 255 bytes), so the caller runs it only for a
    frame whose size it has accepted.
    """
    data = _Bytes(image_bytes)
    frame_end = _after_sub_blocks(data, image_data_at + 1)  # +1: the LZW minimum code size
    problem = _problem_if(
        frame_end > data.length, "truncated GIF: its first frame is cut off", _no_problem()
    )
    return frame_end, problem
