"""The trainer as a user drives it: the command line, its outputs, kills, preemption, bad flags.

Runs go through `python -m alexnet_tf.train --flagfile=configs/smoke.cfg` in a subprocess, on
tiny learnable records (tests/record_fixtures.py) at 67x67, the smallest input the paper's
network takes. The schedule and checkpoint rules are also checked in-process, where the
edge cases can be set up exactly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import imagenet
from alexnet_tf.model import layers  # registers the custom layers: load model.keras
from alexnet_tf.train import callbacks, schedules
from tests.record_fixtures import write_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_CONFIG = os.path.join(REPO_ROOT, "configs", "smoke.cfg")
NUM_CLASSES = 4
TRAIN_IMAGES = NUM_CLASSES * 16
BATCH_SIZE = 16  # configs/smoke.cfg
# two_replica_run's --resize_side: its 67x67 crops see 67/76 of each image, as 227 of 256 do.
RESIZE_SIDE = 76


def trainer_command(data_dir: str, model_dir: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "alexnet_tf.train", f"--flagfile={SMOKE_CONFIG}",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}", *flags]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")


def run_trainer(data_dir: str, model_dir: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(trainer_command(data_dir, model_dir, *flags), cwd=REPO_ROOT,
                          env=environment(), capture_output=True, text=True, timeout=240)


def _ctrl_c_as_in_a_terminal() -> None:
    """A job a non-interactive shell starts in the background (`pytest ... &`, some CI
    runners) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: a test
    that presses Ctrl-C would wait on a trainer that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_trainer(data_dir: str, model_dir: str, *flags: str, log_path: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(trainer_command(data_dir, model_dir, *flags), cwd=REPO_ROOT,
                            env=environment(), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_ctrl_c_as_in_a_terminal)


def wait_for_epochs(model_dir: str, epochs: int, process: subprocess.Popen) -> None:
    """Blocks until history.json lists `epochs` epochs (the trainer is then checkpointing)."""
    path = os.path.join(model_dir, "history.json")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "the trainer ended before it was interrupted"
        if os.path.exists(path):
            with open(path) as handle:
                if len(json.load(handle)) >= epochs:
                    return
        time.sleep(0.2)
    raise AssertionError(f"no epoch {epochs} in {path} after 180 s")


def wait_for_checkpoint(model_dir: str, name: str, process: subprocess.Popen) -> None:
    """Blocks until the checkpoint `name` (e.g. ckpt-1) is complete and the latest one."""
    directory = os.path.join(model_dir, "checkpoints")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "the trainer ended before it was interrupted"
        state = tf.train.get_checkpoint_state(directory)
        if state and os.path.basename(state.model_checkpoint_path) == name:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {name} in {directory} after 180 s")


def read_json(model_dir: str, name: str):
    with open(os.path.join(model_dir, name)) as handle:
        return json.load(handle)


RESIZED_RECORDS = {"resize_shorter_side": 160, "center_crop": False, "jpeg_quality": 95}


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> str:
    """Records written with the 1-based label convention and a converter-style manifest, which
    says they were made with --resize_shorter_side (every image is under it, so kept as is)."""
    directory = str(tmp_path_factory.mktemp("records"))
    write_records(directory, split="train", num_classes=NUM_CLASSES, images_per_class=16,
                  num_shards=2, label_offset=1)
    write_records(directory, split="validation", num_classes=NUM_CLASSES, images_per_class=4,
                  num_shards=1, label_offset=1, seed=1)
    classes = {synset: 16 for synset in imagenet.synsets()[:NUM_CLASSES]}
    manifest = {
        "options": {"label_offset": 1, **RESIZED_RECORDS},
        "splits": {
            "train": {"images": TRAIN_IMAGES, "classes": classes},
            "validation": {"images": NUM_CLASSES * 4,
                           "classes": {synset: 4 for synset in classes}},
        },
    }
    with open(os.path.join(directory, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return directory


@pytest.fixture(scope="module")
def two_replica_run(records_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("two_replicas"))
    result = run_trainer(records_dir, model_dir, "--num_cpu_replicas=2",
                         f"--resize_side={RESIZE_SIDE}")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, result


def test_two_cpu_replicas_train_and_the_loss_falls(two_replica_run):
    model_dir, result = two_replica_run
    assert "MirroredStrategy with 2 replica(s)" in result.stderr
    history = read_json(model_dir, "history.json")
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_summary_reports_what_the_run_did(two_replica_run):
    model_dir, _ = two_replica_run
    summary = read_json(model_dir, "summary.json")
    steps_per_epoch = TRAIN_IMAGES // BATCH_SIZE  # From the manifest's image count.
    assert summary["epochs_completed"] == 3
    assert summary["steps_completed"] == 3 * steps_per_epoch
    assert summary["replicas"] == 2
    assert summary["mixed_precision"] == "float32"
    assert summary["global_batch_size"] == BATCH_SIZE
    assert summary["flags"]["num_cpu_replicas"] == 2
    assert summary["flags"]["variant"] == "paper"
    assert summary["steady_state_training_images_per_second"] > 0
    last = read_json(model_dir, "history.json")[-1]
    for split, prefix in (("train", ""), ("validation", "val_")):
        for k in (1, 5):
            accuracy = summary[split][f"top{k}_accuracy"]
            assert accuracy == pytest.approx(last[f"{prefix}top{k}_accuracy"])
            assert summary[split][f"top{k}_error"] == pytest.approx(1.0 - accuracy)
        assert summary[split]["loss"] == pytest.approx(last[f"{prefix}loss"])
    with open(os.path.join(model_dir, "training_curves.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(os.path.join(model_dir, "logs", "train"))
    assert os.listdir(os.path.join(model_dir, "logs", "validation"))
    import alexnet_tf.model.layers  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    assert model.output_shape == (None, NUM_CLASSES)


def test_the_run_ends_with_one_summary_line_on_stdout(two_replica_run):
    model_dir, result = two_replica_run
    history = read_json(model_dir, "history.json")
    best = max(history, key=lambda record: record["val_top1_accuracy"])
    assert read_json(model_dir, "summary.json")["best_validation"] == {
        "epoch": best["epoch"], "top1_accuracy": best["val_top1_accuracy"],
        "top5_accuracy": best["val_top5_accuracy"]}
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Trained 3 epochs \(12 steps\) in [\dhms.]+, \d+ images/s; "
        + re.escape(f"best validation top-1 {100 * best['val_top1_accuracy']:.1f}% (epoch "
                    f"{best['epoch']}), top-5 {100 * best['val_top5_accuracy']:.1f}%; model: "
                    f"{model_dir}/model.keras"), last), last


def test_the_trainer_hands_the_model_half_the_papers_weight_decay(two_replica_run):
    """--weight_decay=5e-4 (the paper's update rule) is the L2 loss 2.5e-4 * sum(w^2)."""
    model_dir, _ = two_replica_run
    assert read_json(model_dir, "summary.json")["flags"]["weight_decay"] == 5e-4
    with zipfile.ZipFile(os.path.join(model_dir, "model.keras")) as archive:
        config = json.loads(archive.read("config.json"))
    coefficients = {}
    for layer in config["config"]["layers"]:
        regularizer = layer["config"].get("kernel_regularizer")
        if regularizer:
            coefficients[layer["config"]["name"]] = regularizer["config"]["l2"]
    assert set(coefficients) == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}
    assert coefficients == {name: pytest.approx(2.5e-4) for name in coefficients}


def test_the_saved_model_takes_float_pixels_though_training_fed_uint8(records_dir,
                                                                     two_replica_run):
    """Training hands the step uint8 crops; model.keras keeps its float32 input contract."""
    from alexnet_tf.data import pipeline as data
    from alexnet_tf.model import alexnet as alexnet_model

    model_dir, _ = two_replica_run
    saved = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    fresh = alexnet_model.build_alexnet(num_classes=NUM_CLASSES, image_size=67,
                                        initialization="he")
    assert [(i.name, i.dtype, tuple(i.shape)) for i in saved.inputs] == [
        ("images", "float32", (None, 67, 67, 3))]
    assert [layer.name for layer in saved.layers] == [layer.name for layer in fresh.layers]
    validation = data.build_dataset(os.path.join(records_dir, "validation-*"), training=False,
                                    batch_size=16, image_size=67, label_offset=1,
                                    shorter_side=RESIZE_SIDE)
    images, labels = next(iter(validation))
    accuracy = np.mean(np.argmax(saved.predict(images, verbose=0), axis=1) == labels.numpy())
    assert accuracy == pytest.approx(read_json(model_dir, "summary.json")["validation"][
        "top1_accuracy"])


# Seeded, with the paper's dropout 0.5: an interrupted run must then end exactly where an
# uninterrupted one does (weights, momenta, step count, plateau schedule memory, dropout's
# random state), not just take as many steps.
# The warm-up (12 of the 24 steps) makes the resumes below land mid-ramp (test_warmup.py).
EXACT_RUN_FLAGS = ("--steps_per_epoch=8", "--seed=3", "--lr_warmup_epochs=1.5")


def test_conv1_filters_and_model_info_are_written_beside_the_curves(two_replica_run):
    from PIL import Image

    from alexnet_tf.model import model_info
    from alexnet_tf.train import plotting

    model_dir, _ = two_replica_run
    assert os.path.isfile(os.path.join(model_dir, "training_curves.png"))
    with Image.open(os.path.join(model_dir, plotting.CONV1_FILTERS_FILENAME)) as picture:
        # The paper network: 2 towers x 3 rows of 16 kernels, as in the paper's figure 3.
        assert picture.size == (16 * 44 + 17 * 2, 6 * 44 + 7 * 2 + 10)
    info = model_info.read_info(os.path.join(model_dir, "model.keras"))
    assert (info["variant"], info["image_size"], info["num_classes"]) == ("paper", 67, NUM_CLASSES)
    # Trained on resized records: served originals are first scaled as the converter did.
    assert info["preprocessing"] == {
        "name": "paper", "resize_shorter_side": RESIZE_SIDE, "crop_size": 67,
        "records_resize": {"shorter_side": 160, "center_crop": False, "jpeg_quality": 95},
    }


def validation_cross_entropy(model_dir: str, records_dir: str, shorter_side: int) -> float:
    """The saved model's mean cross-entropy on the validation records, images scaled to
    `shorter_side` on their shorter side (the records were not resized: all are under 160)."""
    from alexnet_tf.data import pipeline as data

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    dataset = data.build_dataset(os.path.join(records_dir, "validation-*"), training=False,
                                 batch_size=16, image_size=67, label_offset=1,
                                 shorter_side=shorter_side)
    losses = [keras.losses.sparse_categorical_crossentropy(labels, model(images, training=False),
                                                           from_logits=True).numpy()
              for images, labels in dataset]
    return float(np.concatenate(losses).mean())


def test_validation_and_the_saved_model_scale_images_to_resize_side(two_replica_run, records_dir):
    """What the trainer validated on is what model_info.json tells evaluate and the export."""
    model_dir, _ = two_replica_run
    last = read_json(model_dir, "history.json")[-1]["val_cross_entropy"]
    assert validation_cross_entropy(model_dir, records_dir, RESIZE_SIDE) == pytest.approx(
        last, rel=1e-4)
    # The fixture tells the sides apart: scaled to the paper's 256, the loss is another.
    assert validation_cross_entropy(model_dir, records_dir, 256) != pytest.approx(last, rel=1e-3)


def checkpoint_state(model_dir: str) -> dict:
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("optimizer/", "schedule/", "completed_epochs", "random_state/"))}


def assert_same_training_state(model_dir: str, reference_dir: str) -> None:
    resumed, reference = checkpoint_state(model_dir), checkpoint_state(reference_dir)
    assert sorted(resumed) == sorted(reference)
    assert any(name.startswith("schedule/") for name in reference)
    assert any(name.startswith("random_state/") for name in reference)  # dropout's seeds
    worst, worst_name = 0.0, None
    for name, expected in reference.items():
        if getattr(expected, "dtype", None) is not None and expected.dtype.kind == "f":
            # Relative to the variable's scale: momenta hold the last steps' gradients, so
            # other images or crops show up as differences of order 1, round-off as 1e-7.
            scale = max(float(np.abs(expected).max()), 1e-12)
            difference = float(np.abs(resumed[name] - expected).max()) / scale
            if difference > worst:
                worst, worst_name = difference, name
        else:
            np.testing.assert_array_equal(resumed[name], expected, err_msg=name)
    assert worst < 1e-5, f"{worst_name} differs by {worst:.3g} of its scale"


@pytest.fixture(scope="module")
def uninterrupted_run(records_dir, tmp_path_factory) -> str:
    model_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    result = run_trainer(records_dir, model_dir, *EXACT_RUN_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_complete_epoch(records_dir, uninterrupted_run,
                                                         tmp_path):
    model_dir = str(tmp_path / "model")
    flags = EXACT_RUN_FLAGS
    process = start_trainer(records_dir, model_dir, *flags, log_path=str(tmp_path / "log"))
    try:
        # history.json comes before the checkpoint, whose 150 MB take seconds on a busy CPU.
        wait_for_checkpoint(model_dir, "ckpt-1", process)
        time.sleep(1.0)  # Into epoch 2's steps.
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()

    result = run_trainer(records_dir, model_dir, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stderr
    history = read_json(model_dir, "history.json")
    assert [record["epoch"] for record in history] == [1, 2, 3]
    summary = read_json(model_dir, "summary.json")
    assert summary["epochs_completed"] == 3
    assert summary["steps_completed"] == 3 * 8  # No epoch repeated, none skipped.
    assert_same_training_state(model_dir, uninterrupted_run)


# The trainer's command line with a SIGTERM sent to itself after one chosen step, so the
# mid-epoch save and resume run at a known step every time (a signal from outside lands
# wherever the process happens to be, often on an epoch boundary).
SIGTERM_AT_STEP_SCRIPT = """
import os, signal, sys
from absl import app
from alexnet_tf.train import callbacks
from alexnet_tf.train import trainer as train
epoch, step = int(os.environ["SIGTERM_AT_EPOCH"]), int(os.environ["SIGTERM_AT_STEP"])
original = callbacks.CheckpointOnPreemption.on_train_batch_end
def signal_then_check(self, batch, logs=None):
    if (self._epoch + 1, self._first_step + batch + 1) == (epoch, step):
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: the check below sees it
    return original(self, batch, logs)
callbacks.CheckpointOnPreemption.on_train_batch_end = signal_then_check
sys.argv = ["alexnet_tf.train", *sys.argv[1:]]
app.run(train.main)
"""


def test_a_sigterm_at_a_chosen_step_resumes_exactly_with_dropout_on(records_dir,
                                                                    uninterrupted_run, tmp_path):
    """Fails when the resume restarts the interrupted epoch at batch 0 or redraws dropout."""
    model_dir = str(tmp_path / "model")
    command = trainer_command(records_dir, model_dir, *EXACT_RUN_FLAGS)
    interrupted = subprocess.run(
        [sys.executable, "-c", SIGTERM_AT_STEP_SCRIPT, *command[3:]], cwd=REPO_ROOT,
        env=dict(environment(), SIGTERM_AT_EPOCH="2", SIGTERM_AT_STEP="3"),
        capture_output=True, text=True, timeout=240)
    assert interrupted.returncode == 143, interrupted.stderr[-3000:]
    assert "preempted: saved" in interrupted.stderr and "epoch 2, step 3" in interrupted.stderr
    saved = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert saved.get_tensor("completed_epochs/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert saved.get_tensor("steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE") == 3
    # 11 steps into the 12-step warm-up of smoke.cfg's 0.001: the rate step 11 ran at.
    rate = [saved.get_tensor(name) for name in saved.get_variable_to_shape_map()
            if name.startswith("optimizer/") and "learning_rate" in name]
    assert rate and rate[0] == pytest.approx(0.001 * 11 / 12, rel=1e-5), rate

    result = run_trainer(records_dir, model_dir, *EXACT_RUN_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 epochs done, 3 steps into the next" in result.stderr
    assert read_json(model_dir, "history.json")[1]["resumed_at_step"] == 3
    assert read_json(model_dir, "summary.json")["steps_completed"] == 3 * 8
    assert_same_training_state(model_dir, uninterrupted_run)


@pytest.mark.slow
def test_several_steps_per_execution_train_exactly_like_one(records_dir, uninterrupted_run,
                                                           tmp_path):
    """3 steps per call over 8-step epochs (calls of 3, 3, 2): the same 24 steps and state."""
    model_dir = str(tmp_path / "model")
    result = run_trainer(records_dir, model_dir, *EXACT_RUN_FLAGS, "--steps_per_execution=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_json(model_dir, "summary.json")["steps_completed"] == 3 * 8
    assert_same_training_state(model_dir, uninterrupted_run)


@pytest.mark.parametrize(
    "flags, named",
    [
        (("--variant=nope",), "--variant"),
        (("--batch_size=-1",), "--batch_size"),
        (("--batch_size=15", "--num_cpu_replicas=2"), "--batch_size"),
        (("--num_classes=2",), "--num_classes"),
        (("--data_dir=",), "--data_dir"),
        (("--seed=-1",), "--seed"),
        (("--learning_rate=nan",), "--learning_rate"),
        (("--lr_warmup_epochs=nan",), "--lr_warmup_epochs"),
    ],
)
def test_bad_flags_give_one_line_naming_the_flag(records_dir, tmp_path, flags, named):
    result = run_trainer(records_dir, str(tmp_path / "model"), *flags)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if named in line]
    assert error_lines, result.stderr[-2000:]


@pytest.mark.parametrize("which", ["empty", "missing"])
def test_unusable_data_dir_gives_one_line_naming_it(tmp_path, which):
    data_dir = tmp_path / "records"
    if which == "empty":
        data_dir.mkdir()
    result = run_trainer(str(data_dir), str(tmp_path / "model"))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert any(f"--data_dir={data_dir}" in line for line in result.stderr.splitlines()), (
        result.stderr[-2000:])


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    schedule = schedules.PlateauSchedule(0.01, patience=2, max_reductions=3)
    errors = [0.9, 0.8, 0.8, 0.8]  # Improves twice, then two epochs without improvement.
    reduced = [schedule.observe(error) for error in errors]
    assert reduced == [False, False, False, True]
    assert schedule.learning_rate(epoch=4) == pytest.approx(0.001)
    for _ in range(20):  # A long plateau: only two more reductions.
        schedule.observe(0.8)
    assert schedule.state()["reductions"] == 3
    assert schedule.learning_rate(epoch=30) == pytest.approx(1e-5)
    assert not schedule.observe(0.7)  # An improvement resets the wait, never raises the rate.
    assert schedule.learning_rate(epoch=31) == pytest.approx(1e-5)


def test_step_and_cosine_schedules_follow_the_epoch():
    step = schedules.StepSchedule(0.01, step_epochs=30, factor=0.1)
    assert [step.learning_rate(e) for e in (0, 29, 30, 60)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.0001])
    cosine = schedules.CosineSchedule(0.1, epochs=10)
    assert cosine.learning_rate(0) == pytest.approx(0.1)
    assert cosine.learning_rate(5) == pytest.approx(0.05)
    assert cosine.learning_rate(10) == pytest.approx(0.0)


def tiny_model_and_optimizer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_plateau_state_round_trips_through_the_checkpoint(tmp_path):
    model, optimizer = tiny_model_and_optimizer()
    schedule = schedules.PlateauSchedule(0.01, patience=1)
    for error in (0.5, 0.6, 0.4, 0.45):
        schedule.observe(error)
    checkpoint = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=optimizer, schedule=schedule)
    checkpoint.save(completed_epochs=4)

    model, optimizer = tiny_model_and_optimizer()
    restored_schedule = schedules.PlateauSchedule(0.01, patience=1)
    restored = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=optimizer, schedule=restored_schedule)
    assert restored.restore_latest()
    assert restored_schedule.state() == schedule.state()
    assert restored_schedule.state()["reductions"] == 2
    assert int(restored.completed_epochs.numpy()) == 4


def test_a_torn_checkpoint_is_never_resumed_from(tmp_path):
    model, optimizer = tiny_model_and_optimizer()
    schedule = schedules.PlateauSchedule(0.01)
    checkpoint = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=optimizer, schedule=schedule)
    first = checkpoint.save(completed_epochs=1)
    # What a kill in the middle of the next save leaves: data without a finished index and
    # no update of the `checkpoint` state file.
    (tmp_path / "ckpt-2.data-00000-of-00001").write_bytes(b"\0" * 100)
    (tmp_path / "ckpt-2.index").write_bytes(b"truncated")

    model, optimizer = tiny_model_and_optimizer()
    resumed = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=optimizer, schedule=schedules.PlateauSchedule(0.01))
    assert resumed.restore_latest() == first
    assert int(resumed.completed_epochs.numpy()) == 1


