"""An encoded image's pixel size, read from its header in TensorFlow ops, before any decoding.

The serving graph must refuse a decompression bomb (a 100 KB PNG that says 65535x65535) before
a decoder allocates its pixels, and it must do so with TensorFlow ops alone, since the
SavedModel loads without alexnet_tf. TensorFlow's decoders only refuse images above 2^29
values, and its GIF decoder decodes every frame of an animation with no bound at all, so each
reader here walks no further than the first frame's header:

    JPEG  libjpeg's own header reader (tf.io.extract_jpeg_shape), and the count of its scans
    PNG   IHDR, which the format puts first
    GIF   the logical screen and the first image descriptor; also where that frame's data
          ends, so the caller can cut the animation after it
    BMP   32-bit sizes where TensorFlow's decoder reads them (negative height = top-down);
          a 12-byte OS/2 core header, whose 16-bit sizes it does not read, is refused
    WebP  VP8 (lossy), VP8L (lossless) or VP8X (extended, with its animation flag)

Each size is read where and as the decoder reads it: a reader that disagrees with its decoder
lets a decoy size through (issue 20). The work is bounded by the pixels allowed, not by the
bytes sent: see `image_decode` for the bound on CPU time.

Every reader returns int64 scalars and a `problem` string that is empty when the header is
well formed, so the caller raises one InvalidArgument that names the image's fault.
"""

from __future__ import annotations

import tensorflow as tf

JPEG, PNG, GIF, BMP, WEBP, UNKNOWN = 0, 1, 2, 3, 4, 5
FORMAT_NAMES = ("JPEG", "PNG", "GIF", "BMP", "WebP", "unknown")

# libjpeg writes 10 scans for a progressive colour JPEG (jpeg_simple_progression), 6 for
# grey and 4 per colour channel of CMYK; mozjpeg's optimized scripts fewer than 20. A file
# may also hold an EXIF thumbnail's scan and a gain map or preview JPEG after its end. Each
# progressive scan is decoded over every pixel again (djpeg's -maxscans guards the same), so
# 100 scans leave real files ample room and bound a 1 MP image's scans to ~50 ms of CPU.
MAX_JPEG_SCANS = 100
_SCAN_WINDOW = 1 << 20
# Real GIFs have a handful of extension blocks (comments, application data) before their
# frame; a file that needs more is refused rather than walked for as long as the client likes.
MAX_GIF_EXTENSIONS = 256
# Encoders write a chain of sub-blocks of one length (255) but the last, so a chain is walked
# in runs of up to _GIF_RUN_LENGTH equal sub-blocks, and a GIF whose sub-block lengths change
# more often than this (in its extensions, or in its first frame's data) is refused. An XMP
# packet in a GIF's application extension, its text bytes read as lengths, takes about one
# run per 80 bytes, so a 64 KB packet about 800.
MAX_GIF_SUB_BLOCK_RUNS = 1024
_GIF_RUN_LENGTH = 1024


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
    """(height, width, problem) from a BMP's DIB header; a negative height means top-down.

    TensorFlow's decoder reads a 40-byte header's 32-bit sizes at offsets 18 and 22 whatever
    the header's size, so a 12-byte OS/2 core header's 16-bit sizes are not what it decodes
    (64x1 there decodes as 65600x1): such a file is refused.
    """
    header = _Bytes(image_bytes, prefix=26)
    problem = _problem_if(header.length < 26, "truncated BMP header", _no_problem())
    header_size = header.little_endian(14, 4)
    problem = _problem_if(
        header_size < 40,
        tf.strings.join(
            [
                "BMP with a ",
                tf.strings.as_string(header_size),
                "-byte header: only Windows BMP headers (40 bytes or more) are decoded",
            ]
        ),
        problem,
    )
    width = _signed32(header.little_endian(18, 4))
    height = _signed32(header.little_endian(22, 4))
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
    """(height, width, problem) of a JPEG's frame, read by libjpeg's own header reader.

    `tf.io.extract_jpeg_shape` runs `jpeg_read_header`, the very code `decode_jpeg` starts
    with, so the size checked is the size decoded whatever the marker layout (a walker of our
    own read a decoy frame header that libjpeg skips: `FF 00` is junk to libjpeg, not a
    segment). It reads up to the first scan, in C: about 5 ms per MB of segments or junk.
    A malformed header fails here with libjpeg's InvalidArgument ("Invalid JPEG data").
    """
    shape = tf.cast(tf.io.extract_jpeg_shape(image_bytes), tf.int64)
    return shape[0], shape[1], _no_problem()


