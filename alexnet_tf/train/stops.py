"""Why a training run stops early, and what the user is told: divergence, Ctrl-C.

A diverged run (a NaN or infinite loss) must not go on: every later step is NaN too, and each
epoch's checkpoint would overwrite a good one with NaN weights. `StopOnNonFinite` stops at the
first non-finite training loss, validation loss or weight, before anything of that epoch is
saved, and `resume_words` names the checkpoint the same command resumes from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable

import keras
import tensorflow as tf

from alexnet_tf.data import damaged_shards
from alexnet_tf.train.execution import steps_run


class TrainingDiverged(Exception):
    """The loss or the weights became NaN or infinite; nothing non-finite was saved."""


class _Position:
    """Where training is: the last finished step of the running epoch (both 1-based).

    Module-level because a Ctrl-C arrives as a KeyboardInterrupt with no context; the trainer's
    main() reads it to say where the run stopped.
    """

    epoch: int | None = None
    step: int = 0


position = _Position()


def non_finite_variables(variables: Iterable[tf.Variable]) -> list[str]:
    """Names of the floating-point variables holding a NaN or an infinity."""
    return [
        getattr(variable, "path", None) or variable.name
        for variable in variables
        if tf.as_dtype(variable.dtype).is_floating
        and not bool(tf.reduce_all(tf.math.is_finite(variable)))
    ]


def check_finite(variables: Iterable[tf.Variable], what: str) -> None:
    """Raises TrainingDiverged when a variable is not finite: called before every save."""
    bad = non_finite_variables(variables)
    if bad:
        raise TrainingDiverged(
            f"{what}: {len(bad)} variable(s) hold NaN or infinite values ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); not saved")


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises TrainingDiverged at the first step whose loss is not finite.

    Keras's running loss is the epoch's mean so far, so it turns non-finite at the first bad
    step and stays so: checking it each step names that step. At the epoch's end the validation
    loss and every weight are checked too, before the callbacks after this one save anything.
    Must come first in the callback list.

    `learning_rate` says what rate the epoch ran at, for the message; `first_step` is where in
    the epoch this process started (non-zero when it finishes a preempted epoch).
    """

    # Keras may run batch-end callbacks on a thread when every callback allows it (no
    # per-step device sync); an exception raised there surfaces at the next step or, at the
    # latest, before any epoch-end callback runs, and the checkpoint refuses NaN weights anyway.
    async_safe = True

    def __init__(self, learning_rate: Callable[[], float], *, first_step: int = 0):
        super().__init__()
        self._learning_rate = learning_rate
        self._first_step = first_step

    def on_epoch_begin(self, epoch, logs=None):
        position.epoch, position.step = epoch + 1, self._first_step

    def on_train_batch_end(self, batch, logs=None):
        # Real steps: with --steps_per_execution Keras numbers a short call as a full one.
        position.step = self._first_step + steps_run(self, batch)
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._diverged(f"the training loss is {float(loss)}")

    def on_epoch_end(self, epoch, logs=None):
        self._first_step = 0
        validation_loss = (logs or {}).get("val_loss")
        if validation_loss is not None and not math.isfinite(float(validation_loss)):
            self._diverged(f"the validation loss is {float(validation_loss)}")
        bad = non_finite_variables(self.model.trainable_variables)
        if bad:
            self._diverged(f"{len(bad)} weight(s) hold NaN or infinite values ({bad[0]}, ...)")

    def _diverged(self, what: str) -> None:
        raise TrainingDiverged(
            f"training diverged at epoch {position.epoch}, step {position.step}: {what}. Likely "
            f"cause: a learning rate too high for this model, batch and data (this epoch's: "
            f"{self._learning_rate():g}; lower --learning_rate), or extreme input values. "
            "Nothing of this epoch was saved")


def resume_words(model_dir: str) -> str:
    """What the same command resumes from: the newest checkpoint in --model_dir, in words."""
    return damaged_shards.resume_point(os.path.join(model_dir, "checkpoints"))


def interrupted_message(model_dir: str) -> str:
    """The line printed on Ctrl-C in place of a KeyboardInterrupt traceback."""
    where = ("before training started" if position.epoch is None
             else f"at epoch {position.epoch}, step {position.step}")
    return f"Interrupted {where}; {resume_words(model_dir)}"
