"""Several steps per call (--steps_per_execution): exact step counts, resume and preemption.

Each test trains a tiny model in-process on a stream of distinct batches, so a step taken
twice or skipped shows in the weights, not only in the step count.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.train import callbacks, distribution, execution, schedules, stops
from tests.test_train import SigtermAtStep


def _stream():
    """Batch i is distinct from every other, so the weights record which batches were used."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4096, 3)).astype(np.float32)
    targets = rng.normal(size=(4096, 2)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((features, targets)).batch(2).repeat()


def _model(steps_per_execution: int) -> keras.Model:
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(2, kernel_initializer=keras.initializers.Ones())])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse",
                  steps_per_execution=steps_per_execution)
    return model


def _fit(model, dataset, *, epochs, steps_per_epoch, initial_epoch=0, train_steps=None,
         extra=()):
    return model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch,
                     steps_per_epoch=steps_per_epoch, verbose=0,
                     callbacks=[execution.ExactStepsPerExecution(train_steps), *extra])


@pytest.mark.parametrize("steps_per_execution", [2, 3, 5, 8])
def test_an_epoch_takes_its_steps_whatever_the_steps_per_execution(steps_per_execution):
    reference = _model(1)
    _fit(reference, _stream(), epochs=3, steps_per_epoch=5)
    model = _model(steps_per_execution)
    history = _fit(model, _stream(), epochs=3, steps_per_epoch=5)
    assert int(model.optimizer.iterations.numpy()) == 15  # Keras alone would take 18 at K=3
    assert len(history.history["loss"]) == 3
    for got, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_train_steps_stop_at_that_step_inside_a_call():
    model = _model(3)
    history = _fit(model, _stream(), epochs=10, steps_per_epoch=5, train_steps=7)
    assert int(model.optimizer.iterations.numpy()) == 7
    assert len(history.history["loss"]) == 2  # the second epoch cut short, still recorded


def test_throughput_counts_every_step_of_a_call():
    throughput = callbacks.Throughput(global_batch_size=2, warmup_steps=0)
    _fit(_model(2), _stream(), epochs=2, steps_per_epoch=5, extra=[throughput])
    # Per epoch, calls of 2, 2 and 1 steps; the first call of each epoch is not timed.
    assert throughput._total_images == 2 * 2 * 3
    assert throughput.steady_state_images_per_second > 0


@pytest.mark.parametrize("signalled_batch, saved_epochs, saved_steps",
                         [(1, 1, 2), (3, 1, 4), (5, 2, 0)],
                         ids=["after_call_1", "after_call_2", "last_call_cut_short"])
def test_preemption_saves_after_a_call_and_the_rerun_ends_where_an_uninterrupted_run_does(
        tmp_path, signalled_batch, saved_epochs, saved_steps):
    """5 steps per epoch in calls of 2, 2, 1: a SIGTERM saves after the call it falls in."""
    steps_per_epoch, epochs = 5, 3
    reference = _model(2)
    _fit(reference, _stream(), epochs=epochs, steps_per_epoch=steps_per_epoch)

    def checkpointed(model):
        return callbacks.TrainingCheckpoint(
            str(tmp_path), model=model, optimizer=model.optimizer,
            schedule=schedules.PlateauSchedule(0.05))

    model = _model(2)
    model.optimizer.build(model.trainable_variables)
    checkpoint = checkpointed(model)
    history = []
    with pytest.raises(callbacks.TrainingPreempted):
        _fit(model, _stream(), epochs=epochs, steps_per_epoch=steps_per_epoch,
             extra=[SigtermAtStep(epoch=1, step=signalled_batch + 1),
                    callbacks.SaveEachEpoch(checkpoint, history=history, history_path=None,
                                            curves_path=None),
                    callbacks.CheckpointOnPreemption(checkpoint)])
    saved = tf.train.load_checkpoint(str(tmp_path))
    assert saved.get_tensor("completed_epochs/.ATTRIBUTES/VARIABLE_VALUE") == saved_epochs
    assert saved.get_tensor("steps_into_epoch/.ATTRIBUTES/VARIABLE_VALUE") == saved_steps

    # The rerun, as train.train does it: the stream from the saved step, the rest of that epoch,
    # then the remaining epochs.
    resumed = _model(2)
    resumed.optimizer.build(resumed.trainable_variables)
    checkpointed(resumed).restore_latest()
    first_epoch = saved_epochs
    if saved_steps:
        _fit(resumed, _stream().skip(first_epoch * steps_per_epoch + saved_steps),
             epochs=first_epoch + 1, initial_epoch=first_epoch,
             steps_per_epoch=steps_per_epoch - saved_steps)
        first_epoch += 1
    _fit(resumed, _stream().skip(first_epoch * steps_per_epoch), epochs=epochs,
         initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch)
    assert int(resumed.optimizer.iterations.numpy()) == epochs * steps_per_epoch
    for got, expected in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_workers_agree_after_each_call_that_reaches_a_multiple_of_check_every(tmp_path):
    """With calls of 3 steps and check_every=4, the workers ask after steps 6, 9 (crossing 8)
    and 10 (the epoch's last): at the same calls on every worker."""
    asked_at = []

    def any_worker(flag):
        asked_at.append(int(model.optimizer.iterations.numpy()))
        return flag

    model = _model(3)
    checkpoint = callbacks.TrainingCheckpoint(
        str(tmp_path), model=model, optimizer=model.optimizer,
        schedule=schedules.PlateauSchedule(0.05))
    _fit(model, _stream(), epochs=1, steps_per_epoch=10,
         extra=[callbacks.CheckpointOnPreemption(checkpoint, any_worker=any_worker,
                                                 check_every=4)])
    assert asked_at == [6, 9, 10, 10]  # the last one at the epoch's end


