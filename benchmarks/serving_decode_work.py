"""Claim (issue 20): a served image's CPU time grows with its pixels and scans, not with bytes
a client adds that hold no pixels.

    python benchmarks/serving_decode_work.py [--tries=3]

Runs `image_decode.decode_image` (traced, the default 50 MP limit) on 1 MP images and on the
same images padded with megabytes of segments, comment sub-blocks or repeated scans, and on
the 1x1 GIFs of issue 20; prints each one's least process CPU time of --tries, what it gave
(decoded shape or refusal), and its ratio to the plain image in the same run; last, the
largest ratio of a padded input that was not refused.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import sys
import time
import zlib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet_tf.data import image_decode  # noqa: E402
from tests import image_bombs  # noqa: E402

MEGABYTE = 1 << 20


def encode(pixels: np.ndarray, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def cases() -> dict[str, tuple[str, bytes]]:
    """name -> (the plain input it is compared with, bytes)."""
    side = 1000
    rows, columns = np.mgrid[0:side, 0:side]
    noise = np.random.default_rng(0).integers(0, 8, (side, side, 3))
    smooth = np.stack([rows * 255 // side, columns * 255 // side, (rows + columns) % 256], -1)
    pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)
    baseline = encode(pixels, "JPEG", quality=90)
    progressive = encode(pixels, "JPEG", quality=90, progressive=True)
    png = encode(pixels, "PNG")
    text_chunk = struct.pack(">I", 1) + b"tEXt" + b"a" + struct.pack(">I", zlib.crc32(b"tEXta"))
    big_comments = (b"\xff\xfe\xff\xff" + b"a" * 65533) * 64
    tiny_comments = b"\xff\xfe\x00\x02" * MEGABYTE
    jpeg, gif = "1 MP baseline JPEG", "GIF 1x1"
    progressive_jpeg = "1 MP progressive JPEG (10 scans)"
    return {
        "1 MP baseline JPEG": ("1 MP baseline JPEG", baseline),
        "  + 4 MB of 64 KB comment segments": (jpeg, baseline[:2] + big_comments + baseline[2:]),
        "  + 4 MB of 4-byte comment segments": (jpeg, baseline[:2] + tiny_comments + baseline[2:]),
        "1 MP progressive JPEG (10 scans)": ("1 MP progressive JPEG (10 scans)", progressive),
        "  + 90 copies of its last scan": (
            progressive_jpeg, image_bombs.jpeg_with_repeated_last_scan(progressive, 90)
        ),
        "  + 500 copies of its last scan": (
            progressive_jpeg, image_bombs.jpeg_with_repeated_last_scan(progressive, 500)
        ),
        "1 MP PNG": ("1 MP PNG", png),
        "  + 4 MB of 13-byte text chunks": (
            "1 MP PNG", png[:33] + text_chunk * (4 * MEGABYTE // 13) + png[33:]
        ),
        "GIF 1x1": ("GIF 1x1", image_bombs.gif_with_long_comment(1)),
        "  + 4 MB comment of 255-byte sub-blocks": (
            "GIF 1x1", image_bombs.gif_with_long_comment(4 * MEGABYTE // 256, lengths=(255,))
        ),
        "  + 4 MB comment of 1-byte sub-blocks": (
            gif, image_bombs.gif_with_long_comment(2 * MEGABYTE)
        ),
        "  + 100,000 sub-blocks of 1, 2 bytes": (
            "GIF 1x1", image_bombs.gif_with_long_comment(100_000, lengths=(1, 2))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3)
    arguments = parser.parse_args()
    serve = tf.function(
        lambda encoded: image_decode.decode_image(encoded, image_decode.DEFAULT_MAX_PIXELS),
        input_signature=[tf.TensorSpec([], tf.string)],
    )
    seconds, worst_accepted = {}, (0.0, "")
    for name, (plain, image_bytes) in cases().items():
        best = float("inf")
        for _ in range(arguments.tries + 1):  # the first call traces
            start = time.process_time()
            try:
                result = "decoded " + "x".join(map(str, serve(tf.constant(image_bytes)).shape[:2]))
            except tf.errors.InvalidArgumentError as refusal:
                result = "refused: " + refusal.message.strip().splitlines()[0].split("]")[0][-70:]
            best = min(best, time.process_time() - start)
        seconds[name] = best
        ratio = best / seconds[plain]
        if result.startswith("decoded") and ratio > worst_accepted[0]:
            worst_accepted = (ratio, name.strip(" +"))
        print(
            f"{name:42s} {len(image_bytes) / MEGABYTE:6.2f} MB {1000 * best:8.1f} ms CPU "
            f"{ratio:6.2f}x  {result}",
            flush=True,
        )
    print(f"largest ratio of a padded input served to its plain image: {worst_accepted[0]:.2f}x "
          f"({worst_accepted[1]})")


if __name__ == "__main__":
    main()
