"""The private Keras API the trainer relies on is where alexnet_tf/train/keras_internals.py says,
and an upgrade that moves it is named in one line before any training."""

import os
import subprocess
import sys

import keras
import pytest
from keras.src.backend.tensorflow import trainer as tensorflow_trainer
from keras.src.trainers import trainer as base_trainer

from alexnet_tf.train import keras_internals

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_this_keras_has_every_private_api_the_trainer_uses():
    keras_internals.check()  # raises naming what is missing
    major_minor = ".".join(keras.__version__.split(".")[:2])
    if major_minor not in keras_internals.CHECKED_ON:
        pytest.fail(f"Keras {keras.__version__} is newer than the versions keras_internals.py was "
                    f"read on ({keras_internals.CHECKED_ON}): read the uses it lists again, then "
                    "add this version to CHECKED_ON")


@pytest.mark.parametrize("owner, attribute", [
    (tensorflow_trainer.TensorFlowTrainer, "_maybe_symbolic_build"),
    (base_trainer.Trainer, "_symbolic_build"),
    (tensorflow_trainer, "reduce_per_replica"),
])
def test_a_keras_without_one_of_them_is_named_in_one_line(monkeypatch, owner, attribute):
    monkeypatch.delattr(owner, attribute)
    with pytest.raises(RuntimeError, match=f"changed private API .*{attribute}.*pip install"):
        keras_internals.check()


def test_a_fit_that_no_longer_calls_train_function_is_named(monkeypatch):
    def fit(self, *args, **kwargs):  # a loop that runs its own function
        return self.some_other_function(args)

    monkeypatch.setattr(tensorflow_trainer.TensorFlowTrainer, "fit", fit)
    with pytest.raises(RuntimeError, match="train_function"):
        keras_internals.check()


SIMULATED_UPGRADE = """
import sys
import keras.src.backend.tensorflow.trainer as trainer
del trainer.reduce_per_replica  # as if an upgrade had moved it
sys.argv = ["train", "--model_dir=" + sys.argv[1], "--use_synthetic_data"]
from absl import app
from alexnet_tf.train import trainer as alexnet_trainer
app.run(alexnet_trainer.main)
"""


def test_the_trainer_stops_with_that_line_before_training(tmp_path):
    result = subprocess.run([sys.executable, "-c", SIMULATED_UPGRADE, str(tmp_path / "run")],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert any(line.startswith("Error: Keras") and "reduce_per_replica" in line
               for line in result.stderr.splitlines()), result.stderr[-2000:]
