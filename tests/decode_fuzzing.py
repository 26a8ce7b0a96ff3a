"""Differential fuzzing of the serving decoder: mutated real files, the size our header check
reads (or its refusal) against what TensorFlow's decoder produces, and the CPU time taken.

Shared by tests/test_decode_fuzzing.py (a short seeded hypothesis run) and
benchmarks/fuzz_serving_decode.py (a long run). Seeds are small files Pillow writes (24x16 in
every format and mode serving accepts); a mutation is a list of edits (set, insert, delete,
duplicate, truncate) aimed at the header bytes half the time, with tokens that walkers trip on
(FF 00, FF DA, SOF, chunk names, sizes of 0 and 65535).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import random
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from alexnet_tf.data import image_decode
from alexnet_tf.data import image_headers as headers

WIDTH, HEIGHT = 24, 16
# Four times a seed's pixels: doubling a side lands a mutant over or under it.
MAX_PIXELS = 4 * WIDTH * HEIGHT
# A refused image whose claimed size is at most this is decoded without a limit to see whether
# the refusal was needed; larger claims are not decoded (memory).
REFERENCE_MAX_PIXELS = 1_000_000
EDITS = ("set", "set_head", "insert", "insert_token", "delete", "duplicate", "truncate")
TOKENS = (
    b"\xff\x00", b"\xff\xda", b"\xff\xd9", b"\xff\xd8", b"\xff\xfe\x00\x04",
    b"\xff\xc0\x00\x11\x08\x00\x40\x00\x40\x03", b"\xff\xc2\x00\x0b\x08\x10\x00\x10\x00\x01",
    b"\x00\x00", b"\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x10\x00", b"\x21\xfe\x01a",
    b"\x21\xf9\x04\x01\x00\x00\x00\x00", b"\x2c\x00\x00\x00\x00\xff\x00\xff\x00\x00",
    b"\x00\x00\x00\x0dIHDR", b"IDAT", b"IEND", b"VP8X", b"VP8L", b"VP8 ", b"ANIM",
    b"\x0c\x00\x00\x00",
)


def seeds() -> dict[str, bytes]:
    """Real files, one per format and mode the server accepts, 24x16 each."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    noise = np.random.default_rng(0).integers(0, 40, (HEIGHT, WIDTH, 3))
    pixels = np.clip(np.stack([rows * 16, columns * 10, (rows + columns) * 6], -1) + noise, 0, 255)
    rgb = Image.fromarray(pixels.astype(np.uint8))
    alpha = Image.fromarray((columns * 10).astype(np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    gray16 = Image.fromarray((pixels[..., 0] * 257).astype(np.uint16))

    def encode(image: Image.Image, image_format: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=image_format, **options)
        return buffer.getvalue()

    return {
        "jpeg_baseline": encode(rgb, "JPEG", quality=90),
        "jpeg_progressive": encode(rgb, "JPEG", quality=90, progressive=True),
        "jpeg_gray": encode(rgb.convert("L"), "JPEG"),
        "png_rgb_8": encode(rgb, "PNG"),
        "png_gray_16": encode(gray16, "PNG"),
        "png_palette": encode(rgb.quantize(16), "PNG", transparency=3),
        "png_rgba": encode(rgba, "PNG"),
        "gif": encode(rgb.quantize(16), "GIF", transparency=2, comment=b"fuzz"),
        "bmp": encode(rgb, "BMP"),
        "webp_lossy": encode(rgb, "WEBP", quality=80),
        "webp_lossless": encode(rgba, "WEBP", lossless=True),
    }


def mutate(seed: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    """`seed` with `edits` applied in turn: (kind, position, value), each number taken modulo
    what it indexes, so any triple is a valid edit."""
    data = bytearray(seed)
    for kind, position, value in edits:
        at = position % (len(data) + 1)
        if kind == "set" and data:
            data[at % len(data)] = value % 256
        elif kind == "set_head" and data:
            data[position % min(len(data), 48)] = value % 256
        elif kind == "insert":
            data[at:at] = bytes([value % 256]) * (1 + value // 256 % 4)
        elif kind == "insert_token":
            data[at:at] = TOKENS[value % len(TOKENS)]
        elif kind == "delete":
            del data[at:at + 1 + value % 8]
        elif kind == "duplicate":
            data[at:at] = data[at:at + 1 + value % 64]
        elif kind == "truncate" and data:
            del data[max(1, at):]
    return bytes(data)


def random_edits(rng: random.Random) -> list[tuple[str, int, int]]:
    return [
        (rng.choice(EDITS), rng.randrange(1 << 16), rng.randrange(1 << 16))
        for _ in range(rng.randint(1, 4))
    ]


@dataclasses.dataclass
class Outcome:
    status: str  # "decoded", "refused" or "crashed"
    milliseconds: float
    shape: tuple[int, ...] | None = None
    message: str = ""
    reference_shape: tuple[int, ...] | None = None
    checked_size: tuple[int, int] | None = None  # (height, width) the header check read

    @property
    def past_the_limit(self) -> bool:
        return self.status == "decoded" and self.shape[0] * self.shape[1] > MAX_PIXELS

    @property
    def disagrees(self) -> bool:
        """Decoded at a size other than the one its header check read, or than the one
        TensorFlow's decoder produces on its own."""
        if self.status != "decoded":
            return False
        if self.checked_size is not None and self.shape[:2] != self.checked_size:
            return True
        return self.reference_shape is not None and self.shape[:2] != self.reference_shape[:2]

    @property
    def refused_needlessly(self) -> bool:
        """Refused as too large although the decoder, unlimited, produces it within the limit."""
        return (
            self.status == "refused"
            and "over the limit" in self.message
            and self.reference_shape is not None
            and self.reference_shape[0] * self.reference_shape[1] <= MAX_PIXELS
        )


@functools.lru_cache(maxsize=None)
def _served(max_pixels: int):
    return tf.function(
        lambda encoded: image_decode.decode_image(encoded, max_pixels),
        input_signature=[tf.TensorSpec([], tf.string)],
    )


@functools.lru_cache(maxsize=None)
def _checked_size():
    """(height, width) as the header check reads them; for GIF the first frame's, which is
    what TensorFlow decodes from the one-frame GIF serving cuts."""

    def size(image_bytes):
        branches = {
            headers.JPEG: lambda: headers.jpeg_size(image_bytes)[:2],
            headers.PNG: lambda: headers.png_size(image_bytes)[:2],
            headers.GIF: lambda: (
                headers.gif_first_frame(image_bytes)["frame_height"],
                headers.gif_first_frame(image_bytes)["frame_width"],
            ),
            headers.BMP: lambda: headers.bmp_size(image_bytes)[:2],
            headers.WEBP: lambda: headers.webp_size(image_bytes)[:2],
        }
        unknown = lambda: (tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))  # noqa: E731
        return tf.switch_case(
            headers.sniff_format(image_bytes),
            [branches.get(code, unknown) for code in range(len(headers.FORMAT_NAMES))],
        )

    return tf.function(size, input_signature=[tf.TensorSpec([], tf.string)])


def _reference_shape(image_bytes: bytes) -> tuple[int, ...] | None:
    """The shape TensorFlow's own decoder for the format produces, None if it refuses. GIF:
    not compared (decode_gif's frames are as large as the largest frame of the animation,
    while serving decodes the first frame alone)."""
    image_format = int(headers.sniff_format(tf.constant(image_bytes)))
    decoders = {
        headers.JPEG: lambda data: tf.io.decode_jpeg(data),
        headers.PNG: lambda data: tf.io.decode_png(data),
        headers.BMP: lambda data: tf.io.decode_bmp(data),
        headers.WEBP: lambda data: tf.io.decode_webp(data)[0],
    }
    if image_format not in decoders:
        return None
    try:
        return tuple(decoders[image_format](image_bytes).shape)
    except tf.errors.OpError:
        return None


def _claimed_pixels(message: str) -> int | None:
    """The pixels an "over the limit" refusal names ("PNG of 640x480 pixels is over ...")."""
    for word in message.split():
        sides = word.split("x")
        if len(sides) == 2 and all(side.isdigit() for side in sides):
            return int(sides[0]) * int(sides[1])
    return None


def check(image_bytes: bytes) -> Outcome:
    """Serves `image_bytes` through decode_image with MAX_PIXELS, timed in process CPU, and
    decodes it with TensorFlow's decoder alone where that is safe, to compare."""
    serve = _served(MAX_PIXELS)
    start = time.process_time()
    try:
        shape = tuple(serve(tf.constant(image_bytes)).shape)
        outcome = Outcome("decoded", 0.0, shape=shape)
    except tf.errors.InvalidArgumentError as refusal:
        outcome = Outcome("refused", 0.0, message=refusal.message.strip().splitlines()[0])
    except Exception as crash:  # noqa: BLE001: any other failure is what this looks for
        outcome = Outcome("crashed", 0.0, message=f"{type(crash).__name__}: {crash}"[:300])
    outcome.milliseconds = 1000 * (time.process_time() - start)
    if outcome.status == "decoded":
        height, width = _checked_size()(tf.constant(image_bytes))
        outcome.checked_size = (int(height), int(width))
    if outcome.status == "decoded" and not outcome.past_the_limit:
        outcome.reference_shape = _reference_shape(image_bytes)
    elif outcome.status == "refused" and "over the limit" in outcome.message:
        claimed = _claimed_pixels(outcome.message)
        if claimed is not None and claimed <= REFERENCE_MAX_PIXELS:
            outcome.reference_shape = _reference_shape(image_bytes)
    return outcome
