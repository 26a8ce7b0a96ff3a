"""What the trainer does around `model.fit`: checkpoints, preemption, schedules, speed, history.

Why our own `tf.train.Checkpoint` + `CheckpointManager` and not `keras.callbacks.BackupAndRestore`
(Keras 3.15): BackupAndRestore overwrites one `.weights.h5` in place and then a JSON with the
epoch, so a kill between the two resumes the new weights under the old epoch number (an epoch
repeated), it saves no learning-rate schedule state, its batch-level saves restart the epoch from
its first step anyway, and it does nothing on SIGTERM. `CheckpointManager.save` writes the data
and index files under a temporary name, renames them into place, and only then atomically
rewrites the `checkpoint` state file that `latest_checkpoint` reads: a save killed halfway
leaves the previous checkpoint as the latest, never a torn one. Our checkpoint holds the model,
the optimizer (momentum and step count), the schedule's state, dropout's random state, the
run's flags and where in training it was taken, so a resumed run repeats and skips nothing and
draws the same dropout masks. A save refuses non-finite weights (a diverged step), and a save
that runs out of space removes what it wrote (see `safe_writes`).
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from alexnet_tf.train import plotting, safe_writes, stops
from alexnet_tf.train.execution import StepCount, steps_run


class TrainingPreempted(Exception):
    """Raised out of `fit` after a SIGTERM, once the checkpoint is safely written."""


class TrainingCheckpoint:
    """The complete training state, saved and restored as one atomic checkpoint.

    `completed_epochs` counts whole epochs; `steps_into_epoch` is non-zero only in a checkpoint
    written on preemption, together with the training metrics of those steps, so the resumed
    run finishes the epoch with its remaining steps and reports metrics for the whole epoch.
    """

    def __init__(self, directory: str, *, model, optimizer, schedule, max_to_keep: int = 3,
                 restore_from: str | None = None):
        self._model, self._optimizer = model, optimizer
        self.completed_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        # The flags of the run that saved it (JSON), so a resume can say what it changes.
        self.run_flags = tf.Variable("{}", dtype=tf.string, trainable=False)
        self.steps_into_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.partial_epoch_logs = tf.Variable("{}", dtype=tf.string, trainable=False)
        # execution.StepCount's value; -1 in a checkpoint saved before it was kept.
        self.steps_taken = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.step_count = None
        self._checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            schedule=schedule,
            completed_epochs=self.completed_epochs,
            steps_into_epoch=self.steps_into_epoch,
            partial_epoch_logs=self.partial_epoch_logs,
            run_flags=self.run_flags,
            steps_taken=self.steps_taken,
            # Dropout's seed generators: without them a resumed run draws other masks.
            random_state=random_state_variables(model),
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, directory, max_to_keep=max_to_keep
        )
        self._restore_from = restore_from or directory

    def restore_latest(self) -> str | None:
        """Restores the newest complete checkpoint; returns its path, or None to start afresh.

        It comes from `restore_from` when given: in a multi-worker job every worker resumes
        from the chief's checkpoint, so all start from one state whichever saves got through.
        """
        path = tf.train.latest_checkpoint(self._restore_from)
        if path:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def restored_step_count(self) -> StepCount:
        """The run's step count as restored (0 when starting afresh); saved with each checkpoint.

        A checkpoint from before the count was kept falls back on the optimizer's iterations,
        which is exact unless that run skipped float16 steps."""
        taken = int(self.steps_taken.numpy())
        if taken < 0:
            taken = int(self._optimizer.iterations.numpy())
        self.step_count = StepCount(taken)
        return self.step_count

    def save(
        self, *, completed_epochs: int, steps_into_epoch: int = 0, partial_logs: dict | None = None
    ) -> str:
        if self.step_count is not None:
            self.steps_taken.assign(self.step_count.taken)
        self.completed_epochs.assign(completed_epochs)
        self.steps_into_epoch.assign(steps_into_epoch)
        self.partial_epoch_logs.assign(json.dumps(partial_logs or {}))
        variables = [*self._model.variables, *self._optimizer.variables]
        prefix = f"{self._manager.directory}/ckpt-{int(self._checkpoint.save_counter) + 1}"
        stops.check_finite(variables, f"the checkpoint {prefix}")
        with safe_writes.reporting(prefix, needed_bytes=safe_writes.variables_bytes(variables),
                                   cleanup=safe_writes.checkpoint_cleanup(prefix)):
            return self._manager.save()

    @property
    def latest(self) -> str | None:
        return self._manager.latest_checkpoint

    def partial_logs(self) -> dict:
        return json.loads(self.partial_epoch_logs.numpy().decode("utf-8"))


def random_state_variables(model) -> list:
    """The model's random-number state (Keras SeedGenerator variables, one per dropout)."""
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def combine_means(first: dict, first_steps: int, second: dict, second_steps: int) -> dict:
    """Per-key step-weighted mean of two runs of the same epoch (equal batches, so exact)."""
    total = first_steps + second_steps
    if not first or first_steps == 0:
        return dict(second)
    return {
        key: (first[key] * first_steps + second[key] * second_steps) / total
        for key in second
        if key in first
    }


