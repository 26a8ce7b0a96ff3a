"""Shards as they reach users: damaged the ways shards get damaged, or beside a manifest."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from alexnet_tf import imagenet
from alexnet_tf.data import records

KINDS = ("corrupted", "truncated", "not_an_example", "bad_jpeg")


def _rewrite_with(path: str, position: int, bad_record: bytes) -> None:
    kept = [bytes(record.numpy()) for record in tf.data.TFRecordDataset(path)]
    kept[position] = bad_record
    with tf.io.TFRecordWriter(path) as writer:
        for record in kept:
            writer.write(record)


def damage_shard(path: str, kind: str) -> None:
    """Damages the shard at `path` in place, past its first record.

    corrupted: 64 bytes flipped in the middle (bit rot); truncated: the second half cut off (an
    interrupted copy); not_an_example: a record holding raw JPEG bytes instead of an Example;
    bad_jpeg: an Example whose image/encoded starts like a JPEG and then is noise.
    """
    if kind in ("corrupted", "truncated"):
        with open(path, "rb") as handle:
            data = bytearray(handle.read())
        middle = len(data) // 2
        if kind == "truncated":
            data = data[:middle]
        else:
            data[middle:middle + 64] = bytes(byte ^ 0xFF for byte in data[middle:middle + 64])
        with open(path, "wb") as handle:
            handle.write(bytes(data))
    elif kind == "not_an_example":
        _rewrite_with(path, 1, b"\xff\xd8\xff\xe0 a JPEG, not a tf.train.Example \xff\xd9")
    elif kind == "bad_jpeg":
        _rewrite_with(path, 1, records.build_example(
            jpeg_bytes=b"\xff\xd8\xff\xdb" + bytes(range(256)) * 4, label=0, synset="n01440764",
            text="tench", height=100, width=100, filename="broken.JPEG"))
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def write_manifest(directory: str, num_classes: int, label_offset: int = 0,
                   extra_classes: dict | None = None) -> None:
    """A converter-style manifest of the shards in `directory`: their names and record counts,
    the first `num_classes` ImageNet classes (plus `extra_classes`); no real sha256."""
    splits = {}
    for split in records.SPLITS:
        names = sorted(name for name in os.listdir(directory) if name.startswith(f"{split}-"))
        shards = [{"shard": name, "records": sum(1 for _ in tf.data.TFRecordDataset(os.path.join(directory, name))),
                   "bytes": os.path.getsize(os.path.join(directory, name)), "sha256": "-"} for name in names]
        classes = {synset: 1 for synset in imagenet.synsets()[:num_classes]}
        classes.update(extra_classes or {})
        splits[split] = {"images": sum(shard["records"] for shard in shards), "classes": classes,
                         "shards": shards}
    with open(os.path.join(directory, records.MANIFEST_NAME), "w") as handle:
        json.dump({"options": {"label_offset": label_offset}, "splits": splits}, handle)