def test_a_dataset_prefetched_to_the_device_trains_like_the_plain_one():
    """One replica: the batches are copied ahead to the device (here the CPU, on CI)."""
    strategy = tf.distribute.get_strategy()
    plain = _model(2)
    _fit(plain, distribution.distribute(strategy, lambda context: _stream()), epochs=2,
         steps_per_epoch=5)
    prefetched_stream = distribution.distribute(strategy, lambda context: _stream(),
                                                prefetch_device="/cpu:0")
    # prefetch_to_device is a copy to the device followed by a prefetch there.
    assert type(prefetched_stream._input_dataset).__name__ == "_CopyToDeviceDataset"
    prefetched = _model(2)
    _fit(prefetched, prefetched_stream, epochs=2, steps_per_epoch=5)
    for got, expected in zip(prefetched.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(got, expected)


class _InterruptAfterFirstCall(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


def test_progress_and_the_ctrl_c_message_count_real_steps(tmp_path, capsys):
    """configs/paper.cfg's 10 steps per call over 3-step epochs: one call of 3 steps."""
    model = _model(10)
    progress = callbacks.Progress(terminal=True)
    with pytest.raises(KeyboardInterrupt):
        model.fit(_stream(), epochs=3, steps_per_epoch=3, verbose=1, callbacks=[
            stops.StopOnNonFinite(lambda: 0.05), execution.ExactStepsPerExecution(),
            progress, _InterruptAfterFirstCall()])
    assert int(model.optimizer.iterations.numpy()) == 3
    message = stops.interrupted_message(str(tmp_path))
    assert message.startswith("Interrupted at epoch 1, step 3;"), message
    shown = capsys.readouterr().out
    assert "3/3" in shown and "10/3" not in shown, shown


def test_progress_off_a_terminal_is_plain_lines_of_real_steps(capsys):
    model = _model(2)
    model.fit(_stream(), epochs=1, steps_per_epoch=5, verbose=1, callbacks=[
        execution.ExactStepsPerExecution(),
        callbacks.Progress(terminal=False, plain_every_seconds=0.0)])
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\r" not in shown and "\b" not in shown, repr(shown)
    # Calls of 2, 2 and 1 steps: a line after each of the first two, Keras's at the end.
    assert [line.split(" ")[0] for line in shown.splitlines()] == ["2/5", "4/5", "5/5"], shown


class _StepsRun(keras.callbacks.Callback):
    """Steps each fit really ran, counted from the calls' ends."""

    def __init__(self):
        super().__init__()
        self.total = 0
        self._epoch_steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_steps = execution.steps_run(self, batch)

    def on_epoch_end(self, epoch, logs=None):
        self.total += self._epoch_steps


def _float16_model_that_skips_its_first_steps() -> keras.Model:
    """mixed_float16 with a loss scale of 2**40: the float16 gradients overflow, so the first
    ~25 steps are skipped (the scale halves each time), as dynamic scaling does now and then."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
            2, kernel_initializer=keras.initializers.Ones())])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05),
                                                    initial_scale=2.0**40)
    model.compile(optimizer, "mse", steps_per_execution=3)
    return model


def test_train_steps_count_float16_steps_skipped_for_overflow_and_a_resume_goes_on_from_there():
    model = _float16_model_that_skips_its_first_steps()
    count, ran = execution.StepCount(), _StepsRun()
    model.fit(_stream(), epochs=10, steps_per_epoch=10, verbose=0,
              callbacks=[execution.ExactStepsPerExecution(30, count), ran])
    applied = int(model.optimizer.iterations.numpy())
    assert (count.taken, ran.total) == (30, 30)
    assert 0 < applied < 30, applied  # steps were skipped: the optimizer's count says less
    # The resumed run, to --train_steps=40, takes 10 more steps, not 40 - `applied`.
    resumed_ran = _StepsRun()
    model.fit(_stream().skip(30), epochs=10, initial_epoch=3, steps_per_epoch=10, verbose=0,
              callbacks=[execution.ExactStepsPerExecution(40, count), resumed_ran])
    assert (count.taken, resumed_ran.total) == (40, 10)


def test_a_fit_asked_for_when_train_steps_are_taken_already_is_refused():
    model = _model(2)
    _fit(model, _stream(), epochs=2, steps_per_epoch=5)
    with pytest.raises(ValueError, match="--train_steps=5 steps are taken already"):
        model.fit(_stream(), epochs=3, initial_epoch=2, steps_per_epoch=5, verbose=0,
                  callbacks=[execution.ExactStepsPerExecution(5, execution.StepCount(5))])
    assert int(model.optimizer.iterations.numpy()) == 10  # no step taken past them


def test_the_step_count_travels_in_the_checkpoint(tmp_path):
    model = _float16_model_that_skips_its_first_steps()
    checkpoint = callbacks.TrainingCheckpoint(str(tmp_path), model=model, optimizer=model.optimizer,
                                              schedule=schedules.PlateauSchedule(0.05))
    count = checkpoint.restored_step_count()
    assert count.taken == 0
    model.fit(_stream(), epochs=1, steps_per_epoch=12, verbose=0,
              callbacks=[execution.ExactStepsPerExecution(None, count)])
    checkpoint.save(completed_epochs=1)
    restored_model = _float16_model_that_skips_its_first_steps()
    restored_model.optimizer.build(restored_model.trainable_variables)
    restored = callbacks.TrainingCheckpoint(str(tmp_path), model=restored_model,
                                            optimizer=restored_model.optimizer,
                                            schedule=schedules.PlateauSchedule(0.05))
    restored.restore_latest()
    assert restored.restored_step_count().taken == 12
    assert int(restored_model.optimizer.iterations.numpy()) < 12
