"""Finds the shard behind a failed read, since TensorFlow's errors name no file.

When a record is damaged, tf.data says `corrupted record at 24067` or `truncated record at
24055` (a byte offset in some file), `Could not parse example input` or `Invalid JPEG data`, and
nothing says which of 1,024 shards it was. So after a failure the split's shards are read again
one at a time, first whole (fast, in parallel), then record by record in the one that fails, to
name the file, the record and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence

import keras
import tensorflow as tf
from absl import logging

from alexnet_tf.data import records
from alexnet_tf.data.shard_listing import VERIFY_HINT, list_shards

_PROGRESS_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Damage:
    """What is wrong with one shard: `record` is the 1-based position of the first bad record."""

    path: str
    record: int | None
    problem: str

    def describe(self) -> str:
        if self.record is None:
            return f"{self.path} is damaged: {self.problem}"
        return f"{self.path} is damaged: record {self.record} {self.problem}"


def is_read_failure(error: BaseException) -> bool:
    """Whether `error` may come from a damaged record (rather than from the flags or model).

    A parse error quoting a record's binary bytes reaches Python as UnicodeDecodeError: TF
    builds the message from the raw value and the binding cannot decode it.
    """
    if isinstance(error, (tf.errors.DataLossError, UnicodeDecodeError)):
        return True
    if isinstance(error, tf.errors.InvalidArgumentError):
        return "label" not in error.message.lower()
    return False


def needs_decoding(error: BaseException) -> bool:
    """A DataLossError is found by reading the records alone; anything else may need parsing and
    decoding every image, which costs far more."""
    return not isinstance(error, tf.errors.DataLossError)


def _whole_shard_reads(path: str, decode: bool) -> bool:
    dataset = tf.data.TFRecordDataset(path, buffer_size=1 << 20)
    if decode:
        def decode_record(serialized):
            example = tf.io.parse_single_example(serialized, records.PARSE_SPEC)
            return tf.shape(tf.io.decode_jpeg(example[records.ENCODED], channels=3))[0]

        dataset = dataset.map(decode_record, num_parallel_calls=tf.data.AUTOTUNE)
    try:
        dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
    except (tf.errors.OpError, UnicodeDecodeError):
        return False
    return True


def _first_line(error: tf.errors.OpError) -> str:
    for line in error.message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$", "", line).strip()
        if line:
            return line
    return type(error).__name__


def _locate(path: str, decode: bool) -> Damage | None:
    """The first bad record of a shard that failed to read whole, found one record at a time."""
    iterator = iter(tf.data.TFRecordDataset(path))
    position = 0
    while True:
        position += 1
        try:
            serialized = next(iterator)
        except StopIteration:
            return None
        except tf.errors.DataLossError as error:
            message = _first_line(error)
            offset = re.search(r"(corrupted|truncated) record at (\d+)", message)
            if offset and offset.group(1) == "truncated":
                return Damage(path, position, f"is cut off at byte {offset.group(2)}: the file is "
                              "truncated (an interrupted copy or write)")
            if offset:
                return Damage(path, position, f"is corrupted at byte {offset.group(2)}: its "
                              "checksum does not match (bit rot or a bad copy)")
            return Damage(path, position, f"is unreadable: {message}")
        if not decode:
            continue
        try:
            example = tf.io.parse_single_example(serialized, records.PARSE_SPEC)
        except (tf.errors.InvalidArgumentError, UnicodeDecodeError):
            return Damage(path, position, "is not a tf.train.Example with image/encoded and "
                          "image/class/label (written by something else)")
        try:
            tf.io.decode_jpeg(example[records.ENCODED], channels=3)
        except tf.errors.InvalidArgumentError as error:
            return Damage(path, position, f"holds a JPEG that does not decode ({_first_line(error)})")


def find_damage(files: Sequence[str], *, decode: bool) -> Damage | None:
    """The first damaged shard among `files`, or None if every one reads (and, with `decode`,
    parses and decodes) whole. Logs progress, since on ImageNet this reads every byte again."""
    started = last_report = time.monotonic()
    for done, path in enumerate(files):
        if time.monotonic() - last_report >= _PROGRESS_SECONDS:
            last_report = time.monotonic()
            logging.info("Looking for the damaged shard: %d of %d read, %.0f s", done, len(files),
                         last_report - started)
        if not _whole_shard_reads(path, decode):
            damage = _locate(path, decode)
            if damage is not None:
                return damage
    return None


def size_mismatch(files: Sequence[str], manifest: dict) -> Damage | None:
    """The first of `files` whose size is not the one manifest.json records: found from the
    file system alone, where reading ImageNet again takes hours."""
    recorded = {shard.get("shard"): shard.get("bytes")
                for entry in (manifest.get("splits") or {}).values() if isinstance(entry, dict)
                for shard in entry.get("shards") or () if isinstance(shard, dict)}
    for path in files:
        expected = recorded.get(path.rsplit("/", 1)[-1])
        if isinstance(expected, int):
            size = tf.io.gfile.stat(path).length
            if size != expected:
                return Damage(path, None, f"it is {size:,} bytes where manifest.json records "
                              f"{expected:,} (truncated by an interrupted copy, or replaced)")
    return None


def diagnose(error: BaseException, shards_by_split: dict[str, Sequence[str]],
             first: str | None = None, manifest: dict | None = None) -> Damage | None:
    """The damaged shard behind `error`, searching the split `first` before the others."""
    order = sorted(shards_by_split, key=lambda split: split != first)
    if manifest:
        for split in order:
            damage = size_mismatch(shards_by_split[split], manifest)
            if damage is not None:
                return damage
    total = sum(len(shards_by_split[split]) for split in order)
    logging.warning("Reading the records failed; reading the %d shards again to find the "
                    "damaged one (Ctrl-C to skip)", total)
    decode = needs_decoding(error)
    try:
        for split in order:
            damage = find_damage(shards_by_split[split], decode=decode)
            if damage is not None:
                return damage
    except KeyboardInterrupt:
        logging.warning("Stopped looking for the damaged shard")
    return None


def diagnose_data_dir(error: BaseException, data_dir: str, splits: Sequence[str],
                      first: str | None = None) -> Damage | None:
    """`diagnose` over the shards the tools read from `data_dir` (the manifest's, if any)."""
    manifest = records.read_manifest(data_dir) or {}
    shards = {split: list_shards(data_dir, split, manifest).files for split in splits}
    return diagnose(error, shards, first, manifest)


def explain(error: BaseException, damage: Damage | None, data_dir: str) -> str:
    """The lines telling the user what is wrong and what checks the rest."""
    hint = VERIFY_HINT.format(data_dir)
    if damage is None:
        cause = _first_line(error) if isinstance(error, tf.errors.OpError) else str(error)
        return (f"reading the records in {data_dir} failed ({cause}), yet every shard reads "
                f"again whole; {hint}")
    return (f"{damage.describe()}.\nReplace that shard (convert again or copy it again); "
            f"{hint}.")


def resume_point(checkpoint_dir: str) -> str:
    """Which checkpoint the same command resumes from, in words."""
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if not path:
        return "the same command then starts afresh (no checkpoint was saved yet)"
    try:
        epochs = int(tf.train.load_variable(path, "completed_epochs/.ATTRIBUTES/VARIABLE_VALUE"))
        steps = int(tf.train.load_variable(path, "steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        return f"the same command then resumes from {path}"
    into = f", {steps} steps into the next" if steps else ""
    return (f"the same command then resumes from {path} ({epochs} epoch"
            f"{'' if epochs == 1 else 's'} done{into})")


class SplitBeingRead(keras.callbacks.Callback):
    """Remembers whether `fit` was training or validating, so a failed read is searched for in
    that split's shards first."""

    def __init__(self):
        super().__init__()
        self.split = "train"

    def on_test_begin(self, logs=None):
        self.split = "validation"

    def on_test_end(self, logs=None):
        self.split = "train"