def _training_logs(logs: dict) -> dict:
    """The running training metrics in a batch's logs (not validation, not our own additions)."""
    return {
        key: float(value)
        for key, value in logs.items()
        if not key.startswith("val_") and key not in ("learning_rate", "images_per_second")
    }


def write_json_atomically(path: str, content) -> None:
    safe_writes.write_json(path, content)


def load_history(path: str, completed_epochs: int) -> list[dict]:
    """The per-epoch records of the epochs the checkpoint covers.

    history.json is written just before each epoch's checkpoint, so after a kill it can hold
    one epoch more than the checkpoint; that epoch will run again and must not appear twice.
    """
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as handle:
        history = json.load(handle)
    return [record for record in history if record["epoch"] <= completed_epochs]


class LearningRateFromSchedule(keras.callbacks.Callback):
    """Sets the rate when an epoch begins; tells the schedule the validation error at its end.

    With a warm-up (schedules.LinearWarmup) the epoch's rate goes to the warm-up, which the
    training step scales by its ramp; the log still shows the epoch's rate."""

    def __init__(self, schedule, warmup=None):
        super().__init__()
        self.schedule = schedule
        self.warmup = warmup
        self._epoch_learning_rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_learning_rate = self.schedule.learning_rate(epoch)
        if self.warmup is not None:
            self.warmup.epoch_rate.assign(self._epoch_learning_rate)
        self.model.optimizer.learning_rate.assign(self._epoch_learning_rate)

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = self._epoch_learning_rate
        if "val_top1_accuracy" not in logs:
            return
        # Paper, section 5: the plateau rule watches the validation *error rate*.
        if self.schedule.observe(1.0 - logs["val_top1_accuracy"]):
            logging.info(
                "Validation error stopped improving: learning rate %g -> %g (reduction %d)",
                self._epoch_learning_rate,
                self.schedule.learning_rate(epoch + 1),
                self.schedule.state()["reductions"],
            )


class Throughput(keras.callbacks.Callback):
    """Training images per second, shown on the progress bar and logged per epoch.

    Steady state only: the first `warmup_steps` steps of the process (tracing, XLA compilation,
    filling the input pipeline's buffers) and the first call of each epoch (which follows
    validation; one step, or --steps_per_execution steps) are not timed.
    """

    def __init__(self, global_batch_size: int, warmup_steps: int):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.warmup_steps = warmup_steps
        self._steps_seen = 0
        self._total_images = 0
        self._total_seconds = 0.0
        self._epoch_images = 0
        self._epoch_seconds = 0.0
        self._last_step_end = None
        self._epoch_steps = 0

    @property
    def steady_state_images_per_second(self) -> float | None:
        return self._total_images / self._total_seconds if self._total_seconds else None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_images, self._epoch_seconds, self._last_step_end = 0, 0.0, None
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        steps = steps_run(self, batch) - self._epoch_steps
        self._epoch_steps += steps
        self._steps_seen += steps
        if self._last_step_end is not None and self._steps_seen > self.warmup_steps:
            self._epoch_seconds += now - self._last_step_end
            self._epoch_images += self.global_batch_size * steps
            self._total_seconds += now - self._last_step_end
            self._total_images += self.global_batch_size * steps
        self._last_step_end = now
        if self._epoch_seconds and logs is not None:
            logs["images_per_second"] = self._epoch_images / self._epoch_seconds

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_seconds:
            logs["images_per_second"] = self._epoch_images / self._epoch_seconds


