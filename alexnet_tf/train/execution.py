"""Several training steps per call into TensorFlow, ending exactly at each epoch's end.

Keras's `steps_per_execution=K` runs K steps per call but always K: an epoch of S steps takes
ceil(S / K) * K steps when K does not divide S (ImageNet at batch 128 has 10,009 steps per
epoch, a prime), which would break exact resume and the equality with other runs, and it knows
nothing of --train_steps. `ExactStepsPerExecution` keeps Keras's K calls per epoch (from
`compile(steps_per_execution=K)`) but replaces the training function with one that runs
min(K, steps left in the epoch, steps left before --train_steps) steps per call, counted on the
host, so it never reads a device variable to decide.

Callbacks then run once per call, after the call's last step, and see its number as `batch`
(Keras's `begin + K - 1`, clipped here to the epoch's length): preemption, checkpoints and
throughput act at multiples of K steps and at each epoch's end, and the host waits for the
device once per K steps instead of once per step.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from alexnet_tf.train import keras_internals


def steps_run(callback: keras.callbacks.Callback, batch: int) -> int:
    """Steps taken in this `fit` epoch once the call that ended at `batch` has run.

    `batch` is Keras's number for the call's last step, which overshoots the epoch's length
    in a call the epoch's end cut short; `params["steps"]` is that length.
    """
    steps = (callback.params or {}).get("steps")
    return batch + 1 if steps is None else min(batch + 1, steps)


class StepCount:
    """Training steps the run has taken in all, resumes included: the one count that --train_steps,
    the progress bar and summary.json's steps_completed read.

    Counted on the host, one add per call, and saved in each checkpoint (`TrainingCheckpoint`).
    Not `optimizer.iterations`: under mixed_float16 Keras 3.15's LossScaleOptimizer answers with
    its inner optimizer's count, which a step skipped for overflow never advances (read in
    keras/src/optimizers/loss_scale_optimizer.py), so a resumed run counted from it would
    overshoot --train_steps by every skip so far.
    """

    def __init__(self, taken: int = 0):
        self.taken = taken


class ExactStepsPerExecution(keras.callbacks.Callback):
    """Runs up to the model's `steps_per_execution` steps per call, never past the epoch's end
    or `train_steps`.

    Put it before the callbacks that count steps. With `train_steps` it also ends training once that many
    optimizer steps are taken in all (the epoch cut short is validated and saved as usual,
    and `params["steps"]`, which every callback of the fit shares, becomes the epoch's real
    length, so they all see its last step as the last).
    """

    def __init__(self, train_steps: int | None = None, step_count: StepCount | None = None):
        super().__init__()
        self.train_steps = train_steps
        # Without a count handed over (a fresh run in tests), the optimizer's at the first fit.
        self.step_count = step_count
        self.steps_per_execution = 1
        self._steps_per_epoch = None
        self._position = 0
        self._several_steps = None

    def on_train_begin(self, logs=None):
        self._steps_per_epoch = self.params.get("steps")
        if self._steps_per_epoch is None:
            raise ValueError("ExactStepsPerExecution needs fit(steps_per_epoch=...)")
        # Keras's epoch loop already makes ceil(steps / K) calls for this K.
        self.steps_per_execution = self.model.steps_per_execution
        if self.step_count is None:
            self.step_count = StepCount(int(self.model.optimizer.iterations.numpy()))
        if self.train_steps and self.step_count.taken >= self.train_steps:
            raise ValueError(f"--train_steps={self.train_steps} steps are taken already "
                             f"({self.step_count.taken}); fit must not be called")
        if self._several_steps is None:
            self._several_steps = _several_steps_function(self.model)
        self.model.train_function = self._run

    def on_epoch_begin(self, epoch, logs=None):
        self._position = 0

    def _run(self, iterator):
        # At least 1: Keras calls only while the epoch has steps left, and training stops
        # (below) at the call that reaches --train_steps.
        count = min(self.steps_per_execution, self._steps_per_epoch - self._position)
        if self.train_steps:
            count = min(count, self.train_steps - self.step_count.taken)
        outputs = self._several_steps(iterator, tf.constant(count, tf.int32))
        self._position += count
        self.step_count.taken += count
        if self.train_steps and self.step_count.taken >= self.train_steps:
            logging.info("--train_steps=%d reached", self.train_steps)
            self.params["steps"] = self._position
            self.model.stop_training = True
        return outputs


def _several_steps_function(model: keras.Model):
    """A tf.function running `count` training steps on the iterator; returns the last logs.

    Each step is Keras's own: `model.train_step` under the strategy, its outputs reduced as
    Keras reduces them, XLA as `model.jit_compile` says.
    """
    strategy = model.distribute_strategy

    @tf.function(jit_compile=bool(model.jit_compile), reduce_retracing=True)
    def one_step(data):
        outputs = strategy.run(model.train_step, args=(data,))
        return keras_internals.reduce_per_replica(outputs, strategy)

    @tf.function(reduce_retracing=True)
    def several_steps(iterator, count):
        outputs = one_step(next(iterator))
        for _ in tf.range(count - 1):
            outputs = one_step(next(iterator))
        return outputs

    return several_steps
