"""Dynamic loss scaling whose skip-or-apply decision is the same on every replica and worker.

float16 training scales the loss up so that small gradients survive, and skips the step (and
halves the scale) when a gradient overflows. Keras 3.15's LossScaleOptimizer decides "all
gradients finite" before the gradients are all-reduced (keras/src/optimizers/
loss_scale_optimizer.py, `_tf_apply`): under MirroredStrategy from replica 0's local gradients
alone, so an overflow on another replica is all-reduced into the weights (inf); under
MultiWorkerMirroredStrategy each worker decides alone, and a worker that skips leaves the
others waiting in an all-reduce it never joins. Dynamic scaling overflows on purpose now and
then, so any long multi-GPU float16 run meets this.

Here the replicas first agree, with one scalar all-reduce, whether any of them overflowed; a
replica that did not but must skip gets one of its local gradients set to NaN, so Keras's own
check then reaches the global answer on every replica and its code does the rest unchanged.
The price per step: one more finiteness pass over the local gradients, a scalar all-reduce
and an add on the smallest gradient tensor; nothing when there is one replica.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="alexnet_tf")
class AgreedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """A LossScaleOptimizer that skips a step on every replica if any replica overflowed."""

    def apply(self, grads, trainable_variables=None):
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = self._overflow_anywhere_is_overflow_here(list(grads), context)
        return super().apply(grads, trainable_variables)

    def _overflow_anywhere_is_overflow_here(self, grads: list, context) -> list:
        overflowed_here = 1.0 - tf.cast(self.check_finite(grads), tf.float32)
        replicas_overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, overflowed_here)
        # The mark's NaN is never applied: every replica now takes the skip branch.
        present = [i for i, g in enumerate(grads) if g is not None]
        smallest = min(present, key=lambda i: grads[i].shape.num_elements() or 0)
        mark = tf.where(replicas_overflowed > 0, float("nan"), 0.0)
        grads[smallest] = grads[smallest] + tf.cast(mark, grads[smallest].dtype)
        return grads
