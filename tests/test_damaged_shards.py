"""A damaged shard is found and named, whatever the damage (alexnet_tf.data.damaged_shards)."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from alexnet_tf.data import damaged_shards
from alexnet_tf.data import pipeline as data
from tests.shard_fixtures import KINDS, damage_shard
from tests.record_fixtures import write_records

EXPECTED_PROBLEM = {
    "corrupted": "is corrupted at byte",
    "truncated": "the file is truncated",
    "not_an_example": "is not a tf.train.Example",
    "bad_jpeg": "holds a JPEG that does not decode",
}


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> list[str]:
    return write_records(str(tmp_path_factory.mktemp("records")), num_classes=2,
                         images_per_class=6, num_shards=3, min_side=40, max_side=60)


def copy_of(paths: list[str], folder) -> list[str]:
    copies = []
    for path in paths:
        copy = os.path.join(str(folder), os.path.basename(path))
        tf.io.gfile.copy(path, copy)
        copies.append(copy)
    return copies


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_damage_is_named_with_its_shard(intact, tmp_path, kind, training):
    """Both pipelines fail on it (each decodes its own way), and the rescan names the shard."""
    shards = copy_of(intact, tmp_path)
    damage_shard(shards[1], kind)
    dataset = data.build_dataset(shards, training=training, batch_size=4, image_size=32, seed=1)
    with pytest.raises(Exception) as raised:
        for _ in dataset:
            pass
    assert damaged_shards.is_read_failure(raised.value), raised.value
    damage = damaged_shards.diagnose(raised.value, {"train": shards})
    assert damage is not None and damage.path == shards[1]
    assert EXPECTED_PROBLEM[kind] in damage.describe()
    assert damage.record >= 1


def test_intact_shards_are_not_blamed(intact):
    assert damaged_shards.find_damage(intact, decode=True) is None