def test_history_drops_epochs_the_checkpoint_does_not_cover(tmp_path):
    path = str(tmp_path / "history.json")
    callbacks.write_json_atomically(path, [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}])
    assert callbacks.load_history(path, completed_epochs=2) == [{"epoch": 1}, {"epoch": 2}]
    assert callbacks.load_history(str(tmp_path / "none.json"), completed_epochs=2) == []


def test_partial_epoch_metrics_combine_by_steps():
    combined = callbacks.combine_means({"loss": 2.0}, 3, {"loss": 1.0}, 1)
    assert combined == {"loss": pytest.approx(1.75)}


class SigtermAtStep(keras.callbacks.Callback):
    """Sends this process a SIGTERM at the end of one step, as a preempting cluster would."""

    def __init__(self, epoch: int, step: int):
        super().__init__()
        self.epoch, self.step, self._current_epoch = epoch, step, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._current_epoch, batch + 1) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("signalled_after_step, saved_epochs, saved_steps",
                         [(3, 1, 3), (1, 1, 1), (4, 2, 0)])
def test_sigterm_at_any_step_saves_a_state_the_rerun_can_finish_exactly(
        tmp_path, signalled_after_step, saved_epochs, saved_steps):
    # Step 4 of 4 is the edge a CI run once hit: a checkpoint saying "4 steps into epoch 2"
    # made the rerun take a fifth. Such a signal must end the epoch (validated, saved) instead.
    steps_per_epoch = 4
    model, _ = tiny_model_and_optimizer()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    checkpoint = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=model.optimizer,
        schedule=schedules.PlateauSchedule(0.01))
    history = []
    handler_before = signal.getsignal(signal.SIGTERM)
    data = tf.data.Dataset.from_tensors((tf.ones((2, 3)), tf.ones((2, 2)))).repeat()
    with pytest.raises(callbacks.TrainingPreempted):
        model.fit(data, epochs=3, steps_per_epoch=steps_per_epoch, verbose=0,
                  validation_data=data.take(1),
                  callbacks=[SigtermAtStep(epoch=1, step=signalled_after_step),
                             callbacks.SaveEachEpoch(checkpoint, history=history,
                                                     history_path=None, curves_path=None),
                             callbacks.CheckpointOnPreemption(checkpoint)])
    assert signal.getsignal(signal.SIGTERM) == handler_before  # Ours is not left installed.
    saved = tf.train.load_checkpoint(str(tmp_path))
    assert saved.get_tensor("completed_epochs/.ATTRIBUTES/VARIABLE_VALUE") == saved_epochs
    assert saved.get_tensor("steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE") == saved_steps
    assert saved.get_tensor("steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE") < steps_per_epoch
    assert [record["epoch"] for record in history] == list(range(1, saved_epochs + 1))
    assert "val_loss" in history[-1]
    assert int(model.optimizer.iterations.numpy()) == steps_per_epoch + signalled_after_step


