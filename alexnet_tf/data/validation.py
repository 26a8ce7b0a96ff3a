"""Every validation image scored exactly once, on any number of replicas and workers.

A synchronous step needs a batch on every replica, and a validation set rarely divides into
whole global batches (ImageNet's 50,000 images over 3 GPUs at 128, any user's own set). The
ways out, and why this module takes the last one:
  - drop the remainder: silently scores fewer images than the set holds;
  - let the last step be short: tf.distribute then hands the replicas that have no data an
    empty dummy batch (or, for a batch of static shape, a full-size dummy whose examples the
    metrics count), which the two-tower convolutions cannot split and which skews the counts;
  - pad each input pipeline with zero-weight examples up to whole global batches and weight
    the loss and every metric by the per-example weight (what TF Model Garden does for TPU
    evaluation): every replica runs the same shapes, every real image counts once, padding
    counts zero times, and the waste is under one global batch per pass.

The metrics then equal a one-replica evaluation of the same records, count-weighted, to float
round-off: the metric totals and counts are summed over replicas (SUM-aggregated), and the
loss is tracked as (sum of weighted losses, sum of weights), not as a mean per batch.
"""

from __future__ import annotations

import math
import os

import tensorflow as tf
from absl import logging


def records_per_file(files: list[str], split_manifest: dict | None = None) -> list[int]:
    """Records in each file: from the converter's manifest when it lists them all, else read."""
    listed = {entry.get("shard"): entry.get("records")
              for entry in (split_manifest or {}).get("shards", ())}
    names = [os.path.basename(file) for file in files]
    if all(isinstance(listed.get(name), int) for name in names):
        return [listed[name] for name in names]
    logging.warning("No manifest.json record counts for %d validation shard(s): counting the "
                    "records (one read pass)", len(files))
    return [int(tf.data.TFRecordDataset(file).reduce(tf.constant(0, tf.int64),
                                                     lambda count, _: count + 1))
            for file in files]


def records_per_pipeline(file_counts: list[int], num_pipelines: int, by_file: bool) -> list[int]:
    """How many records each of n input pipelines reads, as `data.build_dataset` deals them:
    files i, i+n, ... by file, else records i, i+n, ... of the common order."""
    if by_file:
        return [sum(file_counts[i::num_pipelines]) for i in range(num_pipelines)]
    total = sum(file_counts)
    return [len(range(i, total, num_pipelines)) for i in range(num_pipelines)]


def steps_per_pass(pipeline_counts: list[int], global_batch_size: int) -> int:
    """Global steps that score every record once: enough for the fullest pipeline."""
    per_pipeline_batch = global_batch_size // len(pipeline_counts)
    return max(math.ceil(count / per_pipeline_batch) for count in pipeline_counts)


def examples_per_pipeline(steps: int, global_batch_size: int, num_pipelines: int) -> int:
    """What each pipeline yields, real and padding together, for `steps` global steps."""
    return steps * (global_batch_size // num_pipelines)


def pad_with_weightless(dataset: tf.data.Dataset, examples: int) -> tf.data.Dataset:
    """(image, label) -> (image, label, weight): the records with weight 1, then zero images
    with weight 0 up to `examples` in all.

    Unbatched, before `batch`, so the padding costs no decode and every batch is one copy.
    `examples` must be at least the records the dataset holds (`records_per_pipeline`).
    """
    image_spec, label_spec = dataset.element_spec
    weighted = dataset.map(lambda image, label: (image, label, tf.constant(1.0)))
    padding = tf.data.Dataset.from_tensors((
        tf.zeros(image_spec.shape, image_spec.dtype), tf.zeros(label_spec.shape, label_spec.dtype),
        tf.constant(0.0))).repeat()
    return weighted.concatenate(padding).take(examples)
