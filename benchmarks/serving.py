"""Claim (issue 15, part 3): the exported SavedModel answers JPEG requests faster than PyTorch on
the same CPU cores; targets >= 2x PyTorch's best at batch 32 and >= 1.5x at batch 1.

    python benchmarks/serving.py [--rounds=3] [--requests=40] [--batch_requests=4] [--images=64]

What is timed, per request, is what a client waits for: JPEG bytes in, top-5 classes out.
  * TensorFlow: `alexnet_tf.export` of the paper's network (1000 classes, 227x227) with
    `--precision=float32` and `--precision=bfloat16`, loaded with `tf.saved_model.load` and
    called through its `serving_default` signature (in-graph decode, resize to 256, centre crop,
    mean, network, softmax, top-5): the graph TF Serving runs, without the RPC.
  * PyTorch 2.13 eager: the same network (`train_throughput.torch_alexnet`), with PIL decoding,
    resizing to 256 (bilinear) and cropping, then softmax and `topk(5)`, under
    `torch.inference_mode()`, in float32 and in bfloat16 (`torch.autocast("cpu")`, channels_last).
Each setting runs in its own subprocess; PyTorch is timed with every core and with one thread
(torch.set_num_threads) and the faster counts, as OpenMP suffers on shared cores. The rounds
interleave the settings, and the best round of each counts. Images are ImageNet-like JPEGs
(about 500x375, quality 90; benchmarks/convert.py makes them). Batch 1 is `--requests`
single-image requests; batch 32 is `--batch_requests` requests of 32 images. The last two lines
are the ratios of our best setting to PyTorch's best at each batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
IMAGE_SIZE = 227
NUM_CLASSES = 1000
SETTINGS = {
    "tf:float32": "SavedModel float32",
    "tf:bfloat16": "SavedModel bfloat16",
    "torch:float32": "PyTorch float32",
    "torch:bfloat16": "PyTorch bf16 autocast channels_last",
}
RESULT_PREFIX = "RESULT "


def jpegs(count: int) -> list[bytes]:
    sys.path.insert(0, HERE)
    import numpy as np
    from convert import imagenet_like_jpeg

    rng = np.random.default_rng(0)
    return [imagenet_like_jpeg(rng) for _ in range(count)]


def batches(images: list[bytes], batch_size: int, count: int) -> list[list[bytes]]:
    return [[images[(start * batch_size + i) % len(images)] for i in range(batch_size)]
            for start in range(count)]


def time_requests(answer, requests: list[list[bytes]]) -> float:
    """Images per second over `requests`, after two untimed ones."""
    for request in requests[:2]:
        answer(request)
    start = time.perf_counter()
    for request in requests:
        answer(request)
    return sum(len(request) for request in requests) / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- workers


def tf_worker(saved_model: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    serve = tf.saved_model.load(saved_model).signatures["serving_default"]

    def answer(request):
        outputs = serve(image_bytes=tf.constant(request))
        return outputs["classes"].numpy(), outputs["scores"].numpy()

    return answer


def torch_worker(precision: str):
    import io

    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    from alexnet_tf import imagenet
    from train_throughput import torch_alexnet

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    network = torch_alexnet(torch.nn).eval()
    mean = np.asarray(imagenet.RGB_MEAN, np.float32)
    if precision == "bfloat16":
        network = network.to(memory_format=torch.channels_last)

    def preprocess(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            scale = 256 / min(image.size)
            size = (max(256, round(image.width * scale)), max(256, round(image.height * scale)))
            image = image.resize(size, Image.BILINEAR)
            left, top = (image.width - IMAGE_SIZE) // 2, (image.height - IMAGE_SIZE) // 2
            image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
            return np.asarray(image, np.float32) - mean

    def answer(request):
        pixels = torch.from_numpy(np.stack([preprocess(data) for data in request])).permute(0, 3, 1, 2)
        with torch.inference_mode():
            if precision == "bfloat16":
                pixels = pixels.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = network(pixels)
            else:
                logits = network(pixels.contiguous())
            scores, classes = torch.softmax(logits.float(), dim=-1).topk(5)
        return classes.numpy(), scores.numpy()

    return answer


def run_worker(args: argparse.Namespace) -> None:
    framework, precision = args.worker.split(":")
    images = jpegs(args.images)
    requests = {"1": batches(images, 1, args.requests), "32": batches(images, 32, args.batch_requests)}
    if framework == "tf":
        answer = tf_worker(os.path.join(args.export_dir, precision, "1"))
        result = {batch: time_requests(answer, batch_requests) for batch, batch_requests in requests.items()}
    else:
        # PyTorch's OpenMP threads wait for each other at every op: on cores other jobs share,
        # all-core runs can be 5-10x slower than one thread (measured here), so both count.
        import torch

        answer = torch_worker(precision)
        result = {batch: 0.0 for batch in requests}
        for threads in sorted({1, os.cpu_count()}, reverse=True):
            torch.set_num_threads(threads)
            for batch, batch_requests in requests.items():
                result[batch] = max(result[batch], time_requests(answer, batch_requests))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- parent


def export_models(export_dir: str) -> None:
    """The paper network, exported once per precision (random weights: speed only)."""
    sys.path.insert(0, REPO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from alexnet_tf.export import exporter as export
    from alexnet_tf.model import alexnet as model

    keras.utils.set_random_seed(0)
    network = model.build_alexnet(num_classes=NUM_CLASSES, variant="paper", image_size=IMAGE_SIZE)
    for precision in ("float32", "bfloat16"):
        export.export_model(network, os.path.join(export_dir, precision), version=1, precision=precision)


def measure(setting: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f"--worker={setting}",
               f"--export_dir={args.export_dir}", f"--images={args.images}",
               f"--requests={args.requests}", f"--batch_requests={args.batch_requests}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"{setting} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the best counts.")
    parser.add_argument("--requests", type=int, default=40, help="Timed batch-1 requests per round.")
    parser.add_argument("--batch_requests", type=int, default=4, help="Timed batch-32 requests per round.")
    parser.add_argument("--images", type=int, default=64, help="Distinct JPEGs the requests cycle through.")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"Of: {', '.join(SETTINGS)}.")
    parser.add_argument("--export_dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    settings = [s for s in args.settings.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="alexnet_tf_serving_bench_") as export_dir:
        args.export_dir = export_dir
        if any(s.startswith("tf:") for s in settings):
            export_models(export_dir)
        best: dict[str, dict[str, float]] = {s: {"1": 0.0, "32": 0.0} for s in settings}
        for round_index in range(args.rounds):
            for setting in settings:
                result = measure(setting, args)
                for batch, rate in result.items():
                    best[setting][batch] = max(best[setting][batch], rate)
                print(f"round {round_index + 1}: {SETTINGS[setting]:38s} batch 1 {result['1']:6.1f} "
                      f"images/s, batch 32 {result['32']:6.1f} images/s", flush=True)
    print(f"{os.cpu_count()} cores, best of {args.rounds} rounds, images/s (JPEG bytes in, top-5 out):")
    for setting in settings:
        print(f"  {SETTINGS[setting]:38s} batch 1 {best[setting]['1']:6.1f}  batch 32 {best[setting]['32']:6.1f}")
    ours = [s for s in settings if s.startswith("tf:")]
    theirs = [s for s in settings if s.startswith("torch:")]
    if not ours or not theirs:
        return
    for batch, target in (("32", 2.0), ("1", 1.5)):
        mine = max(ours, key=lambda s: best[s][batch])
        peer = max(theirs, key=lambda s: best[s][batch])
        print(f"batch {batch}: {SETTINGS[mine]} {best[mine][batch]:.1f} vs {SETTINGS[peer]} "
              f"{best[peer][batch]:.1f} images/s: {best[mine][batch] / best[peer][batch]:.2f}x "
              f"(target >= {target}x)")


if __name__ == "__main__":
    main()
