"""Second pass: plans the shards over the checked images and writes each one atomically.

A shard's content depends only on the plan (which images, in which order) and the options, never
on how many workers run or in which order they finish: the same input gives byte-identical shards
whatever `--num_workers` is. Each shard is written under `OUT/.incomplete/` (a name that
`train-*` patterns never match), renamed into place when complete, and then described by a small
status file in `OUT/.shards/`. A rerun keeps every shard whose status matches the current plan
and redoes the rest, so a crash or Ctrl-C costs at most the shards in flight.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import random
import sys

from alexnet_tf.convert import progress, resize, tfrecord
from alexnet_tf.data import records
from alexnet_tf.convert.checks import CheckedImage
from alexnet_tf.convert.images import BrokenImage, prepare_image
from alexnet_tf.convert.sources import UnreadableSource, read_source

INCOMPLETE_DIR = ".incomplete"
STATUS_DIR = ".shards"
# Bump when the bytes written for the same input change, so old shards are not kept by mistake.
SHARD_FORMAT_VERSION = 1


class InputChanged(Exception):
    """An image changed or vanished between the check and the write; a rerun picks it up.

    `origin` names the image, so the caller can discard its check and the rerun checks it anew.
    """

    def __init__(self, message: str, origin: str):
        super().__init__(message, origin)
        self.message, self.origin = message, origin

    def __str__(self) -> str:
        return self.message


class ShardWriteFailed(Exception):
    """The output could not be written (disk full, I/O error); nothing incomplete is left looking complete."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to write one shard, and nothing that varies between runs."""

    output_dir: str
    split: str
    index: int
    num_shards: int
    images: tuple[CheckedImage, ...]
    class_text: dict[str, str]
    label_offset: int
    max_pixels: int
    class_names: tuple[str, ...]  # label i is class_names[i]: the run's labels.txt
    resize: resize.ResizeOptions = resize.ResizeOptions()

    @property
    def name(self) -> str:
        return records.shard_name(self.split, self.index, self.num_shards)

    @property
    def path(self) -> str:
        return os.path.join(self.output_dir, self.name)

    @property
    def status_path(self) -> str:
        return os.path.join(self.output_dir, STATUS_DIR, self.name + ".json")

    def digest(self) -> str:
        """Identifies the planned content: a rerun keeps a shard only if this matches."""
        plan = {
            "version": SHARD_FORMAT_VERSION,
            "label_offset": self.label_offset,
            "max_pixels": self.max_pixels,
            "images": [(i.source.origin, i.source.synset, i.sha1, i.source.boxes) for i in self.images],
            "text": sorted(self.class_text.items()),
            # The whole list, not only this shard's classes: another list moves their labels.
            "class_names": list(self.class_names),
        }
        if self.resize.active:  # absent by default, so shards written before the option stay valid
            plan["resize"] = self.resize.manifest_entry()
        return hashlib.sha256(json.dumps(plan, sort_keys=True).encode("utf-8")).hexdigest()