def jpeg_scan_count(image_bytes: tf.Tensor) -> tf.Tensor:
    """int64: how many start-of-scan markers (FF DA) the bytes hold, counted until one more
    than MAX_JPEG_SCANS: an upper bound on the scans libjpeg decodes. Entropy-coded data
    stuffs every FF byte as FF 00, so FF DA is a marker there; in other segments (EXIF, ICC)
    it may be data, which only overcounts. Read in windows of 1 MB (a few MB of memory
    whatever the file's size), vectorized: a few ms per MB."""
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)

    def going_on(at, count):
        return tf.logical_and(at < length, count <= MAX_JPEG_SCANS)

    def one_window(at, count):
        # One byte more than the window, so a marker across its end is counted, once.
        raw = tf.io.decode_raw(tf.strings.substr(image_bytes, at, _SCAN_WINDOW + 1), tf.uint8)
        starts = tf.logical_and(tf.equal(raw[:-1], 0xFF), tf.equal(raw[1:], 0xDA))
        return at + _SCAN_WINDOW, count + tf.math.count_nonzero(starts)

    _, count = tf.while_loop(
        going_on, one_window, (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    )
    return count


def _after_sub_blocks(data: _Bytes, position: tf.Tensor, runs_left: tf.Tensor):
    """(position, runs_left, exhausted): the position after a chain of GIF data sub-blocks
    (length byte, data) and its 0 byte, walked in runs of sub-blocks of one length.

    One loop step takes up to `_GIF_RUN_LENGTH` sub-blocks of the length of the first, checked
    in one gather, so the 255-byte sub-blocks encoders write cost one step per 261 KB, and
    100,000 one-byte sub-blocks 98 steps. Lengths that change at every sub-block take a step
    each: after `runs_left` steps the walk stops, `exhausted`, for the caller to refuse.
    """
    strides = tf.range(1, _GIF_RUN_LENGTH + 1, dtype=tf.int64)
    last = data.length  # data.raw holds a 0 there, which ends any run

    def lengths_at(positions):
        return tf.cast(tf.gather(data.raw, tf.minimum(positions, last)), tf.int64)

    def going_on(at, runs):
        return tf.logical_and(
            tf.logical_and(at < data.length, tf.not_equal(data.at(at), 0)), runs > 0
        )

    def one_run(at, runs):
        length = data.at(at)
        same = tf.equal(lengths_at(at + (length + 1) * strides), length)
        following = tf.cast(tf.reduce_sum(tf.math.cumprod(tf.cast(same, tf.int32))), tf.int64)
        return at + (length + 1) * (1 + following), runs - 1

    at, runs_left = tf.while_loop(
        going_on, one_run, (tf.cast(position, tf.int64), tf.cast(runs_left, tf.int64))
    )
    exhausted = tf.logical_and(
        tf.logical_and(at < data.length, tf.not_equal(data.at(at), 0)), runs_left <= 0
    )
    return at + 1, runs_left, exhausted


def _too_many_runs(exhausted: tf.Tensor, previous: tf.Tensor) -> tf.Tensor:
    return _problem_if(
        exhausted,
        f"GIF whose sub-blocks change length more than {MAX_GIF_SUB_BLOCK_RUNS} times in its "
        "extensions or its first frame (GIF encoders write equal sub-blocks)",
        previous,
    )


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

    def is_extension(position, control_at, extensions, runs_left, exhausted):
        more = tf.logical_and(tf.equal(data.at(position), 0x21), extensions < MAX_GIF_EXTENSIONS)
        return tf.logical_and(more, tf.logical_not(exhausted))

    def skip_extension(position, control_at, extensions, runs_left, exhausted):
        is_control = tf.equal(data.at(position + 1), 0xF9)
        control_at = tf.where(is_control, position + 3, control_at)
        position, runs_left, exhausted = _after_sub_blocks(data, position + 2, runs_left)
        return position, control_at, extensions + 1, runs_left, exhausted

    descriptor, control_at, _, _, exhausted = tf.while_loop(
        is_extension,
        skip_extension,
        (
            first_block,
            tf.constant(-1, tf.int64),
            tf.constant(0),
            tf.constant(MAX_GIF_SUB_BLOCK_RUNS, tf.int64),
            tf.constant(False),
        ),
    )
    problem = _too_many_runs(exhausted, problem)
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

    Walks the frame's sub-blocks in runs of one length (`_after_sub_blocks`), at most
    MAX_GIF_SUB_BLOCK_RUNS steps.
    """
    data = _Bytes(image_bytes)
    frame_end, _, exhausted = _after_sub_blocks(  # +1: the LZW minimum code size
        data, image_data_at + 1, tf.constant(MAX_GIF_SUB_BLOCK_RUNS, tf.int64)
    )
    problem = _too_many_runs(exhausted, _no_problem())
    problem = _problem_if(
        frame_end > data.length, "truncated GIF: its first frame is cut off", problem
    )
    return frame_end, problem
