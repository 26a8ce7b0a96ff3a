"""The served model under attack: decompression bombs, animations and oversized requests.

One model is exported once with the command line's limits; the hostile requests then run
against the loaded SavedModel in a fresh Python that measures each one's time and peak memory
(VmHWM, reset through /proc/self/clear_refs before each request), as a TF Serving process
would see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from google.protobuf import text_format

from alexnet_tf.export import exporter as export
from alexnet_tf.export import limits as serving_limits
from tests import image_bombs
from tests.tf_serving_protos import batching_parameters_class
from tests.test_export import informative_alexnet, run_cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_PIXELS = 20_000_000
MAX_IMAGES = 4
REFUSAL_SECONDS = 0.1
REFUSAL_MEGABYTES = 50

BOMBS = {
    "png_12000x12000_complete": lambda: image_bombs.png_bomb(12000, 12000, complete=True),
    "png_65535x65535": lambda: image_bombs.png_bomb(65535, 65535),
    "gif_16000x16000_complete": lambda: image_bombs.gif_bomb((16000, 16000), (16000, 16000), complete=True),
    "gif_65535x65535_screen": lambda: image_bombs.gif_bomb((65535, 65535), (8, 8)),
    "gif_1x1_screen_65535x65535_frame": lambda: image_bombs.gif_bomb((1, 1), (65535, 65535)),
    "bmp_12000x12000": lambda: image_bombs.bmp_bomb(12000, 12000),
    "bmp_65535x-65535_top_down": lambda: image_bombs.bmp_bomb(65535, -65535),
    # 65500: libjpeg's largest side (JPEG_MAX_DIMENSION); above it libjpeg refuses the header itself.
    "jpeg_sof0_65500x65500": lambda: image_bombs.jpeg_bomb(65500, 65500),
    "jpeg_sof2_12000x12000_after_app1": lambda: image_bombs.jpeg_bomb(
        12000, 12000, marker=0xC2, app_bytes=60000
    ),
}

MEASURE = textwrap.dedent(
    r"""
    import json, re, sys, time
    import tensorflow as tf

    def memory_kb():
        status = open("/proc/self/status").read()
        return {key: int(re.search(key + r":\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM")}

    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    requests = json.load(open(sys.argv[2]))
    def read(paths):
        return tf.constant([open(path, "rb").read() for path in paths])
    normal = read(requests.pop("normal"))
    reference = serve(image_bytes=normal)["probabilities"].numpy()
    results = {}
    for name, paths in requests.items():
        batch = read(paths)
        serve(image_bytes=batch) if name.startswith("answered") else None  # traced and warm
        tries = []
        for _ in range(3):
            open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
            before = memory_kb()["VmRSS"]
            start = time.perf_counter()
            try:
                outputs = serve(image_bytes=batch)
                error, message = None, None
                probabilities = outputs["probabilities"].numpy().tolist()
            except tf.errors.OpError as caught:
                error, message, probabilities = type(caught).__name__, caught.message, None
            seconds = time.perf_counter() - start
            tries.append({"seconds": seconds, "megabytes": (memory_kb()["VmHWM"] - before) / 1024})
        after = serve(image_bytes=normal)["probabilities"].numpy()
        results[name] = {
            "error": error, "message": message, "probabilities": probabilities,
            "seconds": min(t["seconds"] for t in tries),
            "megabytes": max(t["megabytes"] for t in tries),
            "next_request_answered": bool((after == reference).all()),
        }
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> str:
    """Exported by the command line with its limit flags, as an operator would."""
    folder = tmp_path_factory.mktemp("limits")
    informative_alexnet().save(str(folder / "model.keras"))
    result = run_cli(
        "alexnet_tf.export", f"--model={folder / 'model.keras'}", f"--export_base={folder / 'serving'}",
        f"--max_pixels={MAX_PIXELS}", f"--max_images_per_request={MAX_IMAGES}",
        "--max_enqueued_batches=8", "--num_batch_threads=2", cwd=str(folder),
    )
    assert result.returncode == 0, result.stderr
    assert "--enable_batching --batching_parameters_file=" in result.stdout
    return str(folder / "serving")


@pytest.fixture(scope="module")
def measured(export_dir, tmp_path_factory) -> dict:
    """Each hostile request, and the requests it is compared with, through the SavedModel."""
    folder = tmp_path_factory.mktemp("requests")

    def save(name: str, data: bytes) -> str:
        path = str(folder / name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    photo = save("photo.jpg", export.sample_images()[0][1])
    animation, first_frame = image_bombs.animated_gif(300)
    requests = {"normal": [photo]}
    requests.update({name: [save(name, build())] for name, build in BOMBS.items()})
    requests["too_many_images"] = [photo] * (MAX_IMAGES + 1)
    requests["answered_animation_300_frames"] = [save("animation.gif", animation)]
    requests["answered_first_frame_alone"] = [save("first.gif", first_frame)]
    requests_file = save("requests.json", json.dumps(requests).encode())
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, os.path.join(export_dir, "1"), requests_file],
        env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_bomb_is_refused_from_its_header_cheaply_and_the_next_request_is_answered(measured, bomb):
    outcome = measured[bomb]
    assert outcome["error"] == "InvalidArgumentError", outcome
    assert f"over the limit of {MAX_PIXELS:,} pixels per image" in outcome["message"]
    assert "--max_pixels" in outcome["message"]
    assert outcome["seconds"] < REFUSAL_SECONDS, outcome
    assert outcome["megabytes"] < REFUSAL_MEGABYTES, outcome
    assert outcome["next_request_answered"]


@pytest.mark.slow
def test_too_many_images_in_one_request_are_refused_before_decoding(measured):
    outcome = measured["too_many_images"]
    assert outcome["error"] == "InvalidArgumentError", outcome
    assert f"holds {MAX_IMAGES + 1} images, over the limit of {MAX_IMAGES} per request" in outcome["message"]
    assert outcome["seconds"] < REFUSAL_SECONDS and outcome["megabytes"] < REFUSAL_MEGABYTES, outcome
    assert outcome["next_request_answered"]


@pytest.mark.slow
def test_an_animated_gif_costs_its_first_frame_and_gets_its_first_frames_answer(measured):
    animation = measured["answered_animation_300_frames"]
    first_frame = measured["answered_first_frame_alone"]
    assert animation["error"] is None, animation
    np.testing.assert_array_equal(animation["probabilities"], first_frame["probabilities"])
    # All 300 frames would be 300 * 256 * 256 * 3 bytes = 59 MB of output alone.
    assert animation["megabytes"] < 20, animation
    assert animation["seconds"] < 3 * first_frame["seconds"] + 0.05, (animation, first_frame)
    assert animation["next_request_answered"]


def test_the_limits_are_written_beside_the_export_and_batching_parses_as_tf_servings_proto(export_dir):
    with open(os.path.join(export_dir, "1", serving_limits.LIMITS_FILE)) as handle:
        limits = json.load(handle)
    assert limits["max_pixels"] == MAX_PIXELS
    assert limits["max_images_per_request"] == MAX_IMAGES
    with open(os.path.join(export_dir, serving_limits.BATCHING_PARAMETERS_FILE)) as handle:
        parameters = text_format.Parse(handle.read(), batching_parameters_class()())
    # One request the graph accepts must fit one batch; the queue is bounded.
    assert parameters.max_batch_size.value == MAX_IMAGES
    assert parameters.max_enqueued_batches.value == 8
    assert parameters.num_batch_threads.value == 2
    assert 0 < parameters.batch_timeout_micros.value <= 100_000


@pytest.mark.slow
def test_predict_names_the_refused_file_and_why_and_answers_the_others(export_dir, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(image_bombs.png_bomb(65535, 65535))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(export.sample_images()[0][1])
    result = run_cli("alexnet_tf.predict", f"--model={export_dir}", str(bomb), str(photo), cwd=str(tmp_path))
    assert result.returncode == 1
    refusals = [line for line in result.stderr.splitlines() if line.startswith("predict:")]
    assert refusals == [
        f"predict: {bomb}: refused: PNG of 65535x65535 pixels is over the limit of "
        f"{MAX_PIXELS:,} pixels per image (set by alexnet_tf.export --max_pixels)"
    ]
    assert result.stdout.startswith(f"{photo}\n  1. ")


def test_serving_answers_for_a_transparent_png_what_it_answers_for_the_converters_pixels(export_dir):
    """The served graph composites over white as the converter does, so an RGBA PNG gets the
    answer of the very RGB pixels the converter writes into the records (a lossless PNG of
    them); on black, as decode_image(channels=3) had it, the answers differ."""
    import io

    import tensorflow as tf
    from PIL import Image

    from alexnet_tf.convert import images as convert_images

    rows, columns = np.mgrid[0:96, 0:128]
    rgba = np.stack([rows * 2, columns * 2, (rows + columns) % 256, columns * 2], -1).astype(np.uint8)
    transparent, converted = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(transparent, format="PNG")
    convert_images._to_rgb(Image.fromarray(rgba, "RGBA")).save(converted, format="PNG")
    serve = tf.saved_model.load(os.path.join(export_dir, "1")).signatures["serving_default"]
    answers = serve(image_bytes=tf.constant([transparent.getvalue(), converted.getvalue()]))
    probabilities = answers["probabilities"].numpy()
    # The two preprocessed images are bit-identical; at two rows of one batch the model's
    # kernels may still round differently (6e-8 seen), far below any colour difference.
    np.testing.assert_allclose(probabilities[0], probabilities[1], rtol=0, atol=1e-6)
