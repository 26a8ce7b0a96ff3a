"""--lr_warmup_epochs: the rate of step k is the epoch's rate times min(1, (k + 1) / N).

Checked against the ramp written out by hand (a callback setting the rate before every single
step), so a ramp that never reaches the update, starts a step late or ramps per call instead of
per step fails here. The trainer's exact-resume tests (test_train.py's EXACT_RUN_FLAGS) run with
a warm-up that a resume lands in the middle of.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.train import callbacks, execution, schedules, steps

WARMUP_STEPS = 5
RATE = 0.05


def _dataset():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=64).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)


def _network():
    return keras.Sequential([
        keras.Input((6,), name="images"),
        keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotNormal(2))])


class _RateBeforeEachStep(keras.callbacks.Callback):
    """The ramp by hand: one step per call, the rate set on the host before each."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        taken = int(self.model.optimizer.iterations.numpy())
        rate = RATE * min(1.0, (taken + 1) / WARMUP_STEPS)
        self.model.optimizer.learning_rate.assign(rate)
        self.rates.append(rate)


def _train(*, warmup: bool, steps_per_execution: int = 1, epochs: int = 2):
    network = steps.TrainingModel(
        _network(), warmup=schedules.LinearWarmup(WARMUP_STEPS) if warmup else None)
    network.compile(keras.optimizers.SGD(RATE, momentum=0.9),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    steps_per_execution=steps_per_execution)
    schedule = schedules.StepSchedule(RATE, step_epochs=100)
    extra = [] if warmup else [_RateBeforeEachStep()]
    network.fit(_dataset(), epochs=epochs, steps_per_epoch=4, verbose=0,
                callbacks=[execution.ExactStepsPerExecution(None),  # 4-step epochs, as the trainer
                           callbacks.LearningRateFromSchedule(schedule, network.warmup), *extra])
    return network, extra


def test_the_rate_ramps_per_step_as_written_out_by_hand():
    by_hand, (record,) = _train(warmup=False)
    # The ramp under test must be a ramp: 1/5, 2/5, ... of the rate, then the rate itself.
    np.testing.assert_allclose(record.rates[:6], [0.01, 0.02, 0.03, 0.04, 0.05, 0.05])
    warmed, _ = _train(warmup=True)
    plain, _ = _train(warmup=True, epochs=0)  # untrained, for a difference to be visible
    assert not np.allclose(plain.get_weights()[0], by_hand.get_weights()[0])
    for expected, got in zip(by_hand.get_weights(), warmed.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert float(warmed.optimizer.learning_rate.numpy()) == pytest.approx(RATE)


def test_several_steps_per_call_ramp_exactly_like_one():
    one, _ = _train(warmup=True)
    three, _ = _train(warmup=True, steps_per_execution=3)
    for expected, got in zip(one.get_weights(), three.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_no_warmup_leaves_the_epochs_rate_alone():
    network, _ = _train(warmup=False, epochs=0)
    assert network.warmup is None
    undisturbed = steps.TrainingModel(_network())
    undisturbed.compile(keras.optimizers.SGD(RATE), "mse")
    undisturbed.fit(_dataset().map(lambda x, y: (x, tf.one_hot(y, 3))), epochs=1, verbose=0,
                    callbacks=[callbacks.LearningRateFromSchedule(
                        schedules.StepSchedule(RATE, step_epochs=100))])
    assert float(undisturbed.optimizer.learning_rate.numpy()) == pytest.approx(RATE)


@pytest.mark.parametrize("epochs, steps_per_epoch, expected",
                         [(0.0, 147, 0), (1.0, 147, 147), (1.5, 8, 12), (0.001, 147, 1)])
def test_warmup_epochs_in_steps(epochs, steps_per_epoch, expected):
    assert schedules.warmup_steps(epochs, steps_per_epoch) == expected