PER_REPLICA_XLA_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from alexnet_tf.train import distribution, steps
strategy = distribution.select_strategy(num_cpu_replicas=2)
rng = np.random.default_rng(0)
images = rng.normal(size=(64, 5)).astype("float32")
labels = rng.integers(0, 3, 64).astype("int32")
def train(per_replica_xla):
    with strategy.scope():
        network = keras.Sequential([
            keras.Input((5,)),
            keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01),
                               kernel_initializer=keras.initializers.GlorotNormal(1)),
            keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotNormal(2))])
        if per_replica_xla:  # else Keras's own step, the reference
            network = steps.TrainingModel(network, xla_per_replica=True)
        network.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"], jit_compile=False)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensor_slices((images, labels)).batch(
            context.get_per_replica_batch_size(16)))
    history = network.fit(dataset, epochs=2, verbose=0).history
    return history, network.get_weights()
plain_history, plain_weights = train(False)
xla_history, xla_weights = train(True)
assert strategy.num_replicas_in_sync == 2
np.testing.assert_allclose(xla_history["loss"], plain_history["loss"], rtol=1e-5)
np.testing.assert_allclose(xla_history["accuracy"], plain_history["accuracy"])
for xla, plain in zip(xla_weights, plain_weights):
    np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-6)
