"""The trainer on a damaged shard: one short message naming the shard, what checks the others,
and the checkpoint the same command resumes from once the shard is replaced."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.record_fixtures import write_records
from tests.shard_fixtures import damage_shard, write_manifest
from tests.test_train import run_trainer


@pytest.mark.slow
def test_a_damaged_training_shard_is_named_with_the_checkpoint_the_rerun_resumes_from(tmp_path):
    records = str(tmp_path / "records")
    write_records(records, split="train", num_classes=4, images_per_class=8, num_shards=2,
                  min_side=70, max_side=90)
    write_records(records, split="validation", num_classes=4, images_per_class=2, num_shards=1,
                  min_side=70, max_side=90, seed=1)
    write_manifest(records, 4)
    model_dir = str(tmp_path / "model")
    first = run_trainer(records, model_dir, "--epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]

    shard = os.path.join(records, "train-00001-of-00002")
    # A stray copy beside the shards: not read, and said so.
    shutil.copy(shard, os.path.join(records, "train-00001-of-00003"))
    damage_shard(shard, "corrupted")
    damaged = run_trainer(records, model_dir, "--epochs=2")
    assert damaged.returncode == 1
    assert "Traceback" not in damaged.stderr
    error = damaged.stderr[damaged.stderr.index("Error: "):].splitlines()
    assert len(error) <= 3, damaged.stderr[-3000:]
    assert error[0].startswith(f"Error: {shard} is damaged: record ")
    assert "checksum does not match" in error[0]
    assert (f"python -m alexnet_tf.convert --output_dir={records} --verify checks every shard"
            in error[1])
    checkpoint = os.path.join(model_dir, "checkpoints", "ckpt-1")
    assert error[2] == f"The same command then resumes from {checkpoint} (1 epoch done)."
    assert "left out 1 other train-*-of-* files beside them: train-00001-of-00003" in damaged.stderr
