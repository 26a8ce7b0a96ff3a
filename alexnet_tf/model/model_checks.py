"""Checks that a model file is one the evaluation can score, before any image is read.

Keras answers a truncated .keras file with "File not found", and a model of another input size
or class count with a long traceback from inside the first batch, or worse with an accuracy of
zero. Each case is decided here from the file and the model's shapes, with a line naming it.
"""

from __future__ import annotations

import zipfile

import keras

import alexnet_tf.model.layers  # noqa: F401  (registers the custom layers for load_model)
from alexnet_tf import imagenet


class ModelCheckError(ValueError):
    """The model cannot be used as asked; the message names the file and the flag."""


def load_keras_model(path: str) -> keras.Model:
    """The Keras model at `path`; a ModelCheckError saying why it cannot be loaded."""
    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ModelCheckError(
                f"--model={path} is damaged or truncated: not a complete .keras zip archive "
                f"({error}); copy it again or use another checkpoint's model") from None
        if damaged is not None:
            raise ModelCheckError(f"--model={path} is damaged: its member {damaged} fails its "
                                  "checksum; copy it again")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, TypeError) as error:
        raise ModelCheckError(f"--model={path} is not a loadable Keras model "
                              f"({str(error).splitlines()[0]})") from None


def image_classifier_shape(network: keras.Model, path: str) -> tuple[int, int]:
    """(input side, classes) of a model taking [B, S, S, 3] images and giving [B, classes]."""
    inputs, outputs = network.input_shape, network.output_shape
    if (not isinstance(inputs, tuple) or len(inputs) != 4 or inputs[3] != 3
            or inputs[1] is None or inputs[1] != inputs[2]
            or not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[1] is None):
        raise ModelCheckError(
            f"--model={path} is not an AlexNet image classifier: it takes {inputs} and gives "
            f"{outputs}, where [batch, side, side, 3] images -> [batch, classes] is expected")
    return int(inputs[1]), int(outputs[1])


def check_image_size(image_size: int, model_side: int, path: str) -> None:
    if image_size != model_side:
        raise ModelCheckError(
            f"--image_size={image_size} differs from the input size of --model={path} "
            f"({model_side}x{model_side}); leave --image_size out to use the model's")


def check_classes(num_classes: int, manifest: dict, split: str, path: str) -> None:
    """Refuses records whose ImageNet classes the model has no output for, as the trainer does."""
    if isinstance(manifest, dict) and isinstance(manifest.get("num_classes"), int):
        if manifest["num_classes"] > num_classes:  # labels index the records' labels.txt
            raise ModelCheckError(
                f"--model={path} has {num_classes} classes, but the records' labels.txt lists "
                f"{manifest['num_classes']}: it cannot score them; evaluate it on records of its "
                "own classes")
        return
    entry = (manifest.get("splits") or {}).get(split) if isinstance(manifest, dict) else None
    synsets = (entry or {}).get("classes") or {}
    index_of = imagenet.synset_to_label()
    labels = [index_of[synset] for synset in synsets if synset in index_of]
    if labels and max(labels) >= num_classes:
        raise ModelCheckError(
            f"--model={path} has {num_classes} classes, but the {split} records hold "
            f"{len(labels)} ImageNet classes with labels up to {max(labels)} (0-based): it "
            "cannot score them; evaluate it on records of its own classes")