print("same")
"""


def test_per_replica_xla_step_trains_exactly_like_keras_step():
    """--jit_compile under 2 replicas: same losses, metrics and weights as Keras's own step."""
    result = subprocess.run([sys.executable, "-c", PER_REPLICA_XLA_SCRIPT], cwd=REPO_ROOT,
                            env=environment(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same" in result.stdout


@pytest.mark.slow
def test_train_steps_bar_counts_to_the_cap_and_cross_entropy_is_logged_beside_loss(
        records_dir, tmp_path):
    # 4 steps per epoch (64 images / 16); --train_steps=3 stops the only epoch after 3.
    model_dir = str(tmp_path / "capped")
    result = run_trainer(records_dir, model_dir, "--train_steps=3", "--epochs=1",
                         "--progress=bar")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3/3" in result.stdout and "/4 " not in result.stdout, result.stdout[-2000:]
    last = read_json(model_dir, "history.json")[-1]
    summary = read_json(model_dir, "summary.json")
    for split, prefix in (("train", ""), ("validation", "val_")):
        cross_entropy = last[f"{prefix}cross_entropy"]
        assert summary[split]["cross_entropy"] == pytest.approx(cross_entropy)
        # `loss` adds 2.5e-4 * sum(w^2) over the kernels, about 0.3 for the He-initialised
        # 67x67 network: the cross-entropy must be reported without it.
        assert last[f"{prefix}loss"] - cross_entropy > 0.05
    weights = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    l2_term = sum(float(tf.reduce_sum(loss)) for loss in weights.losses)
    assert last["val_loss"] - last["val_cross_entropy"] == pytest.approx(l2_term, rel=0.02)
