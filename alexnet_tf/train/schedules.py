"""Learning-rate schedules that change the rate once per epoch, as the paper did.

Each schedule answers two questions: `learning_rate(epoch)`, asked when an epoch begins, and
`observe(validation_error)`, told when an epoch ends. `plateau` is the paper's own rule
(section 5: "divide the learning rate by 10 when the validation error rate stopped improving
with the current learning rate [...] reduced three times prior to termination"); `step` is the
fixed-epoch version most re-implementations use (torchvision: /10 every 30 epochs); `cosine`
is the modern default.

Schedules are `tf.Module`s so that the plateau rule's memory (best error, epochs waited,
reductions made, current rate) lives in variables and is saved in the training checkpoint: a
resumed run continues the rule exactly where it stopped instead of starting to wait afresh.
"""

from __future__ import annotations

import math

import tensorflow as tf

SCHEDULES = ("plateau", "step", "cosine")


class PlateauSchedule(tf.Module):
    """Divides the rate by `1 / factor` when validation error stops improving (paper, section 5).

    The paper names no patience; "stopped improving" here means `patience` epochs in a row
    without the error falling by more than `min_delta` below the best seen so far. After a
    reduction the count starts again, so every rate gets `patience` epochs to prove itself.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        *,
        factor: float = 0.1,
        patience: int = 5,
        min_delta: float = 0.0,
        max_reductions: int = 3,
    ):
        super().__init__(name="plateau_schedule")
        if patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, got {patience}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor = factor
        self.patience = patience
        self.min_delta = min_delta
        self.max_reductions = max_reductions
        self.current_learning_rate = tf.Variable(
            initial_learning_rate, dtype=tf.float64, trainable=False, name="learning_rate"
        )
        self.best_error = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best")
        self.epochs_without_improvement = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="wait"
        )
        self.reductions = tf.Variable(0, dtype=tf.int64, trainable=False, name="reductions")

    def learning_rate(self, epoch: int) -> float:
        del epoch  # The plateau rule depends on what validation said, not on the calendar.
        return float(self.current_learning_rate.numpy())

    def observe(self, validation_error: float) -> bool:
        """Records one epoch's validation error; returns True when it reduced the rate."""
        if validation_error < float(self.best_error.numpy()) - self.min_delta:
            self.best_error.assign(validation_error)
            self.epochs_without_improvement.assign(0)
            return False
        self.epochs_without_improvement.assign_add(1)
        if int(self.epochs_without_improvement.numpy()) < self.patience:
            return False
        if int(self.reductions.numpy()) >= self.max_reductions:
            return False
        self.current_learning_rate.assign(self.current_learning_rate * self.factor)
        self.reductions.assign_add(1)
        self.epochs_without_improvement.assign(0)
        return True

    def restart_from(self, initial_learning_rate: float) -> float:
        """After a resume with another --learning_rate (or --lr_decay_factor): the rate the
        rule would be at now had it started there, keeping the reductions it has made."""
        rate = initial_learning_rate * self.factor ** int(self.reductions.numpy())
        self.current_learning_rate.assign(rate)
        return rate

    def state(self) -> dict:
        """The rule's memory, for logs and summary.json."""
        return {
            "learning_rate": float(self.current_learning_rate.numpy()),
            "best_validation_error": float(self.best_error.numpy()),
            "epochs_without_improvement": int(self.epochs_without_improvement.numpy()),
            "reductions": int(self.reductions.numpy()),
        }


class StepSchedule(tf.Module):
    """Multiplies the rate by `factor` every `step_epochs` epochs (torchvision's AlexNet recipe)."""

    def __init__(self, initial_learning_rate: float, *, step_epochs: int, factor: float = 0.1):
        super().__init__(name="step_schedule")
        if step_epochs < 1:
            raise ValueError(f"step_epochs must be at least 1, got {step_epochs}")
        self.initial_learning_rate = initial_learning_rate
        self.step_epochs = step_epochs
        self.factor = factor

    def learning_rate(self, epoch: int) -> float:
        return self.initial_learning_rate * self.factor ** (epoch // self.step_epochs)

    def observe(self, validation_error: float) -> bool:
        del validation_error  # A function of the epoch alone.
        return False

    def state(self) -> dict:
        return {}


class CosineSchedule(tf.Module):
    """Half a cosine from the initial rate down to `final_learning_rate` over `epochs`."""

    def __init__(
        self, initial_learning_rate: float, *, epochs: int, final_learning_rate: float = 0.0
    ):
        super().__init__(name="cosine_schedule")
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        self.initial_learning_rate = initial_learning_rate
        self.final_learning_rate = final_learning_rate
        self.epochs = epochs

    def learning_rate(self, epoch: int) -> float:
        progress = min(epoch, self.epochs) / self.epochs
        span = self.initial_learning_rate - self.final_learning_rate
        return self.final_learning_rate + 0.5 * span * (1.0 + math.cos(math.pi * progress))

    def observe(self, validation_error: float) -> bool:
        del validation_error
        return False

    def state(self) -> dict:
        return {}


class LinearWarmup:
    """Ramps the rate linearly over an optimizer's first `steps` steps (Goyal et al., 2017).

    Step k (from 0) runs at `epoch_rate * min(1, (k + 1) / steps)`: a large rate on freshly
    initialised weights throws the loss up before it learns (Imagenette, He init: 0.01 at batch
    64 sat at chance for 100 steps, 0.005 did not), and the ramp lets the later steps use it.
    The fraction is computed inside each training step from the optimizer's step count, so
    several steps per execution ramp exactly as one does, and a resumed run carries on the
    ramp where it stopped. Deliberately a plain object, not a `tf.Module`: nothing here
    belongs in a checkpoint (the callback sets `epoch_rate` as each epoch begins).
    """

    def __init__(self, steps: int):
        if steps < 1:
            raise ValueError(f"warm-up steps must be at least 1, got {steps}")
        self.steps = steps
        self.epoch_rate = tf.Variable(0.0, dtype=tf.float32, trainable=False,
                                      name="warmup_epoch_rate")

    def rate(self, steps_taken) -> tf.Tensor:
        """The rate of the step after `steps_taken` optimizer steps."""
        fraction = tf.minimum(1.0, tf.cast(steps_taken + 1, tf.float32) / self.steps)
        return self.epoch_rate * fraction


def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    """--lr_warmup_epochs in optimizer steps: 0 for none, else at least one."""
    if warmup_epochs <= 0:
        return 0
    return max(1, round(warmup_epochs * steps_per_epoch))


def build_schedule(
    name: str,
    *,
    initial_learning_rate: float,
    epochs: int,
    factor: float = 0.1,
    patience: int = 5,
    min_delta: float = 0.0,
    max_reductions: int = 3,
    step_epochs: int = 30,
) -> PlateauSchedule | StepSchedule | CosineSchedule:
    """The schedule the --lr_schedule flag names, configured from the other --lr_* flags."""
    if name == "plateau":
        return PlateauSchedule(
            initial_learning_rate,
            factor=factor,
            patience=patience,
            min_delta=min_delta,
            max_reductions=max_reductions,
        )
    if name == "step":
        return StepSchedule(initial_learning_rate, step_epochs=step_epochs, factor=factor)
    if name == "cosine":
        return CosineSchedule(initial_learning_rate, epochs=epochs)
    raise ValueError(f"unknown learning-rate schedule {name!r}; expected one of {SCHEDULES}")
