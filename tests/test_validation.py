"""Every validation image scored once on any replicas, workers and batch size; float16 on many.

The multi-replica cases run in one fresh process (tests/replica_checks.py), which splits its
CPU into 3 devices and evaluates the same weights on 1, 2 and 3 replicas through the trainer's
validation and through `evaluate` (centre crop and ten crops), then takes float16 steps with an
overflow on one replica. Each case is judged here against the truth: every record once, in
one unpadded batch. Validation sets of 1, 7, 31, 33 and 200 images at a global batch of 12:
smaller than a batch, a prime, one short of and one over a whole number of steps for 3
replicas, and the size that crashed the trainer in issue 11.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alexnet_tf import distribution
from tests import replica_checks
from tests.record_fixtures import class_colour, write_image_records, write_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Validation set size -> records per shard (two uneven shards for 200).
SIZES = {1: (1,), 7: (7,), 31: (31,), 33: (33,), 200: (120, 80)}


def environment(**extra: str) -> dict:
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def write_validation_set(directory: str, shard_sizes: tuple[int, ...], seed: int) -> str:
    """Small noisy colour images with labels cycling over 10 classes, plus one train shard."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = 0
    for index, size in enumerate(shard_sizes):
        labels = [(first + i) % replica_checks.NUM_CLASSES for i in range(size)]
        images = [np.clip(np.array(class_colour(label, replica_checks.NUM_CLASSES))
                          + rng.normal(0, 40, (72, 90, 3)), 0, 255).astype(np.uint8)
                  for label in labels]
        name = f"validation-{index:05d}-of-{len(shard_sizes):05d}"
        write_image_records(os.path.join(directory, name), images, labels)
        first += size
    write_records(directory, split="train", num_classes=4, images_per_class=4, num_shards=1)
    return directory


@pytest.fixture(scope="module")
def validation_sets(tmp_path_factory) -> dict[int, str]:
    root = tmp_path_factory.mktemp("validation_sets")
    return {size: write_validation_set(str(root / f"size{size}"), shards, seed=size)
            for size, shards in SIZES.items()}


@pytest.fixture(scope="module")
def replica_results(validation_sets, tmp_path_factory) -> dict:
    out_dir = str(tmp_path_factory.mktemp("replica_results"))
    result = subprocess.run(
        [sys.executable, "-m", "tests.replica_checks", "replicas", out_dir,
         *validation_sets.values()],
        cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(os.path.join(out_dir, "replicas.json")) as handle:
        return dict(json.load(handle), out_dir=out_dir)
