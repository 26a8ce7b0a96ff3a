"""Claim (issue 20): an image the server accepts at the default limit (50 MP) costs at most
1.2 GB of memory at its peak, in every format, and a request of many such images holds one at
a time, not all of them (nor tf.map_fn's default 10).

    python benchmarks/serving_memory.py [--side=7000] [--request_images=12]

Each case runs in its own Python (`--case=NAME`): it builds the serving graph's preprocessing
(the function `serving_default` maps over a request's images, with the default --max_pixels),
warms it on a small image of the same format, resets the peak resident size
(/proc/self/clear_refs) and reads how far it rises (VmHWM - VmRSS) while one side x side image
goes through. The request case runs `serving_default`'s function with a random 67x67 AlexNet on
--request_images copies of the JPEG. Prints a row per case against the 1.2 GB limit, then the
ratios (peak / limit; request / one image) last.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LIMIT_GB = 1.2
IMAGE_SIZE = 67
# name: (Pillow mode, format, save options)
CASES = {
    "jpeg": ("RGB", "JPEG", {"quality": 90}),
    "png_rgba_8bit": ("RGBA", "PNG", {"compress_level": 1}),
    "png_gray_16bit": ("I;16", "PNG", {"compress_level": 1}),
    "png_rgba_16bit": ("RGBA16", "PNG", {}),
    "bmp": ("RGB", "BMP", {}),
    "webp_rgba": ("RGBA", "WEBP", {"lossless": True, "method": 0}),
    "gif": ("P", "GIF", {}),
}
REQUEST_CASE = "request_of_jpegs"


def _pixels(side: int, mode: str):
    """A photo-like side x side picture: gradients, edges and a little noise."""
    import numpy as np

    rows, columns = np.mgrid[0:side, 0:side].astype(np.float32) / side
    noise = np.random.default_rng(0).integers(0, 24, (side, side), dtype=np.uint8)
    red = (255 * rows).astype(np.uint8) ^ noise
    green = (255 * columns).astype(np.uint8)
    blue = np.where((rows - 0.5) ** 2 + (columns - 0.5) ** 2 < 0.1, 220, 30).astype(np.uint8)
    alpha = (128 + 127 * np.sin(9 * rows)).astype(np.uint8)
    if mode == "RGB":
        return np.stack([red, green, blue], -1)
    if mode == "RGBA":
        return np.stack([red, green, blue, alpha], -1)
    if mode == "I;16":
        return (257 * red.astype(np.uint16)) + noise
    if mode == "RGBA16":
        return np.stack([red, green, blue, alpha], -1).astype(np.uint16) * 257
    return red  # a palette index per pixel


def encode(side: int, case: str) -> bytes:
    """The case's image, side x side, encoded."""
    mode, image_format, options = CASES[case]
    pixels = _pixels(side, mode)
    if mode == "RGBA16":  # Pillow cannot write 16-bit RGBA; this is the PNG format's layout.
        return _png_rgba16(pixels)
    from PIL import Image

    image = Image.fromarray(pixels)  # the mode follows the array: RGB, RGBA, I;16, L
    if mode == "P":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _png_rgba16(pixels) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, width * 8 // 2).view("u1").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(key + r":\s+(\d+)", handle.read()).group(1))


def _peak_gb(run) -> float:
    """How far the resident size rises above its level before `run()`, in GB (10^9 bytes)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM := VmRSS
    before = _status_kb("VmRSS")
    run()
    return (_status_kb("VmHWM") - before) * 1024 / 1e9


def measure_case(case: str, path: str, request_images: int) -> float:
    import tensorflow as tf

    from alexnet_tf.data import eval_preprocessing

    with open(path, "rb") as handle:
        image_bytes = handle.read()
    if case == REQUEST_CASE:
        import keras

        from alexnet_tf.export import signatures as serving
        from alexnet_tf.model import build_alexnet

        keras.utils.set_random_seed(0)
        model = build_alexnet(num_classes=4, image_size=IMAGE_SIZE, initialization="he")
        serve = serving.serving_functions(
            model, image_size=IMAGE_SIZE, labels=["a", "b", "c", "d"])[serving.DEFAULT_SIGNATURE]
        small = encode(300, "jpeg")
        serve(tf.constant([small] * request_images))  # traced and warm
        batch = tf.constant([image_bytes] * request_images)
        return _peak_gb(lambda: serve(batch)["probabilities"].numpy())
    preprocess = tf.function(
        eval_preprocessing.eval_function(None, IMAGE_SIZE, serving_max_pixels()),
        input_signature=[tf.TensorSpec([], tf.string)],
    )
    preprocess(tf.constant(encode(300, case)))  # traced and warm
    return _peak_gb(lambda: preprocess(tf.constant(image_bytes)).numpy())


def serving_max_pixels() -> int:
    from alexnet_tf.data import image_decode

    return image_decode.DEFAULT_MAX_PIXELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7000, help="images are side x side")
    parser.add_argument("--request_images", type=int, default=12,
                        help="JPEGs in the request case (tf.map_fn's default ran 10 at once)")
    parser.add_argument("--cases", default=",".join([*CASES, REQUEST_CASE]))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.case:
        print(f"{measure_case(arguments.case, arguments.path, arguments.request_images):.4f}")
        return
    peaks = {}
    megapixels = arguments.side ** 2 / 1e6
    print(f"{arguments.side}x{arguments.side} images ({megapixels:.1f} MP); limit "
          f"{LIMIT_GB} GB per image")
    with tempfile.TemporaryDirectory() as folder:
        for case in arguments.cases.split(","):
            image_case = "jpeg" if case == REQUEST_CASE else case
            path = os.path.join(folder, image_case)
            if not os.path.exists(path):
                with open(path, "wb") as handle:
                    handle.write(encode(arguments.side, image_case))
            result = subprocess.run(
                [sys.executable, __file__, f"--case={case}", f"--path={path}",
                 f"--request_images={arguments.request_images}"],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                print(f"{case:18s} failed: {result.stderr.strip().splitlines()[-1:]}")
                continue
            peaks[case] = float(result.stdout.strip().splitlines()[-1])
            size = os.path.getsize(path) / 1e6
            label = (f"{arguments.request_images} x jpeg" if case == REQUEST_CASE
                     else f"{size:.1f} MB file")
            print(f"{case:18s} peak +{peaks[case]:.2f} GB  ({label}; "
                  f"{peaks[case] * 1e9 / arguments.side ** 2:.1f} bytes per pixel)")
    print("ratios (peak / 1.2 GB limit):")
    for case, peak in peaks.items():
        print(f"  {case:18s} {peak / LIMIT_GB:.2f}x")
    if REQUEST_CASE in peaks and "jpeg" in peaks:
        print(f"  request of {arguments.request_images} / one jpeg: "
              f"{peaks[REQUEST_CASE] / peaks['jpeg']:.2f}x")


if __name__ == "__main__":
    main()
