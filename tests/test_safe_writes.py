"""Outputs written through a temporary name: a disk that fills up mid-write leaves the previous
file whole and nothing else, and says so in one line naming the file and the space it needs."""

from __future__ import annotations

import errno
import json
import os

import pytest
import tensorflow as tf

from alexnet_tf.train import safe_writes


class FillsUpAfter:
    """tf.io.gfile.GFile whose writes fail with ENOSPC after `room` bytes, as a full disk does."""

    def __init__(self, room: int):
        self.room = room
        self.real = tf.io.gfile.GFile

    def __call__(self, path, mode="r"):
        handle = self.real(path, mode)
        if "w" not in mode:
            return handle
        test = self

        class Filling:
            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                handle.close()

            def write(self, content):
                if len(content) > test.room:
                    handle.write(content[:test.room])
                    raise OSError(errno.ENOSPC, "No space left on device")
                handle.write(content)

        return Filling()


def test_a_full_disk_keeps_the_old_file_whole_and_names_the_new_one(tmp_path, monkeypatch):
    path = str(tmp_path / "history.json")
    safe_writes.write_json(path, [{"epoch": 1}])
    monkeypatch.setattr(tf.io.gfile, "GFile", FillsUpAfter(room=10))
    with pytest.raises(safe_writes.WriteFailed) as failure:
        safe_writes.write_json(path, [{"epoch": 1}, {"epoch": 2, "loss": 0.5}])
    message = str(failure.value)
    assert message.startswith(f"writing {path} failed: No space left on device (it needs about")
    assert "free there" in message and "\n" not in message
    with open(path) as handle:
        assert json.load(handle) == [{"epoch": 1}]
    assert os.listdir(tmp_path) == ["history.json"]


def test_other_write_errors_are_not_called_a_full_disk(tmp_path):
    with pytest.raises(tf.errors.OpError):
        safe_writes.write_bytes(str(tmp_path / "missing" / "folder" / "x.png"), b"png")
