#!/usr/bin/env python3
"""Converter throughput against copying the same bytes with `cp -r`, measured in one run.

    python benchmarks/convert.py [--images=2000] [--num_workers=2] [--work_dir=DIR] [--repeats=3]

Generates a corpus of ImageNet-like JPEGs (about 500x375, quality 90, photo-like content with
sensor-like noise, ~63 KiB each), then times, on the same disk and cores, interleaved:
  1. `cp -r RAW COPY` (the floor: moving the bytes and nothing else),
  2. `tools/build_tfrecords.py --num_workers=N` (list, check every image by decoding it, write
     the shards, sync and checksum them, write the manifest),
each on the whole corpus and on its first half (hard links to the same files). Both read from the
page cache (the corpus was just written), so the ratio compares the work each does, not the disk;
with --cold every input file is evicted from the page cache (posix_fadvise DONTNEED, after a
sync) before every run, so both read from the disk.
On a shared disk, put --work_dir where nothing else deletes many files: ext4 allocates inodes
slowly next to recently deleted ones, and `cp -r` (2,000 new files) can then take ten times as
long, which flatters the ratio; the copy's CPU time is printed to show it (~0.1 s is normal).

Printed, best of --repeats for each:
  * end to end: images / wall time of the whole command, start-up and exit included, as a user
    waits for it; the converter's CPU time per image (its processes together) and its own stage
    times (listing, checking, writing, manifest) from its final log line;
  * steady state: the marginal rate of the second half, (N - N/2) / (t(N) - t(N/2)), which leaves
    out what does not grow with the corpus (start-up, worker start, exit);
  * with --resize_shorter_side=256 [--center_crop]: the same conversion storing the paper's
    downscaled images, timed in the same rounds, with its images/s and its shards' total size
    against the originals' (issue 15);
  * last line: the end-to-end ratio, the figure of the target (at least 0.5).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
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
_STAGES = re.compile(r"listing ([\d.]+) s, checking ([\d.]+) s, writing ([\d.]+) s, manifest ([\d.]+) s")


def imagenet_like_jpeg(rng: np.random.Generator) -> bytes:
    """A 500x375-ish photo stand-in: smooth structure plus sensor-like noise, JPEG quality 90."""
    width, height = int(rng.integers(440, 520)), int(rng.integers(330, 400))
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noisy = np.clip(smooth + rng.normal(0, 9, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_corpus(raw_dir: str, half_dir: str, images: int, seed: int = 0) -> int:
    """The corpus in `raw_dir`, and its first half (by index) as hard links in `half_dir`."""
    rng = np.random.default_rng(seed)
    synsets = imagenet.synsets()[:NUM_CLASSES]
    total = 0
    for index in range(images):
        synset = synsets[index % NUM_CLASSES]
        name = os.path.join("train", synset, f"{synset}_{index}.JPEG")
        os.makedirs(os.path.dirname(os.path.join(raw_dir, name)), exist_ok=True)
        data = imagenet_like_jpeg(rng)
        total += len(data)
        with open(os.path.join(raw_dir, name), "wb") as handle:
            handle.write(data)
        if index < images // 2:
            os.makedirs(os.path.dirname(os.path.join(half_dir, name)), exist_ok=True)
            os.link(os.path.join(raw_dir, name), os.path.join(half_dir, name))
    return total


def evict_from_page_cache(root: str) -> None:
    """Drops the (clean) cached pages of every file under `root`: the next read goes to disk."""
    os.sync()
    for folder, _, names in os.walk(root):
        for name in names:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)


def records_size(output_dir: str) -> int:
    """Bytes of the shards the converter wrote."""
    return sum(os.path.getsize(os.path.join(output_dir, name)) for name in os.listdir(output_dir) if "-of-" in name)


def timed(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and its children, stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--work_dir", default=None, help="Where to put the corpus (default: a temp dir).")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each side and size; the best is kept.")
    parser.add_argument("--cold", action="store_true", help="Evict the corpus from the page cache before every run.")
    parser.add_argument("--resize_shorter_side", type=int, default=None,
                        help="Also time the converter with this --resize_shorter_side (e.g. 256).")
    parser.add_argument("--center_crop", action="store_true", help="With --resize_shorter_side: add --center_crop.")
    args = parser.parse_args()

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="alexnet_tf_convert_bench_")
    corpora = {args.images: os.path.join(work_dir, "raw"), args.images // 2: os.path.join(work_dir, "raw_half")}
    for path in corpora.values():
        shutil.rmtree(path, ignore_errors=True)
    total_bytes = write_corpus(corpora[args.images], corpora[args.images // 2], args.images)
    print(f"corpus: {args.images} JPEGs, {total_bytes / args.images / 1024:.0f} KiB average, "
          f"{total_bytes / 2**20:.0f} MiB in {corpora[args.images]} (and its first half as hard links)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tool = [sys.executable, os.path.join(REPO, "tools", "build_tfrecords.py"), f"--num_workers={args.num_workers}",
            "--train_shards=16", "--validation_shards=1", "--progress_interval=0"]

    copy: dict[int, list[tuple[float, float, str]]] = {size: [] for size in corpora}
    convert: dict[int, list[tuple[float, float, str]]] = {size: [] for size in corpora}
    resized: list[tuple[float, float, str]] = []
    shard_bytes: dict[str, int] = {}
    resize_flags = []
    if args.resize_shorter_side:
        resize_flags = [f"--resize_shorter_side={args.resize_shorter_side}"] + (["--center_crop"] if args.center_crop else [])
    for repeat in range(args.repeats):
        for size, raw_dir in corpora.items():
            # The copies are deleted only at the end: ext4 creates files slowly next to inodes
            # deleted in the last ~30 s (it skips them when allocating), which would slow the
            # next `cp -r` several times over and flatter the ratio.
            copy_dir, out_dir = os.path.join(work_dir, f"copy{size}_{repeat}"), os.path.join(work_dir, "out")
            if args.cold:
                evict_from_page_cache(raw_dir)
            copy[size].append(timed(["cp", "-r", raw_dir, copy_dir]))
            if args.cold:
                evict_from_page_cache(raw_dir)
            convert[size].append(timed([*tool, f"--input_dir={raw_dir}", f"--output_dir={out_dir}"], env))
            if size == args.images:
                shard_bytes["originals"] = records_size(out_dir)
            shutil.rmtree(out_dir)
            if resize_flags and size == args.images:
                if args.cold:
                    evict_from_page_cache(raw_dir)
                resized.append(timed([*tool, *resize_flags, f"--input_dir={raw_dir}", f"--output_dir={out_dir}"], env))
                shard_bytes["resized"] = records_size(out_dir)
                shutil.rmtree(out_dir)
    for size in corpora:
        for repeat in range(args.repeats):
            shutil.rmtree(os.path.join(work_dir, f"copy{size}_{repeat}"))
    if not args.work_dir:
        shutil.rmtree(work_dir)

    full, half = args.images, args.images // 2
    copy_seconds, copy_cpu, _ = min(copy[full], key=lambda run: run[0])
    wall, cpu, stderr = min(convert[full], key=lambda run: run[0])
    copy_rate, convert_rate = full / copy_seconds, full / wall
    print(f"cp -r:            {copy_rate:8.0f} images/s  ({copy_seconds:.2f} s, CPU {copy_cpu:.2f} s; "
          f"all runs {', '.join(f'{run[0]:.2f}' for run in copy[full])} s)")
    print(f"build_tfrecords:  {convert_rate:8.0f} images/s  ({wall:.2f} s, --num_workers={args.num_workers}, "
          f"{os.cpu_count()} cores; CPU {cpu:.2f} s = {1000 * cpu / full:.2f} ms per image, all processes)")
    stages = _STAGES.search(stderr)
    if stages:
        listing, checking, writing, manifest = (float(value) for value in stages.groups())
        print(f"  its stages: listing {listing:.2f} s, checking {checking:.2f} s ({full / max(checking, 1e-9):.0f} images/s), "
              f"writing {writing:.2f} s ({full / max(writing, 1e-9):.0f} images/s), manifest {manifest:.2f} s; "
              f"interpreter start-up, imports and exit {wall - listing - checking - writing - manifest:.2f} s")
    marginal_convert = min(run[0] for run in convert[full]) - min(run[0] for run in convert[half])
    marginal_copy = min(run[0] for run in copy[full]) - min(run[0] for run in copy[half])
    if marginal_convert > 0 and marginal_copy > 0:
        steady_convert, steady_copy = (full - half) / marginal_convert, (full - half) / marginal_copy
        print(f"steady state (images {half + 1}-{full}): build_tfrecords {steady_convert:.0f} images/s, "
              f"cp -r {steady_copy:.0f} images/s: {steady_convert / steady_copy:.2f}x")
    else:
        print("steady state: not measurable in this run (the larger corpus was not slower; too noisy)")
    if resized:
        resized_wall, resized_cpu, _ = min(resized, key=lambda run: run[0])
        resized_rate = full / resized_wall
        print(f"{' '.join(resize_flags)}: {resized_rate:.0f} images/s ({resized_wall:.2f} s, CPU "
              f"{1000 * resized_cpu / full:.2f} ms per image), {resized_rate / convert_rate:.2f}x the originals' "
              f"{convert_rate:.0f}; records {shard_bytes['resized'] / 2**20:.1f} MiB vs "
              f"{shard_bytes['originals'] / 2**20:.1f} MiB ({shard_bytes['resized'] / shard_bytes['originals']:.2f}x), "
              f"{shard_bytes['resized'] / full / 1024:.1f} vs {shard_bytes['originals'] / full / 1024:.1f} KiB per image")
    cache = "read from disk (--cold)" if args.cold else "read from the page cache"
    print(f"convert ({cache}): build_tfrecords runs at {convert_rate / copy_rate:.2f}x the images/s of cp -r (target >= 0.50)")


if __name__ == "__main__":
    main()
