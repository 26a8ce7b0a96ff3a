"""What a training step and a validation step do, in one class: `TrainingModel`.

A training step, in order: (1) finish the host's uint8 crops on the device (cast, mean and
lighting offset: data/device_input.py); (2) per replica, forward and backward, XLA-compiled
inside the replica when --jit_compile runs under several replicas; (3) the update, whose
float16 skip-or-apply decision every replica agrees on (the optimizer: loss_scale.py); (4) the
loss and the metrics, as [1] vectors under several workers. A validation step weighs each
example by the weight the padded validation pipeline gives it (data/validation.py), so padding
counts zero times. Several steps per call, ending exactly at epoch ends: execution.py.

Why a `keras.Model` subclass overriding `train_step`/`test_step` (Keras's guide "Customizing
what happens in fit()") and not a custom loop under the strategy (TF Model Garden's Orbit):
`fit` already gives the trainer what it is built around (callbacks for checkpoints, preemption,
schedules and progress, validation passes, history, TensorBoard, steps_per_execution), and
the steps above are each a few lines inside Keras's step, not a different loop. The private
Keras API the class still needs is keras_internals.py's.

The class is a functional model over the network's own layers, so it shares every variable
with the network: the trainer compiles and fits this class and checkpoints it, and saves the
plain network (`network()`) as model.keras, which loads without this module.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from alexnet_tf.data import device_input
from alexnet_tf.train import keras_internals, schedules


class TrainingModel(keras_internals.BuildsFromInputSpec, keras.Model):
    """`network` with the trainer's training and validation steps.

    Args:
      network: the functional model to train (build_alexnet's); its layers are shared. Its
        declared input shape is what the metrics are built from, not a first batch.
      xla_per_replica: XLA-compile each replica's forward and backward pass (see
        `_xla_train_step`); compile with `jit_compile=False` then.
      multi_worker: return each step's logs as [1] vectors, for MultiWorkerMirroredStrategy.
      warmup: ramp the learning rate over the first steps (schedules.LinearWarmup); the
        optimizer's rate is then set inside every step.
    """

    def __init__(self, network: keras.Model, *, xla_per_replica: bool = False,
                 multi_worker: bool = False, warmup: schedules.LinearWarmup | None = None):
        super().__init__(inputs=network.inputs, outputs=network.outputs, name=network.name)
        self.warmup = warmup
        self.xla_per_replica = xla_per_replica
        self.multi_worker = multi_worker
        self.input_spec_for_build = (tf.TensorSpec(network.inputs[0].shape, tf.float32),
                                     tf.TensorSpec([None], tf.int32))

    def network(self) -> keras.Model:
        """The plain functional network over the same layers: what model.keras holds."""
        return keras.Model(self.inputs, self.outputs, name=self.name)

    def train_step(self, data):
        images, labels = data[0], data[1]
        if device_input.is_deferred(images):  # (uint8 crops, offsets); synthetic data is float
            images = device_input.to_model_input(*images)
        if self.warmup is not None:
            # Before the update reads it; the optimizer's variable, so checkpoints keep their form.
            self.optimizer.learning_rate.assign(self.warmup.rate(self.optimizer.iterations))
        if self.xla_per_replica:
            logs = self._xla_train_step(images, labels)
        else:
            logs = super().train_step((images, labels))
        return self._for_workers(logs)

    def _xla_train_step(self, images, labels):
        """Keras's step with the forward and backward pass XLA-compiled inside the replica.

        Keras compiles the whole step, `strategy.run` included, when `jit_compile=True`; under a
        multi-replica MirroredStrategy that fails ("Trying to access resource ... located in
        device CPU:1 from device CPU:0") because one XLA cluster cannot span devices, which is
        why Keras's `jit_compile="auto"` turns XLA off under any strategy. Compiling inside the
        replica instead, and leaving the gradient all-reduce and the optimizer update outside,
        gives each device its own XLA program.
        """

        @tf.function(jit_compile=True)
        def forward_and_backward(images, labels):
            with tf.GradientTape() as tape:
                logits = self(images, training=True)
                # Divided by the replica count under a strategy, so the all-reduced SUM of
                # the gradients is the gradient of the global-batch mean.
                loss = self.compute_loss(x=images, y=labels, y_pred=logits, training=True)
                scaled_loss = self.optimizer.scale_loss(loss)  # mixed_float16's loss scale
            return logits, loss, tape.gradient(scaled_loss, self.trainable_weights)

        logits, loss, gradients = forward_and_backward(images, labels)
        keras_internals.loss_tracker(self).update_state(
            loss * self.distribute_strategy.num_replicas_in_sync,
            sample_weight=tf.shape(images)[0])
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.compute_metrics(images, labels, logits, sample_weight=None)

    def test_step(self, data):
        """Keras's step, with the loss a mean over the real examples of a padded batch.

        Keras's `test_step` averages each batch's loss over its length, padding included, and
        weights that mean by the batch length, so padded examples would dilute `val_loss`. Here
        the sample weights are rescaled to sum to the batch length, which makes the compiled
        loss the mean over the weighted examples (plus the regularisation terms), and the loss
        tracker is weighted by the real examples in the batch. The metrics take the weights as
        they are, so compile them as `weighted_metrics` (Keras ignores sample weights in plain
        `metrics`). Batches without weights are scored as Keras would.
        """
        images, labels, weights = keras.utils.unpack_x_y_sample_weight(data)
        if weights is None:
            return self._for_workers(super().test_step(data))
        predictions = self(images, training=False)
        real_examples = tf.reduce_sum(weights)
        batch_length = tf.cast(tf.shape(weights)[0], weights.dtype)
        loss = self.compute_loss(
            x=images, y=labels, y_pred=predictions, training=False,
            sample_weight=tf.math.divide_no_nan(weights * batch_length, real_examples))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        keras_internals.loss_tracker(self).update_state(loss * replicas,
                                                        sample_weight=real_examples)
        return self._for_workers(
            self.compute_metrics(images, labels, predictions, sample_weight=weights))

    def _for_workers(self, logs: dict) -> dict:
        """Under MultiWorkerMirroredStrategy, the logs as [1] vectors.

        After every step Keras 3.15 averages the logs with `strategy.reduce(MEAN, axis=0)`, an
        axis scalars lack, which multi-worker collectives refuse (keras-team/keras#20585); the
        mean over axis 0 of all replicas' [1] vectors is the cross-worker mean Keras meant.
        """
        if not self.multi_worker:
            return logs
        return {key: tf.reshape(value, [1]) for key, value in logs.items()}
