"""The private Keras API the trainer still needs, in one place, each use with where it was read.

Everything else in the package uses what Keras documents (`train_step`, `test_step`,
`compute_loss`, `compute_metrics`, callbacks). These do not have a public form in Keras 3:

- `reduce_per_replica` (keras/src/backend/tensorflow/trainer.py): how `fit` reduces a step's
  per-replica logs; `execution.py` runs several steps per call and must reduce as `fit` does.
- `Trainer._loss_tracker` (keras/src/trainers/trainer.py): the running mean behind the `loss`
  log; a step that weighs its examples (validation padding, XLA per replica) updates it itself.
- `model.train_function`, which `fit` calls once per call into TensorFlow: a public attribute,
  but that `fit` calls it and nothing else is read in its source; `execution.py` replaces it.
- `TensorFlowTrainer._maybe_symbolic_build` / `_symbolic_build` / `_distribute_strategy`
  (overridden and called by `BuildsFromInputSpec`): under a strategy `fit` builds
  the metrics from a first batch it averages over replicas, which a (uint8 crops, offsets) batch
  and MultiWorkerMirroredStrategy both break (keras-team/keras#20585); we build from the
  pipeline's declared shapes instead.

Read on Keras 3.15.1. `check()` runs at the trainer's start, so an upgrade that renames or
drops one of them stops the run with a line naming it, instead of a traceback mid-fit.
"""

from __future__ import annotations

import inspect

import keras

CHECKED_ON = ("3.15",)


def _tensorflow_trainer():
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415

    return trainer


def check() -> None:
    """Raises RuntimeError naming each private Keras API above that this Keras lacks."""
    missing = []
    try:
        trainer = _tensorflow_trainer()
    except ImportError as error:
        raise RuntimeError(f"Keras {keras.__version__} has no keras.src.backend.tensorflow."
                           f"trainer ({error}); {_advice()}") from None
    if not callable(getattr(trainer, "reduce_per_replica", None)):
        missing.append("keras.src.backend.tensorflow.trainer.reduce_per_replica")
    elif list(inspect.signature(trainer.reduce_per_replica).parameters)[:3] != [
            "values", "strategy", "reduction"]:
        missing.append("reduce_per_replica(values, strategy, reduction)")
    model_class = getattr(trainer, "TensorFlowTrainer", None)
    for name in ("_maybe_symbolic_build", "_symbolic_build"):
        if model_class is None or not callable(getattr(model_class, name, None)):
            missing.append(f"TensorFlowTrainer.{name}")
    if "_loss_tracker" not in inspect.getsource(keras.src.trainers.trainer.Trainer.compile):
        missing.append("Trainer._loss_tracker (set in compile)")
    if model_class is not None and "self.train_function(iterator)" not in inspect.getsource(
            model_class.fit):
        missing.append("TensorFlowTrainer.fit calling model.train_function(iterator) per call")
    if missing:
        raise RuntimeError(f"Keras {keras.__version__} changed private API alexnet_tf's trainer "
                           f"relies on: {', '.join(missing)}; {_advice()}")


def _advice() -> str:
    return (f"alexnet_tf was checked on Keras {', '.join(CHECKED_ON)}: pip install "
            f"'keras=={CHECKED_ON[-1]}.*', or see alexnet_tf/train/keras_internals.py")


def reduce_per_replica(outputs, strategy):
    """A step's per-replica logs reduced as `fit` reduces them."""
    return _tensorflow_trainer().reduce_per_replica(outputs, strategy, reduction="auto")


def loss_tracker(model: keras.Model) -> keras.metrics.Metric:
    """The `loss` log's running mean, for a step that weighs the examples it counts."""
    return model._loss_tracker


class BuildsFromInputSpec:
    """Mixin for a keras.Model: under a strategy, `fit` and `evaluate` build the model and its
    metrics from `self.input_spec_for_build` (the shapes the pipeline declares) instead of
    from a first batch Keras reads and averages over the replicas: a (uint8 crops, offsets)
    batch is not the model's input, and MultiWorkerMirroredStrategy refuses the average
    ("Attempt to convert a value (PerReplica..."). Outside a strategy Keras builds at the
    first trace, as it always does."""

    input_spec_for_build = None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if getattr(self, "_distribute_strategy", None) is None or self.input_spec_for_build is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=self.input_spec_for_build)
