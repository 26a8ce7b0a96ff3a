"""Starting a training run from a saved model: `train --init_from=MODEL.keras --train_layers=...`.

The network is built from the flags as for any run (so --image_size, --dropout,
--weight_decay, mixed precision and the strategy apply), with the architecture of the saved
model (its variant and its input scaling layer), and then takes the saved model's weights
layer by layer. fc8 is newly initialised when --num_classes differs from the saved model's;
any other mismatch is an error naming the layer. --train_layers freezes the rest: frozen
layers are left out of the trainable variables, so neither the gradient, the momentum nor
the weight decay (an L2 loss term, whose gradient only reaches trainable variables) moves
them. A resumed run builds the same network again and then restores its checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np
from absl import logging

TRAIN_LAYERS = ("all", "fc6-fc8", "fc8")
_TRAINED = {"all": None, "fc6-fc8": ("fc6", "fc7", "fc8"), "fc8": ("fc8",)}
_VARIANT_OF_MODEL_NAME = {"alexnet": "paper", "alexnet_single": "single"}


class InitFromError(ValueError):
    """A saved model that cannot start this run; the message names --init_from or the flag."""


@dataclasses.dataclass
class Source:
    """What a run takes from the saved model: its architecture and its weights."""

    path: str
    variant: str
    initialization: str  # "he" when the model divides its input by PIXEL_STDDEV
    input_normalization: tuple | None
    lrn: str  # which LRN_SETTINGS its lrn1/lrn2 compute ("paper" for "single", which has none)
    num_classes: int
    weights: dict[str, list[np.ndarray]]


def _model_file(path: str) -> str:
    """The .keras file --init_from names: the path itself, or the model.keras in a folder."""
    return os.path.join(path, "model.keras") if os.path.isdir(path) else path


def read_source(path: str) -> Source:
    """The model in `path` (a .keras file or a folder holding model.keras), as numpy weights.

    Read before the strategy's scope is entered, so that loading it creates no mirrored
    variables.
    """
    import keras

    from alexnet_tf.model import alexnet as model_module

    path = _model_file(path)
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        raise InitFromError(f"--init_from={path}: not a .keras model file")
    try:
        saved = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged or foreign file.
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InitFromError(f"--init_from={path}: not a loadable Keras model "
                            f"({type(error).__name__}: {first[:200]})") from None
    variant = _VARIANT_OF_MODEL_NAME.get(saved.name)
    if variant is None:
        raise InitFromError(f"--init_from={path}: model {saved.name!r} is not one that "
                            "alexnet_tf.model.build_alexnet builds")
    names = {layer.name for layer in saved.layers}
    normalization = None
    if model_module.INPUT_NORMALIZATION_LAYER in names:
        config = saved.get_layer(model_module.INPUT_NORMALIZATION_LAYER).get_config()
        normalization = (tuple(np.ravel(config["scale"]).tolist()),
                         tuple(np.ravel(config["offset"]).tolist()))
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()]
               for layer in saved.layers if layer.get_weights()}
    return Source(path=path, variant=variant,
                  initialization="he" if "pixel_scale" in names else "paper",
                  input_normalization=normalization, lrn=_lrn_of(saved, names, path),
                  num_classes=int(saved.output_shape[-1]), weights=weights)


def _lrn_of(saved, names: set[str], path: str) -> str:
    """The LRN_SETTINGS name whose bias and alpha the saved model's lrn1 has."""
    from alexnet_tf.model.layers import LRN_SETTINGS

    if "lrn1" not in names:
        return "paper"
    config = saved.get_layer("lrn1").get_config()
    for name, settings in LRN_SETTINGS.items():
        if all(np.isclose(config[key], value, rtol=1e-6) for key, value in settings.items()):
            return name
    raise InitFromError(f"--init_from={path}: its LRN (bias {config['bias']}, alpha "
                        f"{config['alpha']}) is neither of {sorted(LRN_SETTINGS)}")


def architecture(source: Source | None, *, variant: str, variant_given: bool,
                 initialization: str, lrn: str = "paper", lrn_given: bool = False) -> dict:
    """build_alexnet's variant, initialization, input_normalization and LRN for this run."""
    if source is None:
        return dict(variant=variant, initialization=initialization, lrn=lrn)
    if lrn_given and lrn != source.lrn:
        raise InitFromError(f"--lrn={lrn}, but --init_from={source.path} was trained with "
                            f"--lrn={source.lrn}")
    if variant_given and variant != source.variant:
        raise InitFromError(f"--variant={variant}, but --init_from={source.path} is a "
                            f"{source.variant!r} model")
    if initialization != source.initialization:
        logging.info("--init_from: the input scaling and a new fc8 follow the saved model's "
                     "initialization=%s, not --initialization=%s", source.initialization,
                     initialization)
    return dict(variant=source.variant, initialization=source.initialization,
                input_normalization=source.input_normalization, lrn=source.lrn)


def resize_side_of(path: str) -> int | None:
    """The --resize_side the model in `path` was trained with, from its model_info.json; None
    for a model without one or prepared otherwise (torchvision's weights).

    A fine-tuned model should see photos at the scale its features learned, so the trainer
    takes this when --resize_side is not given, as it takes the source's variant and LRN.
    """
    from alexnet_tf.model import model_info

    path = _model_file(path)
    try:
        info = model_info.read_info(path)
    except model_info.ModelInfoError as error:
        raise InitFromError(f"--init_from={path}: {error}") from None
    if info is None or info["preprocessing"]["name"] != "paper":
        return None
    return int(info["preprocessing"]["resize_shorter_side"])


def start_from(network, source: Source, train_layers: str) -> list[str]:
    """Copies `source`'s weights into `network` and freezes what --train_layers leaves out.

    Returns the names of the frozen layers.
    """
    for layer in network.layers:
        current = layer.get_weights()
        if not current:
            continue
        saved = source.weights.get(layer.name)
        shapes = [w.shape for w in current]
        if saved is not None and [w.shape for w in saved] == shapes:
            layer.set_weights(saved)
        elif layer.name == "fc8" and saved is not None:
            logging.info("--init_from: fc8 newly initialised: %s has %d classes, "
                         "--num_classes=%d", source.path, source.num_classes, shapes[-1][0])
        elif saved is None:
            raise InitFromError(f"--init_from={source.path}: has no layer {layer.name!r}")
        else:
            hint = " (the paper network's fc6 depends on --image_size)" \
                if layer.name == "fc6" else ""
            raise InitFromError(
                f"--init_from={source.path}: layer {layer.name} has weights of shapes "
                f"{[list(w.shape) for w in saved]}, this run's needs "
                f"{[list(s) for s in shapes]}{hint}")
    return freeze(network, train_layers)


def freeze(network, train_layers: str) -> list[str]:
    """Marks every layer with weights but those --train_layers names as not trainable."""
    if train_layers not in TRAIN_LAYERS:
        raise InitFromError(f"--train_layers must be one of {TRAIN_LAYERS}, got {train_layers!r}")
    trained = _TRAINED[train_layers]
    frozen = []
    for layer in network.layers:
        if trained is not None and layer.weights and layer.name not in trained:
            layer.trainable = False
            frozen.append(layer.name)
    if frozen:
        logging.info("--train_layers=%s: frozen %s", train_layers, ", ".join(frozen))
    return frozen
