"""The trainer when things go wrong: divergence, a full disk, a second trainer, Ctrl-C, a bad
--model_dir, a resume with other flags.

Each run goes through `python -m alexnet_tf.train` in a subprocess, as a user's would. Most
start from a copy of one finished one-epoch run, so each fault costs one or two short runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.train import callbacks
from tests.test_train import (  # noqa: F401  (records_dir is a fixture)
    REPO_ROOT, environment, read_json, records_dir, run_trainer, start_trainer,
    trainer_command, wait_for_epochs)

# --seed=0, the seed most people type: it sets TensorFlow's global seed 0, under which the
# training pipeline's shuffles once failed to build (tests/test_data.py has the unit test).
BASE_FLAGS = ("--steps_per_epoch=4", "--seed=0")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def one_epoch_run(records_dir, tmp_path_factory) -> str:
    model_dir = str(tmp_path_factory.mktemp("one_epoch"))
    result = run_trainer(records_dir, model_dir, *BASE_FLAGS, "--epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def copy_of(model_dir: str, tmp_path) -> str:
    copy = str(tmp_path / "model")
    shutil.copytree(model_dir, copy)
    return copy


def checkpoint_files(model_dir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(model_dir, "checkpoints")))


def strict_json(path: str):
    """json.load, but a bare NaN or Infinity (which Python's json accepts) is an error."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")
    with open(path) as handle:
        return json.load(handle, parse_constant=refuse)


def test_a_diverging_resume_stops_at_the_first_nan_and_keeps_the_good_checkpoint(
        records_dir, one_epoch_run, tmp_path):
    model_dir = copy_of(one_epoch_run, tmp_path)
    result = run_trainer(records_dir, model_dir, *BASE_FLAGS, "--epochs=2",
                         "--learning_rate=1e9")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # The new rate is applied, not silently replaced by the checkpoint's.
    assert "--learning_rate 0.001 -> 1000000000.0: applied" in result.stderr
    [error] = error_lines(result.stderr)
    assert re.search(r"training diverged at epoch 2, step [1-4]: the training loss is nan", error)
    assert "lower --learning_rate" in error
    assert "resumes from " + os.path.join(model_dir, "checkpoints", "ckpt-1") in error
    # Nothing of the diverged epoch reached the disk: ckpt-1 is the latest, and finite.
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest.endswith("ckpt-1")
    assert not [name for name in checkpoint_files(model_dir) if name.startswith("ckpt-2")]
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name
    assert [record["epoch"] for record in strict_json(os.path.join(model_dir, "history.json"))] == [1]
    assert strict_json(os.path.join(model_dir, "summary.json"))["epochs_completed"] == 1


def test_history_and_summary_json_stay_valid_json_with_non_finite_numbers(tmp_path):
    path = str(tmp_path / "history.json")
    callbacks.write_json_atomically(path, [{"epoch": 1, "loss": float("nan"),
                                            "val_loss": float("inf")}])
    assert strict_json(path) == [{"epoch": 1, "loss": None, "val_loss": None}]
    assert os.listdir(tmp_path) == ["history.json"]


def run_with_file_size_limit(limit_bytes: int, records: str, model_dir: str, *flags: str):
    """The trainer with RLIMIT_FSIZE: every write past `limit_bytes` fails in the kernel
    (EFBIG), in TensorFlow's checkpoint writer and Keras's .keras writer alike, as a disk
    that fills up part-way through a file does."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(trainer_command(records, model_dir, *flags), cwd=REPO_ROOT,
                          env=environment(), capture_output=True, text=True, timeout=240,
                          preexec_fn=limit)


def sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.slow
def test_a_full_disk_leaves_no_partial_file_and_the_rerun_resumes(records_dir, one_epoch_run,
                                                                  tmp_path):
    model_dir = copy_of(one_epoch_run, tmp_path)
    model_before = sha256(os.path.join(model_dir, "model.keras"))
    limit = 20 * 2**20  # Far below a checkpoint's or model.keras's 150 MB at 67x67.

    # Epoch 2 trains, and its checkpoint cannot be written.
    result = run_with_file_size_limit(limit, records_dir, model_dir, *BASE_FLAGS, "--epochs=2")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [error] = error_lines(result.stderr)
    checkpoints = os.path.join(model_dir, "checkpoints")
    assert f"writing {os.path.join(checkpoints, 'ckpt-2')} failed: File too large" in error
    assert re.search(r"it needs about \d+ MB", error)
    assert "resumes from " + os.path.join(checkpoints, "ckpt-1") in error
    assert [name for name in checkpoint_files(model_dir) if "ckpt-2" in name] == []  # no _temp
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-1")

    # The rerun resumes from ckpt-1; here all its epochs are done, so it rewrites model.keras,
    # which fails too: the previous model.keras stays whole under its name, nothing beside it.
    result = run_with_file_size_limit(limit, records_dir, model_dir, *BASE_FLAGS, "--epochs=1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Resuming from " + os.path.join(checkpoints, "ckpt-1") in result.stderr
    [error] = error_lines(result.stderr)
    assert f"writing {os.path.join(model_dir, 'model.keras')} failed: File too large" in error
    assert sha256(os.path.join(model_dir, "model.keras")) == model_before
    assert not [name for name in os.listdir(model_dir) if "incomplete" in name]
    assert [record["epoch"] for record in strict_json(os.path.join(model_dir, "history.json"))] \
        in ([1], [1, 2])  # epoch 2's record was written before its checkpoint failed


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_ctrl_c_stops_the_first_with_where_it_stopped(
        records_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    first = start_trainer(records_dir, model_dir, *BASE_FLAGS, "--epochs=100",
                          log_path=str(tmp_path / "log"))
    try:
        wait_for_epochs(model_dir, 1, first)
        second = run_trainer(records_dir, model_dir, *BASE_FLAGS)
        assert second.returncode == 1, second.stderr[-3000:]
        [error] = error_lines(second.stderr)
        assert (f"--model_dir={model_dir} is in use by another trainer: process {first.pid} on "
                f"host {socket.gethostname()}") in error
        assert first.poll() is None  # The first one trains on, untouched.

        first.send_signal(signal.SIGINT)
        returncode = first.wait(timeout=120)
    finally:
        first.kill()
        first.wait()
    log = (tmp_path / "log").read_text()
    assert returncode == 130, log[-3000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert re.search(r"Interrupted at epoch \d+, step \d+; the same command then resumes from "
                     r".*ckpt-\d+ \(\d+ epochs? done", log), log[-2000:]


def test_a_resume_with_another_batch_size_is_refused_naming_both(records_dir, one_epoch_run,
                                                                tmp_path):
    model_dir = copy_of(one_epoch_run, tmp_path)
    result = run_trainer(records_dir, model_dir, *BASE_FLAGS, "--epochs=2", "--batch_size=8")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [error] = error_lines(result.stderr)
    assert "--batch_size=8 differs from its --batch_size=16" in error
    assert checkpoint_files(model_dir) == checkpoint_files(one_epoch_run)  # nothing trained


# "under a file" takes the same path; test_run_lock.py checks its wording in-process.
@pytest.mark.parametrize("which", ["a file", "not writable"])
def test_an_unusable_model_dir_gives_one_line_naming_it(records_dir, tmp_path, which):
    (tmp_path / "file").write_text("not a folder")
    model_dir = {"a file": tmp_path / "file", "not writable": tmp_path / "read_only" / "model"}[which]
    if which == "not writable":
        (tmp_path / "read_only").mkdir(mode=0o555)
        if os.access(tmp_path / "read_only", os.W_OK):
            pytest.skip("this user (root?) writes into read-only folders")
    result = run_trainer(records_dir, str(model_dir))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [error] = error_lines(result.stderr)
    expected = {"a file": "is a file, not a folder", "not writable": "is not writable"}[which]
    assert error.startswith(f"Error: --model_dir={model_dir} {expected}"), error


def test_a_crop_larger_than_resize_side_is_refused_naming_both_flags(records_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    result = run_trainer(records_dir, model_dir, *BASE_FLAGS, "--image_size=80",
                         "--resize_side=76")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "--image_size is larger than --resize_side" in result.stderr
    assert not os.path.exists(os.path.join(model_dir, "checkpoints"))
