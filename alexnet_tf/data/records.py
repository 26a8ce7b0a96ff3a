"""The TFRecord format written by the converter and read by the input pipeline.

The keys follow the TF-slim/inception `build_imagenet_data.py` records, so tools written for
those (and the TPU reference models) read ours, and `--label_offset=1` reproduces their 1..1000
labels. Shards are named `train-00000-of-01024` and `validation-00000-of-00128`.

TensorFlow is imported only by what needs it (`read_manifest`, the parse specs), so the converter's worker processes can share these names without paying for it.
"""

from __future__ import annotations

import dataclasses
import json
import os

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
FILENAME = "image/filename"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMAX = "image/object/bbox/ymax"

SPLITS = ("train", "validation")
MANIFEST_NAME = "manifest.json"


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def read_manifest(records_dir: str) -> dict | None:
    """The converter's manifest.json in `records_dir`, or None if there is none.

    Read through tf.io.gfile so records on gs:// or hdfs:// work too. Invalid JSON is a
    ValueError naming the file: a damaged manifest must not be mistaken for a missing one.
    """
    import tensorflow as tf  # noqa: PLC0415  (see the module docstring)

    path = os.path.join(records_dir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as handle:
            return json.load(handle)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


@dataclasses.dataclass(frozen=True)
class BoundingBox:
    """A box in relative coordinates, clamped to [0, 1]."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


def build_example(
    *,
    jpeg_bytes: bytes,
    label: int,
    synset: str,
    text: str,
    height: int,
    width: int,
    filename: str,
    boxes: tuple[BoundingBox, ...] = (),
) -> bytes:
    """One serialized `tf.train.Example`; always an RGB JPEG (the converter guarantees it).

    The bytes are protobuf's deterministic serialization of the Example, so the same input
    gives byte-identical shards on every run. They are encoded without TensorFlow
    (`convert.tfrecord.serialize_example`, compared with `tf.train.Example` in the tests), so
    the converter's worker processes need not import it.
    """
    from alexnet_tf.convert import tfrecord  # noqa: PLC0415  (it imports this module)

    return tfrecord.serialize_example(
        jpeg_bytes=jpeg_bytes, label=label, synset=synset, text=text, height=height,
        width=width, filename=filename,
        boxes=tuple((box.xmin, box.ymin, box.xmax, box.ymax) for box in boxes))


def _parse_specs() -> dict[str, dict]:
    import tensorflow as tf  # noqa: PLC0415  (see the module docstring)

    fixed = tf.io.FixedLenFeature
    boxes = {key: tf.io.VarLenFeature(tf.float32)
             for key in (BBOX_XMIN, BBOX_YMIN, BBOX_XMAX, BBOX_YMAX)}
    return {
        # What the input pipeline needs; `tf.io.parse_single_example` ignores the rest.
        "PARSE_SPEC": {ENCODED: fixed([], tf.string), LABEL: fixed([], tf.int64)},
        # Everything, for --verify and for tests.
        "FULL_PARSE_SPEC": {
            ENCODED: fixed([], tf.string), FORMAT: fixed([], tf.string),
            LABEL: fixed([], tf.int64), SYNSET: fixed([], tf.string),
            TEXT: fixed([], tf.string), HEIGHT: fixed([], tf.int64),
            WIDTH: fixed([], tf.int64), CHANNELS: fixed([], tf.int64),
            COLORSPACE: fixed([], tf.string), FILENAME: fixed([], tf.string), **boxes,
        },
    }


def __getattr__(name: str):
    """`PARSE_SPEC` and `FULL_PARSE_SPEC`, built on first use (they need TensorFlow)."""
    if name in ("PARSE_SPEC", "FULL_PARSE_SPEC"):
        specs = _parse_specs()
        globals().update(specs)
        return specs[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
