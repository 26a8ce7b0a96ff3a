"""The label offset of records without a manifest, read from the records themselves.

The most common ImageNet TFRecords in the wild, those of the TPU `imagenet_to_gcs.py` and of
inception's `build_imagenet_data.py`, number the classes 1..1000 and come without our
manifest.json. Read with offset 0, label 1000 falls outside a 1000-way softmax (an error on a
CPU, NaN on a GPU). Both write `image/class/synset` beside the label, so the offset is the
label minus the synset's 0-based ImageNet index, the same on every record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from alexnet_tf import imagenet
from alexnet_tf.data import records

_RECORDS_PER_SHARD = 4
_SHARDS_SAMPLED = 8


class LabelOffsetError(ValueError):
    """--label_offset disagrees with what the records say; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class FoundOffset:
    """The offset seen on the sampled records, or None with the reason it cannot be told."""

    offset: int | None
    evidence: str


def _sample(files: Sequence[str]) -> list[tuple[int, str]]:
    spec = {records.LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
            records.SYNSET: tf.io.FixedLenFeature([], tf.string, default_value="")}
    found = []
    for path in files[:_SHARDS_SAMPLED]:
        for serialized in tf.data.TFRecordDataset(path).take(_RECORDS_PER_SHARD):
            example = tf.io.parse_single_example(serialized, spec)
            found.append((int(example[records.LABEL]),
                          example[records.SYNSET].numpy().decode("utf-8", "replace")))
    return found


def offset_from_records(files: Sequence[str]) -> FoundOffset:
    """Label minus ImageNet index of the synset, on the first records of the first shards."""
    try:
        sampled = _sample(files)
    except (tf.errors.OpError, UnicodeDecodeError):
        return FoundOffset(None, "the first records do not read (a damaged shard?)")
    index_of = imagenet.synset_to_label()
    offsets = {label - index_of[synset] for label, synset in sampled if synset in index_of}
    if not offsets:
        return FoundOffset(None, f"none of the first {len(sampled)} records has an ImageNet "
                                 "synset in image/class/synset")
    if len(offsets) > 1:
        return FoundOffset(None, f"the first {len(sampled)} records disagree "
                                 f"(label - synset index is {sorted(offsets)})")
    offset = offsets.pop()
    example = next((label, synset) for label, synset in sampled if synset in index_of)
    return FoundOffset(offset, f"image/class/label is the image/class/synset's 0-based ImageNet "
                               f"index + {offset} on the first {len(sampled)} records (e.g. "
                               f"{example[1]} has label {example[0]})")


def resolve(flag_value: int | None, manifest: dict, files: Sequence[str], data_dir: str) -> int:
    """The offset to subtract: the flag's, else the manifest's, else the records' own.

    Without a manifest, a flag that contradicts the records is refused: every label would be
    off by the difference, silently.
    """
    options = manifest.get("options") if isinstance(manifest, dict) else None
    if isinstance(options, dict) and "label_offset" in options:
        return int(flag_value if flag_value is not None else options["label_offset"])
    found = offset_from_records(files)
    if found.offset is None:
        chosen = 0 if flag_value is None else flag_value
        logging.warning("No manifest.json in %s and the label offset cannot be told from the "
                        "records (%s): using %d", data_dir, found.evidence, chosen)
        return chosen
    if flag_value is not None and flag_value != found.offset:
        raise LabelOffsetError(
            f"--label_offset={flag_value} disagrees with the records in {data_dir}: "
            f"{found.evidence}; pass --label_offset={found.offset} or leave the flag out")
    logging.info("No manifest.json in %s: label offset %d, found from the records: %s",
                 data_dir, found.offset, found.evidence)
    return found.offset
