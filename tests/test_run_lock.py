"""One run per folder: the lock the trainer and the converter take, held by another live process,
released by a kill -9, and a second converter on one --output_dir refused with its holder named."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from alexnet_tf import run_lock
from alexnet_tf.convert import main as conversion
from tests import corpus

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER_SCRIPT = """
import sys, time
from alexnet_tf import run_lock
lock = run_lock.RunLock(sys.argv[1], what=sys.argv[2], flag=sys.argv[3]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def start_holder(directory: str, what: str, flag: str) -> subprocess.Popen:
    """Another process holding the folder's lock, as a running trainer or converter does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, directory, what, flag],
                              cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT),
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_folder_is_refused_naming_the_holder_and_a_kill_9_frees_it(tmp_path):
    directory = str(tmp_path / "model")
    holder = start_holder(directory, "trainer", "--model_dir")
    try:
        with pytest.raises(run_lock.FolderInUse) as refused:
            run_lock.RunLock(directory, what="trainer", flag="--model_dir").acquire()
        message = str(refused.value)
        assert f"--model_dir={directory} is in use by another trainer" in message
        assert f"process {holder.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # No cleanup by hand: the kernel dropped the dead process's lock.
    with run_lock.RunLock(directory, what="trainer", flag="--model_dir") as lock:
        assert f'"pid": {os.getpid()}' in open(lock.path).read()
    # Released: the same process takes it again.
    run_lock.RunLock(directory, what="trainer", flag="--model_dir").acquire().release()


def test_a_remote_folder_is_not_locked_and_says_so(caplog):
    lock = run_lock.RunLock("gs://bucket/runs/alexnet", what="trainer", flag="--model_dir")
    with caplog.at_level("WARNING"):
        lock.acquire()
    assert "cannot be locked" in caplog.text
    lock.release()


def test_a_second_converter_on_one_output_dir_is_refused_and_leaves_the_first_alone(tmp_path):
    raw, output = str(tmp_path / "raw"), str(tmp_path / "out")
    corpus.write_extracted(raw, corpus.make_images(per_class=1, quirks=False),
                           corpus.validation_images(per_class=1))
    holder = start_holder(output, "converter", "--output_dir")
    # The first converter's shard in progress, which a second one used to delete under it.
    in_progress = os.path.join(output, ".incomplete", "train-00000-of-00001")
    os.makedirs(os.path.dirname(in_progress))
    with open(in_progress, "wb") as handle:
        handle.write(b"records so far")
    try:
        with pytest.raises(conversion.ConversionError,
                           match=rf"--output_dir={output} is in use by another converter: "
                                 rf"process {holder.pid} on host"):
            conversion.convert(raw, output, train_shards=1, validation_shards=1, num_workers=1)
        assert open(in_progress, "rb").read() == b"records so far"
        assert not os.path.exists(os.path.join(output, "manifest.json"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    manifest = conversion.convert(raw, output, train_shards=1, validation_shards=1, num_workers=1)
    assert manifest["splits"]["train"]["images"] > 0


def test_a_folder_that_cannot_hold_a_run_is_explained(tmp_path):
    (tmp_path / "file").write_text("x")
    for directory, expected in ((tmp_path / "file", "is a file, not a folder"),
                                (tmp_path / "file" / "model", f"is under {tmp_path / 'file'}")):
        with pytest.raises(OSError) as failure:
            run_lock.RunLock(str(directory), what="trainer", flag="--model_dir").acquire()
        assert run_lock.explain_folder_error(str(directory), failure.value).startswith(expected)
    # What a folder without write permission gives a user who is not root.
    denied = PermissionError(13, "Permission denied")
    assert run_lock.explain_folder_error(str(tmp_path / "new"), denied) == (
        "is not writable (Permission denied)")