def plan_shards(images: list[CheckedImage], num_shards: int, *, shuffle: bool, seed: int) -> list[tuple[CheckedImage, ...]]:
    """Splits the images into `num_shards` runs whose sizes differ by at most one.

    Training images are shuffled across shards with a fixed seed, so every shard holds a mix of
    classes and a reader that interleaves a few shards already sees a well-mixed stream.
    """
    ordered = list(images)
    if shuffle:
        random.Random(seed).shuffle(ordered)
    bounds = [index * len(ordered) // num_shards for index in range(num_shards + 1)]
    return [tuple(ordered[bounds[i] : bounds[i + 1]]) for i in range(num_shards)]


def load_status(task: ShardTask) -> dict | None:
    """The status of a shard finished by an earlier run of the same plan, or None."""
    try:
        with open(task.status_path, encoding="utf-8") as handle:
            status = json.load(handle)
        if status.get("digest") == task.digest() and os.path.getsize(task.path) == status.get("bytes"):
            return status
    except (OSError, ValueError):
        pass
    return None


def _jpeg_bytes(image: CheckedImage, data: bytes, task: ShardTask, where: resize.Geometry) -> bytes:
    """The record's JPEG. A plain JPEG was decoded to its last coefficient by the check: its bytes
    go in as they are, unless `--resize_shorter_side` changes its size."""
    if hashlib.sha1(data).hexdigest() != image.sha1:
        raise InputChanged(f"{image.source.origin} changed since it was checked", image.source.origin)
    try:
        if not where.unchanged:
            return resize.resized_jpeg(data, where, task.resize.jpeg_quality)
        if image.repair is None:
            return data
        return prepare_image(data, task.max_pixels).jpeg_bytes
    except (BrokenImage, OSError, ValueError) as error:  # cannot happen for the same bytes; kept so a bug cannot drop an image silently
        raise InputChanged(f"{image.source.origin}: {error}", image.source.origin) from error


def sha256_and_size(path: str, sync: bool = False) -> tuple[str, int]:
    """What the manifest records of a shard; `sync` also forces the file to disk first."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        if sync:
            os.fsync(handle.fileno())
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _record_writer(path: str):
    """TensorFlow's own writer where TensorFlow is already loaded (its C++ CRC-32C is free then),
    else ours, which writes the same bytes without importing TensorFlow (the worker processes)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "io"):
        return tf.io.TFRecordWriter(path)
    return tfrecord.RecordWriter(path)


def _write_failures() -> tuple[type[BaseException], ...]:
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    return (OSError, errors.OpError) if errors is not None and hasattr(errors, "OpError") else (OSError,)


def write_shard(task: ShardTask) -> dict:
    """Writes one shard and returns its status (also saved beside it for later reruns).

    The shard reaches its final name only after every record is written and synced, so a full
    disk or a kill leaves at most a file under `.incomplete/`, which the next run deletes.
    """
    try:
        return _write_shard(task)
    except _write_failures() as error:
        message = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
        raise ShardWriteFailed(f"writing {task.name} in {task.output_dir} failed: {message}") from None


def _write_shard(task: ShardTask) -> dict:
    labels = {name: index for index, name in enumerate(task.class_names)}
    temporary = os.path.join(task.output_dir, INCOMPLETE_DIR, task.name)
    classes: collections.Counter = collections.Counter()
    open_archives: dict[str, object] = {}
    written = None
    try:
        with _record_writer(temporary) as writer:
            for image in task.images:
                source = image.source
                try:
                    data = read_source(source, open_archives)
                except UnreadableSource as error:
                    raise InputChanged(f"{source.origin}: {error} (it was readable when checked)",
                                       source.origin) from error
                where = resize.geometry(image.height, image.width, task.resize)
                writer.write(
                    tfrecord.serialize_example(
                        jpeg_bytes=_jpeg_bytes(image, data, task, where),
                        label=labels[source.synset] + task.label_offset,
                        synset=source.synset,
                        text=task.class_text.get(source.synset, source.synset),
                        height=where.height,
                        width=where.width,
                        filename=source.filename,
                        boxes=tuple(where.relative_box(box) for box in source.boxes),
                    )
                )
                classes[source.synset] += 1
                progress.count_images(1)
            if isinstance(writer, tfrecord.RecordWriter):  # it hashed what it wrote
                writer.sync()
                written = writer.sha256(), writer.size
    finally:
        for handle in open_archives.values():
            handle.close()
    sha256, size = written or sha256_and_size(temporary, sync=True)
    os.replace(temporary, task.path)
    status = {
        "shard": task.name,
        "digest": task.digest(),
        "records": len(task.images),
        "bytes": size,
        "sha256": sha256,
        "classes": dict(sorted(classes.items())),
    }
    # Not synced: load_status trusts it only if it matches the plan and the shard's size, and the
    # shard itself was synced before its rename.
    progress.write_json_atomically(task.status_path, status, durable=False)
    return status
