#!/usr/bin/env python3
"""Converter throughput against copying the same bytes with `cp -r`, measured in one run.

    python benchmarks/convert.py [--images=3000] [--num_workers=2] [--work_dir=DIR]

Generates a corpus of ImageNet-like JPEGs (about 500x375, quality 90, photo-like content so the
files are ~100 KB as in ImageNet), then times, on the same disk and cores:
  1. `cp -r RAW COPY` (the floor: moving the bytes and nothing else),
  2. `tools/build_tfrecords.py --num_workers=N` (list, fully decode every image to check it,
     write shards, checksum them).
Both read from the page cache (the corpus was just written), so the ratio compares the work
each does, not the disk. The last line is the ratio; the target is at least 0.5.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from alexnet_tf import imagenet  # noqa: E402

NUM_CLASSES = 10


def imagenet_like_jpeg(rng: np.random.Generator) -> bytes:
    """A 500x375-ish photo stand-in: smooth structure plus sensor-like noise, JPEG quality 90."""
    width, height = int(rng.integers(440, 520)), int(rng.integers(330, 400))
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noisy = np.clip(smooth + rng.normal(0, 9, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_corpus(raw_dir: str, images: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    synsets = imagenet.synsets()[:NUM_CLASSES]
    total = 0
    for index in range(images):
        synset = synsets[index % NUM_CLASSES]
        folder = os.path.join(raw_dir, "train", synset)
        os.makedirs(folder, exist_ok=True)
        data = imagenet_like_jpeg(rng)
        total += len(data)
        with open(os.path.join(folder, f"{synset}_{index}.JPEG"), "wb") as handle:
            handle.write(data)
    return total


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--work_dir", default=None, help="Where to put the corpus (default: a temp dir).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each side; the best is kept.")
    args = parser.parse_args()

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="alexnet_tf_convert_bench_")
    raw_dir = os.path.join(work_dir, "raw")
    shutil.rmtree(raw_dir, ignore_errors=True)
    total_bytes = write_corpus(raw_dir, args.images)
    print(f"corpus: {args.images} JPEGs, {total_bytes / args.images / 1024:.0f} KiB average, "
          f"{total_bytes / 2**20:.0f} MiB in {raw_dir}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tool = [sys.executable, os.path.join(REPO, "tools", "build_tfrecords.py"), f"--input_dir={raw_dir}",
            f"--num_workers={args.num_workers}", "--train_shards=16", "--validation_shards=1", "--progress_interval=0"]

    copy_seconds, convert_seconds = [], []
    for repeat in range(args.repeats):
        copy_dir = os.path.join(work_dir, f"copy{repeat}")
        out_dir = os.path.join(work_dir, f"out{repeat}")
        for path in (copy_dir, out_dir):
            shutil.rmtree(path, ignore_errors=True)
        copy_seconds.append(timed(["cp", "-r", raw_dir, copy_dir]))
        convert_seconds.append(timed([*tool, f"--output_dir={out_dir}"], env))
        shutil.rmtree(copy_dir)
        shutil.rmtree(out_dir)
    # The converter's time includes starting Python, TensorFlow and the worker processes; the
    # ratio reports that honestly, since a user pays it too.
    copy_rate = args.images / min(copy_seconds)
    convert_rate = args.images / min(convert_seconds)
    print(f"cp -r:            {copy_rate:8.0f} images/s  ({min(copy_seconds):.2f} s)")
    print(f"build_tfrecords:  {convert_rate:8.0f} images/s  ({min(convert_seconds):.2f} s, "
          f"--num_workers={args.num_workers}, {os.cpu_count()} cores)")
    if not args.work_dir:
        shutil.rmtree(work_dir)
    print(f"convert: build_tfrecords runs at {convert_rate / copy_rate:.2f}x the images/s of cp -r (target >= 0.50)")


if __name__ == "__main__":
    main()
