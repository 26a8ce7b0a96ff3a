"""MultiWorkerMirroredStrategy over TF_CONFIG: two worker processes on 127.0.0.1.

The job is killed the way machines die (SIGKILL of one worker), started again the way a
cluster manager would (every worker, same command), and must end exactly where a single
process training the same global batch ends: same steps, same epochs, same weights to float
round-off. This holds because a seeded input pipeline deals each step's global batch to the
workers record by record (one shard, two workers) and keys every crop to its record.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.ports import free_ports
from tests.record_fixtures import write_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_CONFIG = os.path.join(REPO_ROOT, "configs", "smoke.cfg")
EPOCHS = 5
# Deterministic training: a fixed seed, no dropout (its masks are drawn per replica, so they
# cannot match across layouts), float32 (bfloat16 sums would differ more than round-off).
# The crops are the default's, the paper's central square.
FLAGS = ("--seed=7", "--dropout=0", "--mixed_precision=none", f"--epochs={EPOCHS}",
         "--batch_size=16", "--progress=epoch")
EXIT_WORKER_LOST = 75
EXIT_PREEMPTED = 143

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> str:
    """One training shard of 64 images: fewer files than workers, so records are dealt."""
    directory = str(tmp_path_factory.mktemp("records"))
    write_records(directory, split="train", num_classes=4, images_per_class=16, num_shards=1)
    write_records(directory, split="validation", num_classes=4, images_per_class=4,
                  num_shards=1, seed=1)
    return directory


def command(records_dir: str, model_dir: str, *extra_flags: str) -> list[str]:
    return [sys.executable, "-m", "alexnet_tf.train", f"--flagfile={SMOKE_CONFIG}",
            f"--data_dir={records_dir}", f"--model_dir={model_dir}", *FLAGS, *extra_flags]


def start_worker(index: int, ports: list[int], records_dir: str, model_dir: str,
                 log_path: str, *extra_flags: str) -> subprocess.Popen:
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps(tf_config))
    return subprocess.Popen(command(records_dir, model_dir, *extra_flags), cwd=REPO_ROOT, env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def wait(process: subprocess.Popen, log_path: str, timeout: float = 240) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        with open(log_path) as handle:
            raise AssertionError(f"worker hung; log tail:\n{handle.read()[-3000:]}")


def tail(path: str) -> str:
    with open(path) as handle:
        return handle.read()[-3000:]


def trained_state(model_dir: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("optimizer/", "completed_epochs", "steps_into_epoch"))}


WEIGHT = re.compile(r"optimizer/_trainable_variables/(\d+)/")
SLOT = re.compile(r"optimizer/_variables/(\d+)/")


def layer_scaled_differences(reference: dict, other: dict) -> dict[str, float]:
    """Each float tensor's largest difference, in units of its layer's largest weight.

    A weight, its bias and their momenta are judged on the scale of the layer's kernel, the
    scale a weight update is felt on. Against its own scale a tensor that is nearly zero
    overstates round-off: by the end of these runs the training loss is ~0.003, the fc
    layers' momenta and biases ~1e-5, and a 1e-8 difference would read as 7e-4 (measured:
    against the kernels' scale the two layouts differ by 7.6e-6, and runs on other crops by
    1.1e-2). Trainable variable 2j is layer j's kernel; momentum k belongs to variable k minus
    the optimizer's own leading variables (iterations, learning rate).
    """
    weights = {int(WEIGHT.match(name).group(1)): value
               for name, value in reference.items() if WEIGHT.match(name)}
    slots = [int(SLOT.match(name).group(1)) for name in reference if SLOT.match(name)]
    slot_offset = max(slots) + 1 - len(weights)
    differences = {}
    for name, expected in reference.items():
        if expected.dtype.kind != "f":
            continue
        index = None
        if WEIGHT.match(name):
            index = int(WEIGHT.match(name).group(1))
        elif SLOT.match(name):
            index = int(SLOT.match(name).group(1)) - slot_offset
        if index is None:
            scale = max(float(np.abs(expected).max()), 1e-6)
        else:
            scale = float(np.abs(weights[index - index % 2]).max())
        differences[name] = float(np.abs(other[name] - expected).max()) / scale
    return differences


@pytest.fixture(scope="module")
def single_process(records_dir, tmp_path_factory) -> str:
    model_dir = str(tmp_path_factory.mktemp("single"))
    result = subprocess.run(command(records_dir, model_dir), cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=240,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def wait_for_epochs(model_dir: str, count: int, workers: list[subprocess.Popen],
                    logs: list[str]) -> int:
    """Blocks until the chief's history.json holds more than `count` epochs; how many it holds."""
    history = os.path.join(model_dir, "history.json")
    deadline = time.monotonic() + 240
    while True:
        assert all(w.poll() is None for w in workers), tail(logs[0]) + tail(logs[1])
        assert time.monotonic() < deadline, f"no epoch past {count}: " + tail(logs[0])
        try:
            with open(history) as handle:
                epochs = len(json.load(handle))
        except (OSError, ValueError):  # not written yet
            epochs = 0
        if epochs > count:
            return epochs
        time.sleep(0.05)


