"""Which shards are read (alexnet_tf.data.shard_listing) and with which label offset
(alexnet_tf.data.label_offsets), for records with and without the converter's manifest."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import tensorflow as tf

from alexnet_tf.data import label_offsets, records, shard_listing
from tests.record_fixtures import write_records
from tests.shard_fixtures import write_manifest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_manifests_shards_are_read_and_the_files_beside_them_left_out(tmp_path):
    paths = write_records(str(tmp_path), num_classes=2, images_per_class=2, num_shards=2)
    tf.io.gfile.copy(paths[0], str(tmp_path / "train-00000-of-00003"))
    manifest = {"splits": {"train": {"shards": [{"shard": os.path.basename(p)} for p in paths]}}}
    listing = shard_listing.list_shards(str(tmp_path), "train", manifest)
    assert listing.files == paths
    assert [os.path.basename(p) for p in listing.left_out] == ["train-00000-of-00003"]
    # Without a manifest every train-*-of-* is read, as other converters' records need.
    assert len(shard_listing.list_shards(str(tmp_path), "train", None).files) == 3


def test_a_shard_the_manifest_lists_but_that_is_gone_is_named(tmp_path):
    manifest = {"splits": {"train": {"shards": [{"shard": "train-00000-of-00001"}]}}}
    with pytest.raises(shard_listing.ShardListingError, match="train-00000-of-00001.*--verify"):
        shard_listing.list_shards(str(tmp_path), "train", manifest)


def test_the_verify_command_the_message_names_runs_as_printed_from_anywhere(tmp_path):
    records_dir = tmp_path / "records"
    paths = write_records(str(records_dir), num_classes=2, images_per_class=2, num_shards=2)
    write_records(str(records_dir), split="validation", num_classes=2, images_per_class=1,
                  num_shards=1)
    write_manifest(str(records_dir), 2)
    os.remove(paths[1])
    with pytest.raises(shard_listing.ShardListingError) as raised:
        shard_listing.list_shards(str(records_dir), "train",
                                  records.read_manifest(str(records_dir)))
    command = shlex.split(re.search(r"\((python .*?--verify)", str(raised.value)).group(1))
    assert command[0] == "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, *command[1:]], cwd=str(elsewhere), timeout=120,
                            capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    # It runs, checks the shards and names the one that is gone.
    assert result.returncode == 1, result.stdout + result.stderr
    assert os.path.basename(paths[1]) in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("offset", [0, 1])
def test_the_offset_is_found_from_synset_and_label(tmp_path, offset):
    paths = write_records(str(tmp_path), num_classes=3, images_per_class=2, num_shards=2,
                          label_offset=offset)
    assert label_offsets.resolve(None, {}, paths, str(tmp_path)) == offset
    with pytest.raises(label_offsets.LabelOffsetError, match=f"--label_offset={1 - offset} disagrees"):
        label_offsets.resolve(1 - offset, {}, paths, str(tmp_path))
    # The manifest, when there is one, is the converter's word and is not second-guessed.
    assert label_offsets.resolve(None, {"options": {"label_offset": 1 - offset}}, paths, "") == 1 - offset


def test_records_without_an_imagenet_synset_fall_back_to_the_flag_or_zero(tmp_path):
    path = str(tmp_path / "train-00000-of-00001")
    example = tf.train.Example(features=tf.train.Features(feature={
        records.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[7]))}))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())
    found = label_offsets.offset_from_records([path])
    assert found.offset is None
    assert "none of the first 1 records has an ImageNet synset" in found.evidence
    assert label_offsets.resolve(None, {}, [path], str(tmp_path)) == 0
    assert label_offsets.resolve(3, {}, [path], str(tmp_path)) == 3
