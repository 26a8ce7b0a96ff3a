"""Claim (issue 12): a refused request costs under 0.1 s and under 50 MB, a small fraction of
one normal request, and an animated GIF costs what its first frame costs. Issue 20: a decoy
frame header cannot hide a JPEG's size, and a request's CPU time does not grow with bytes that
add no pixels (repeated progressive scans, one-byte GIF sub-blocks).

    python benchmarks/serving_refusals.py [--tries=5]

Exports a random 67x67 AlexNet with the default limits (50 MP per image), loads the SavedModel
as TF Serving would, and times each request (best of --tries) with its peak memory above the
resident size before it (the worst of the tries) (VmHWM after resetting it through /proc/self/clear_refs). The peer in
the same run is one normal request: a 160x120 JPEG. Prints a row per request and, last, the
ratio of the slowest refusal to the normal request.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet_tf.export import exporter as export  # noqa: E402
from alexnet_tf.model import build_alexnet
from tests import image_bombs  # noqa: E402


def peak_megabytes_and_seconds(serve, batch: tf.Tensor, tries: int) -> tuple[float, float, str]:
    best_seconds, worst_megabytes, outcome = float("inf"), 0.0, "answered"
    for _ in range(tries):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS
        before = _status_kb("VmRSS")
        start = time.perf_counter()
        try:
            serve(image_bytes=batch)["probabilities"].numpy()
        except tf.errors.InvalidArgumentError:
            outcome = "InvalidArgument"
        best_seconds = min(best_seconds, time.perf_counter() - start)
        worst_megabytes = max(worst_megabytes, (_status_kb("VmHWM") - before) / 1024)
    return best_seconds, worst_megabytes, outcome


def _progressive_jpeg(side: int) -> bytes:
    """A photo-like progressive JPEG (libjpeg's 10 scans) of side x side."""
    rows, columns = np.mgrid[0:side, 0:side]
    noise = np.random.default_rng(0).integers(0, 8, (side, side, 3))
    pixels = np.stack([rows * 255 // side, columns * 255 // side, (rows + columns) % 256], -1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=90, progressive=True
    )
    return buffer.getvalue()


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(key + r":\s+(\d+)", handle.read()).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    arguments = parser.parse_args()
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        version = export.export_model(build_alexnet(num_classes=4, image_size=67), folder)
        serve = tf.saved_model.load(version).signatures["serving_default"]
    photo = export.sample_images()[0][1]
    animation, first_frame = image_bombs.animated_gif(300)
    progressive = _progressive_jpeg(2000)
    requests = {
        "normal 160x120 JPEG": [photo],
        "PNG 12000x12000 (18 KB, complete)": [image_bombs.png_bomb(12000, 12000, complete=True)],
        "PNG 65535x65535 header": [image_bombs.png_bomb(65535, 65535)],
        "GIF 16000x16000 (174 KB, complete)": [
            image_bombs.gif_bomb((16000, 16000), (16000, 16000), complete=True)
        ],
        "GIF 1x1 screen, 65535x65535 frame": [image_bombs.gif_bomb((1, 1), (65535, 65535))],
        "BMP 65535x-65535 (top-down)": [image_bombs.bmp_bomb(65535, -65535)],
        "JPEG SOF0 65500x65500": [image_bombs.jpeg_bomb(65500, 65500)],
        "JPEG SOF2 12000x12000 after 60 KB APP1": [
            image_bombs.jpeg_bomb(12000, 12000, marker=0xC2, app_bytes=60000)
        ],
        "JPEG 12000x12000 behind a decoy 8x8 SOF": [
            image_bombs.jpeg_hiding_its_frame(image_bombs.jpeg_bomb(12000, 12000))
        ],
        "progressive JPEG 2000x2000": [progressive],
        "  + 500 copies of its last scan": [
            image_bombs.jpeg_with_repeated_last_scan(progressive, 500)
        ],
        "GIF 1x1, 100,000 1-byte comment sub-blocks": [image_bombs.gif_with_long_comment(100_000)],
        "GIF 1x1, 100,000 sub-blocks of 1, 2 bytes": [
            image_bombs.gif_with_long_comment(100_000, lengths=(1, 2))
        ],
        "65 images in one request": [photo] * 65,
        "GIF 300 frames of 256x256": [animation],
        "GIF its first frame alone": [first_frame],
    }
    rows = {}
    for name, images in requests.items():
        batch = tf.constant(images)
        try:
            serve(image_bytes=batch)  # warm: the first call of a shape pays for tracing
        except tf.errors.InvalidArgumentError:
            pass
        rows[name] = peak_megabytes_and_seconds(serve, batch, arguments.tries)
        seconds, megabytes, outcome = rows[name]
        print(f"{name:44s} {outcome:16s} {1000 * seconds:8.2f} ms {megabytes:8.1f} MB", flush=True)
    normal = rows["normal 160x120 JPEG"][0]
    refusals = [row for row in rows.values() if row[2] == "InvalidArgument"]
    slowest = max(row[0] for row in refusals)
    heaviest = max(row[1] for row in refusals)
    animation_ratio = rows["GIF 300 frames of 256x256"][0] / rows["GIF its first frame alone"][0]
    scans_ratio = rows["  + 500 copies of its last scan"][0] / rows["progressive JPEG 2000x2000"][0]
    print(
        f"slowest refusal / normal request: {slowest / normal:.2f}x ({1000 * slowest:.2f} ms, "
        f"at most {heaviest:.1f} MB); 300-frame GIF / its first frame: {animation_ratio:.2f}x; "
        f"progressive JPEG with 500 more scans / without: {scans_ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