class SaveEachEpoch(keras.callbacks.Callback):
    """At each epoch's end: history.json, the training-curve PNG, then the checkpoint.

    On a resumed epoch it first folds the metrics of the steps run before the preemption into
    the epoch's logs, so the history and TensorBoard see the whole epoch.
    """

    def __init__(
        self,
        checkpoint: TrainingCheckpoint,
        *,
        history: list[dict],
        history_path: str | None,
        curves_path: str | None,
        resumed_steps: int = 0,
        resumed_logs: dict | None = None,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.history = history
        self.history_path = history_path
        self.curves_path = curves_path
        self._resumed_steps = resumed_steps
        self._resumed_logs = resumed_logs or {}
        self._steps_this_epoch = 0
        self._epoch_started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._steps_this_epoch = 0
        self._epoch_started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self._steps_this_epoch = steps_run(self, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self._resumed_steps:
            logs.update(
                combine_means(
                    self._resumed_logs,
                    self._resumed_steps,
                    _training_logs(logs),
                    self._steps_this_epoch,
                )
            )
        record = {"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()}}
        record["seconds"] = time.time() - self._epoch_started
        if self._resumed_steps:
            record["resumed_at_step"] = self._resumed_steps
            self._resumed_steps, self._resumed_logs = 0, {}
        self.history.append(record)
        if self.history_path:
            write_json_atomically(self.history_path, self.history)
        if self.curves_path:
            plotting.plot_training_curves(self.history, self.curves_path)
        self.checkpoint.save(completed_epochs=epoch + 1)


class CheckpointOnPreemption(keras.callbacks.Callback):
    """On SIGTERM (how clusters and cloud VMs announce preemption): finish the running step,
    save a checkpoint that says how far into the epoch training got, and stop.

    A signal during the epoch's last step or its validation stops at the epoch's end instead,
    once SaveEachEpoch (which must come earlier in the callback list) has saved it.

    With several workers a signal may reach only some of them; `any_worker` (see
    `distribution.any_worker`) lets all of them agree, every `check_every` steps, to stop at
    the same step, so the chief saves the state of that step and every worker exits alike.

    `first_step` is where in the epoch this process started (non-zero when it is itself
    finishing a preempted epoch), so repeated preemptions of one epoch add up correctly.

    With several steps per call (`execution.StepsPerExecution`) it acts after a call, so it
    stops at a multiple of --steps_per_execution steps (or the epoch's end), and the workers
    ask each other after the first call that reaches each multiple of `check_every` steps.
    """

    def __init__(self, checkpoint: TrainingCheckpoint, *, first_step: int = 0,
                 earlier_logs: dict | None = None, any_worker: Callable[[bool], bool] = bool,
                 check_every: int = 1):
        super().__init__()
        self.checkpoint = checkpoint
        self._first_step = first_step
        self._earlier_logs = earlier_logs or {}
        self._any_worker = any_worker
        self._check_every = check_every
        self._epoch = 0
        self._signalled = False
        self._stop_at_epoch_end = False
        self._previous_handler = None
        self._steps_at_last_call = 0

    def _on_sigterm(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint after the current step%s",
                        "" if self._check_every == 1 else
                        f" that every worker reaches (within {self._check_every} steps)")
        self._signalled = True

    def on_train_begin(self, logs=None):
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_train_end(self, logs=None):
        signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps_at_last_call = 0

    def on_epoch_end(self, epoch, logs=None):
        self._first_step, self._earlier_logs = 0, {}
        # Every worker asks here, in step: a signal during validation counts too.
        if self._stop_at_epoch_end or self._any_worker(self._signalled):
            # SaveEachEpoch, earlier in the list, has just saved the whole epoch.
            self.on_train_end()
            raise TrainingPreempted(
                f"preempted: saved {self.checkpoint.latest} at the end of epoch {epoch + 1}; "
                "run the same command again to resume"
            )

    def on_train_batch_end(self, batch, logs=None):
        steps_this_run = steps_run(self, batch)
        last_step = steps_this_run == self.params.get("steps")
        checks_before = self._steps_at_last_call // self._check_every
        self._steps_at_last_call = steps_this_run
        if steps_this_run // self._check_every == checks_before and not last_step:
            return
        if not self._any_worker(self._signalled):
            return
        if last_step:
            # A checkpoint at "all steps taken, not yet validated" would make the rerun take
            # one step too many. Let validation run and stop at the epoch's end instead.
            self._stop_at_epoch_end = True
            return
        steps_into_epoch = self._first_step + steps_this_run
        partial_logs = combine_means(
            self._earlier_logs, self._first_step, _training_logs(logs or {}), steps_this_run
        )
        path = self.checkpoint.save(
            completed_epochs=self._epoch,
            steps_into_epoch=steps_into_epoch,
            partial_logs=partial_logs,
        )
        self.on_train_end()
        raise TrainingPreempted(
            f"preempted: saved {path} at epoch {self._epoch + 1}, step {steps_into_epoch}; "
            "run the same command again to resume"
        )


class Progress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, counting the steps taken, to the epoch's end or --train_steps.

    Keras numbers each call of several steps (--steps_per_execution) as if it were full, so
    3-step epochs at 10 steps per call showed 10/3; this counts the steps really run
    (`steps_run`), and ends the bar where --train_steps cuts the epoch short. Where stdout is
    not a terminal (a log file, CI) the bar's carriage returns and colour codes would be
    garbage there: it prints a plain line every `plain_every_seconds` instead, and Keras's
    plain line at each epoch's end. Given to fit in place of the default bar (Keras adds its
    own only when none is given).
    """

    def __init__(self, train_steps: int | None = None, *, terminal: bool,
                 step_count: StepCount | None = None,
                 plain_every_seconds: float = 30.0):
        super().__init__()
        self.train_steps = train_steps
        self.terminal = terminal
        self.plain_every_seconds = plain_every_seconds
        self.step_count = step_count
        self.steps_per_epoch = None
        self._plain_lines = False
        self._epoch_started = self._last_plain_line = 0.0

    def set_params(self, params):
        super().set_params(params)  # sets self.target to fit's steps per epoch
        self.params = params  # which ProgbarLogger does not keep; `steps_run` reads it
        self.steps_per_epoch = self.target
        self._plain_lines = self.verbose == 1 and not self.terminal
        if self._plain_lines:
            self.verbose = 2  # Keras's plain line per epoch; the lines in between are ours

    def on_epoch_begin(self, epoch, logs=None):
        if self.train_steps and self.steps_per_epoch:
            taken = (self.step_count.taken if self.step_count is not None
                     else int(self.model.optimizer.iterations.numpy()))
            left = self.train_steps - taken
            self.target = max(1, min(self.steps_per_epoch, left))
        super().on_epoch_begin(epoch, logs)
        self._epoch_started = self._last_plain_line = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        steps = steps_run(self, batch)
        super().on_train_batch_end(steps - 1, logs)
        now = time.monotonic()
        if (self._plain_lines and steps < (self.target or 0)
                and now - self._last_plain_line >= self.plain_every_seconds):
            self._last_plain_line = now
            metrics = "".join(f" - {key}: {float(value):.4f}"
                              for key, value in (logs or {}).items())
            print(f"{steps}/{self.target} - {now - self._epoch_started:.0f}s{metrics}",
                  flush=True)


def epochs_for_steps(train_steps: int | None, steps_per_epoch: int, epochs: int) -> int:
    """How many epochs --epochs and the --train_steps cap allow together."""
    if not train_steps:
        return epochs
    return min(epochs, math.ceil(train_steps / steps_per_epoch))