def test_a_preempted_then_killed_job_restarted_each_time_ends_as_one_process_would(
        records_dir, single_process, tmp_path):
    """The two ways a machine of the job goes away, one after the other, in one job.

    1. A preempted machine gets the SIGTERM, the others do not. Worker 1 alone is signalled:
       the chief must stop at the same step (not hang in an all-reduce, not lose the epoch)
       and save that step.
    2. After a restart, a machine dies (SIGKILL of worker 1): the chief stops with a one-line
       error and the "restart me" exit code.
    3. A cluster manager starts both again with the same command; the job must end exactly
       as one process training the same global batch ends.
    """
    model_dir = str(tmp_path / "model")
    ports = free_ports(2)
    flags = ("--preemption_check_steps=1",)

    def start_both(run: str) -> tuple[list[subprocess.Popen], list[str]]:
        logs = [str(tmp_path / f"worker{i}.{run}.log") for i in range(2)]
        return [start_worker(i, ports, records_dir, model_dir, logs[i], *flags)
                for i in range(2)], logs

    workers, logs = start_both("first")
    wait_for_epochs(model_dir, 0, workers, logs)
    time.sleep(1.0)  # Into epoch 2's steps, most of the time.
    workers[1].send_signal(signal.SIGTERM)
    codes = [wait(worker, log) for worker, log in zip(workers, logs)]
    assert codes == [EXIT_PREEMPTED, EXIT_PREEMPTED], tail(logs[0]) + tail(logs[1])
    assert "preempted: saved" in tail(logs[0])  # The chief, which got no signal, saved.
    saved = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    completed = int(saved.get_tensor("completed_epochs/.ATTRIBUTES/VARIABLE_VALUE"))
    steps_into_epoch = int(saved.get_tensor("steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    steps_taken = int(saved.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    # At least two epochs left, one to finish before the kill and one after it.
    assert 1 <= completed <= EPOCHS - 2 and 0 <= steps_into_epoch < 4
    assert steps_taken == completed * 4 + steps_into_epoch
    print(f"stopped together after epoch {completed}, step {steps_into_epoch}")

    workers, logs = start_both("restarted")
    epochs_before_kill = wait_for_epochs(model_dir, completed, workers, logs)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    assert wait(workers[0], logs[0]) == EXIT_WORKER_LOST, tail(logs[0])
    error_lines = [line for line in tail(logs[0]).splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "lost a worker" in error_lines[0]
    assert epochs_before_kill < EPOCHS

    workers, logs = start_both("restarted_again")
    for worker, log in zip(workers, logs):
        assert wait(worker, log) == 0, tail(log)
    with open(logs[0]) as handle:
        assert "Resuming from" in handle.read()
    assert_ended_as_one_process(model_dir, single_process)


def assert_ended_as_one_process(model_dir: str, single_process: str) -> None:
    """Same steps and epochs as one process, the same weights and momenta to round-off."""
    reference, resumed = trained_state(single_process), trained_state(model_dir)
    assert sorted(resumed) == sorted(reference)
    assert int(resumed["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == EPOCHS * 4
    for name, expected in reference.items():
        if expected.dtype.kind != "f":
            np.testing.assert_array_equal(resumed[name], expected, err_msg=name)
    differences = layer_scaled_differences(reference, resumed)
    worst = max(differences, key=differences.get)
    assert differences[worst] < 1e-4, f"{worst} differs by {differences[worst]:g} of its layer's scale"

    # One history, every epoch once; only the chief wrote outputs, and its scratch is gone.
    with open(os.path.join(model_dir, "history.json")) as handle:
        assert [record["epoch"] for record in json.load(handle)] == list(range(1, EPOCHS + 1))
    assert os.path.exists(os.path.join(model_dir, "summary.json"))
    assert not os.path.exists(os.path.join(model_dir, "workers"))
