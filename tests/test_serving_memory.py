"""Memory per served image (issue 20): at most 1.2 GB for an image at the default 50 MP limit,
in every format, and one image of a request decoded at a time.

The bound is pinned in proportion, in bytes per pixel (1.2 GB / 50 MP = 24), on 4 MP images
in a fresh Python; `benchmarks/serving_memory.py` measures the 49 MP images themselves. The
cheaper arithmetic must keep the served pixels bit-identical to the converter's.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf.convert import images as convert_images
from alexnet_tf.data import image_decode
from alexnet_tf.export import signatures as serving

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BYTES_PER_PIXEL_LIMIT = 1.2e9 / 50e6  # 24: the 1.2 GB at the 50 MP default
SIDE = 2000


def png_16_bit(pixels: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG of uint16 [H, W, channels] (Pillow writes 16-bit gray only)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, -1).view(np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1))
            + chunk(b"IEND", b""))


def served_pixels(image_bytes: bytes) -> np.ndarray:
    return image_decode.decode_image(tf.constant(image_bytes)).numpy()


def converter_pixels(image_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.load()
        return np.asarray(convert_images._to_rgb(image))


def test_every_16_bit_gray_value_is_rounded_as_the_converter_rounds_it():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    image_bytes = png_16_bit(values, color_type=0)
    np.testing.assert_array_equal(served_pixels(image_bytes), converter_pixels(image_bytes))


def test_a_16_bit_rgba_png_is_served_with_pillows_high_bytes_over_white():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (64, 96, 4), dtype=np.uint16)
    pixels[:8, :, 3] = 65535  # some opaque rows, some fully transparent ones
    pixels[8:16, :, 3] = 0
    image_bytes = png_16_bit(pixels, color_type=6)
    np.testing.assert_array_equal(served_pixels(image_bytes), converter_pixels(image_bytes))


def test_a_request_decodes_one_image_at_a_time():
    """tf.map_fn's default runs 10 images at once: 10 decoded 50 MP images in memory."""
    model = keras.Sequential([
        keras.Input((67, 67, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
    ])
    serve = serving.serving_functions(model, image_size=67, labels=["a", "b"])
    graph = serve[serving.DEFAULT_SIGNATURE].get_concrete_function().graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]

    assert loops, "serving_default no longer maps over the request's images"
    assert [op.get_attr("parallel_iterations") for op in loops] == [1] * len(loops)


_MEASURE = textwrap.dedent(
    """
    import re, sys
    import tensorflow as tf
    from alexnet_tf.data import image_decode
    from alexnet_tf.data import pipeline as data

    def status_kb(key):
        with open("/proc/self/status") as handle:
            return int(re.search(key + r":\\s+(\\d+)", handle.read()).group(1))

    preprocess = tf.function(
        lambda image: data.preprocess_for_eval(image, 67, image_decode.DEFAULT_MAX_PIXELS),
        input_signature=[tf.TensorSpec([], tf.string)])
    for path in sys.argv[1:]:
        with open(path + ".small", "rb") as handle:
            preprocess(tf.constant(handle.read()))  # traced and warm
        with open(path, "rb") as handle:
            image = tf.constant(handle.read())
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # the peak (VmHWM) := the resident size now
        before = status_kb("VmRSS")
        preprocess(image).numpy()
        print(path, (status_kb("VmHWM") - before) * 1024)
    """
)


def _pictures(side: int) -> dict[str, bytes]:
    rows, columns = np.mgrid[0:side, 0:side]
    noise = np.random.default_rng(0).integers(0, 32, (side, side))
    red = ((rows * 255 // side) ^ noise).astype(np.uint8)
    green = (columns * 255 // side).astype(np.uint8)
    alpha = (128 + 127 * np.sin(rows / 40)).astype(np.uint8)
    rgba = Image.fromarray(np.stack([red, green, red // 2, alpha], -1), "RGBA")
    gray = red.astype(np.uint16)[..., None] * 257 + noise[..., None].astype(np.uint16)
    buffers = {}
    for name, save in {
        "jpeg": lambda handle: rgba.convert("RGB").save(handle, "JPEG", quality=90),
        "png_rgba": lambda handle: rgba.save(handle, "PNG", compress_level=1),
    }.items():
        buffer = io.BytesIO()
        save(buffer)
        buffers[name] = buffer.getvalue()
    buffers["png_gray_16_bit"] = png_16_bit(gray, color_type=0)
    return buffers


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_per_served_pixel_fits_1_2_gb_at_the_50_mp_limit(tmp_path):
    paths = []
    for name, image_bytes in _pictures(SIDE).items():
        path = tmp_path / name
        path.write_bytes(image_bytes)
        (tmp_path / f"{name}.small").write_bytes(_pictures(64)[name])
        paths.append(str(path))
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")

    result = subprocess.run([sys.executable, "-c", _MEASURE, *paths], capture_output=True,
                            text=True, env=environment, check=False, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    per_pixel = {
        os.path.basename(path): int(peak) / SIDE**2
        for path, peak in (line.split() for line in result.stdout.split("\n") if line)
    }
    assert set(per_pixel) == {"jpeg", "png_rgba", "png_gray_16_bit"}
    # Before issue 20: 15, 29 and 49 bytes per pixel (the float32 resize, int32 composite).
    assert max(per_pixel.values()) <= BYTES_PER_PIXEL_LIMIT, per_pixel
