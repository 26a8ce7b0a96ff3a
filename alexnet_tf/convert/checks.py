"""First pass: decide every image's fate (store, repair, skip) before any shard is planned.

Knowing which images are broken before planning is what keeps the shards balanced within one
record, and it means the skipped report is complete before a single shard is written. Results are
saved per chunk in `OUT/.checks/`, so an interrupted run does not check the same images again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from alexnet_tf.convert import progress
from alexnet_tf.convert.images import BrokenImage, prepare_image
from alexnet_tf.convert.sources import ImageSource, UnreadableSource, read_source

CHECKS_DIR = ".checks"
CHECK_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    """An image that will become a record; `sha1` pins the bytes that were checked."""

    source: ImageSource
    height: int
    width: int
    repair: str | None
    sha1: str


@dataclasses.dataclass(frozen=True)
class CheckTask:
    output_dir: str
    split: str
    index: int
    sources: tuple[ImageSource, ...]
    max_pixels: int

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, CHECKS_DIR, f"{self.split}-{self.index:06d}.json")

    def digest(self) -> str:
        plan = [CHECK_FORMAT_VERSION, self.max_pixels, [(s.origin, s.offset, s.size) for s in self.sources]]
        return hashlib.sha256(json.dumps(plan).encode("utf-8")).hexdigest()


def plan_checks(output_dir: str, split: str, sources: list[ImageSource], max_pixels: int, chunk_size: int) -> list[CheckTask]:
    return [
        CheckTask(output_dir, split, start // chunk_size, tuple(sources[start : start + chunk_size]), max_pixels)
        for start in range(0, len(sources), chunk_size)
    ]


def load_result(task: CheckTask) -> dict | None:
    try:
        with open(task.path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return None
    return result if result.get("digest") == task.digest() else None


def check_chunk(task: CheckTask) -> dict:
    """Reads and decodes each image of the chunk (every coefficient of a JPEG); saves and returns the verdicts."""
    verdicts = []
    open_archives: dict[str, object] = {}
    try:
        for source in task.sources:
            try:
                data = read_source(source, open_archives)
                image = prepare_image(data, task.max_pixels)
                verdicts.append({"ok": True, "height": image.height, "width": image.width,
                                 "repair": image.repair, "sha1": hashlib.sha1(data).hexdigest()})
            except (UnreadableSource, BrokenImage) as error:
                verdicts.append({"ok": False, "reason": str(error)})
            progress.count_images(1)
    finally:
        for handle in open_archives.values():
            handle.close()
    result = {"digest": task.digest(), "verdicts": verdicts}
    progress.write_json_atomically(task.path, result, durable=False)  # a cache: load_result checks it
    return result


def collect(tasks: list[CheckTask], results: dict[str, dict]) -> tuple[list[CheckedImage], list[dict]]:
    """The images to write, in listing order, and the skipped ones with their reasons."""
    good, skipped = [], []
    for task in tasks:
        for source, verdict in zip(task.sources, results[task.path]["verdicts"]):
            if verdict["ok"]:
                good.append(CheckedImage(source, verdict["height"], verdict["width"], verdict["repair"], verdict["sha1"]))
            else:
                skipped.append({"source": source.origin, "reason": verdict["reason"]})
    return good, skipped
