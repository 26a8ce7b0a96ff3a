"""torchvision's pretrained `alexnet` as an alexnet_tf model: same function, our input.

    python -m alexnet_tf.import_weights --format=torchvision \
        --weights=alexnet-owt-7be5be79.pth --output=/models/alexnet-torchvision/model.keras

writes beside `--output`: model.keras (a `build_alexnet(variant="single")` network),
labels.txt (ImageNet's synsets), model_info.json (torchvision's eval preprocessing, which
the exporter then builds into the SavedModel) and conv1_filters.png.

The network computes exactly torchvision's function: on the same pixels it gives the same
logits, to float round-off. It takes what every alexnet_tf model takes (RGB on 0..255 minus
`imagenet.RGB_MEAN`); a first layer "input_normalization" turns that into torchvision's
normalised pixels ((p / 255 - mean) / std) before conv1's zero padding, so the padded
border is zero in torchvision's pixel space, as it is in torchvision. (Folding the
normalisation into conv1's weights, or padding before it, would leave the border at zero in
our space, which is (RGB_MEAN / 255 - mean) / std in torchvision's: up to 0.009, since the
two means nearly agree, and measurably off: 1e-4 to 3e-4 relative in the logits.)

A .pth file is a pickle, and unpickling runs whatever code it names; it is read only with
`torch.load(weights_only=True)`, which refuses anything but tensors and containers. A
.safetensors file is read with the safetensors package, without torch. Which reader runs is
decided from the file's bytes, not its name.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import zipfile

from alexnet_tf import quiet_output

quiet_output.quiet_tensorflow()  # before TensorFlow loads: its start-up lines once

import numpy as np  # noqa: E402
from absl import app, flags

from alexnet_tf import command_help, imagenet
from alexnet_tf import labels as labels_module
from alexnet_tf.model import model_info

# torchvision/models/alexnet.py: (state_dict prefix, our layer, how the weight is laid out).
# features.{0,3,6,8,10} are the five convolutions (the indices between are ReLU and
# MaxPool2d), classifier.{1,4,6} the three Linear layers (0 and 3 are Dropout).
TORCHVISION_LAYERS = (
    ("features.0", "conv1", "conv"),
    ("features.3", "conv2", "conv"),
    ("features.6", "conv3", "conv"),
    ("features.8", "conv4", "conv"),
    ("features.10", "conv5", "conv"),
    ("classifier.1", "fc6", "dense_after_nchw_flatten"),
    ("classifier.4", "fc7", "dense"),
    ("classifier.6", "fc8", "dense"),
)
# Torch shapes of the 1000-class network; fc8's first dimension is the number of classes.
TORCHVISION_SHAPES = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 256 * 6 * 6), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (None, 4096), "classifier.6.bias": (None,),
}
# torchvision's ImageNet normalisation (transforms.Normalize in its eval transform).
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
# torchvision's eval transform for these weights: Resize(256), CenterCrop(224).
TORCHVISION_CROP = 224
TORCHVISION_RESIZE = 256
_POOL5_SIZE = 6  # AdaptiveAvgPool2d((6, 6)), the map fc6 reads
_POOL5_CHANNELS = 256


class WeightsError(ValueError):
    """Weights that cannot be imported; the message names the file and what is wrong."""


def torchvision_input_normalization() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, offset) taking x = p - RGB_MEAN to torchvision's t = (p / 255 - mean) / std.

    t = x / (255 std) + (RGB_MEAN - 255 mean) / (255 std), per channel, computed in float64.
    """
    std = 255.0 * np.asarray(TORCHVISION_STD, np.float64)
    mean = 255.0 * np.asarray(TORCHVISION_MEAN, np.float64)
    scale = 1.0 / std
    offset = (imagenet.RGB_MEAN.astype(np.float64) - mean) / std
    return tuple(scale.tolist()), tuple(offset.tolist())


def _file_kind(path: str) -> str:
    """"zip" (torch.save), "pickle" (torch's legacy format) or "safetensors", from the bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise WeightsError(f"--weights={path}: cannot read: {error.strerror}") from None
    if zipfile.is_zipfile(path):
        return "zip"
    if head[:1] == b"\x80":  # pickle protocol 2+ opcode
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{":  # 8-byte header length, then JSON
        return "safetensors"
    raise WeightsError(
        f"--weights={path}: neither a torch.save file (.pth) nor a .safetensors file"
    )


def _read_with_torch(path: str) -> dict:
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"--weights={path}: a .pth file needs torch (pip install 'alexnet_tf[torch]'), "
            "or convert it to .safetensors"
        ) from None
    try:
        # weights_only=True: tensors, dicts, lists and numbers only; a pickle that names any
        # other callable (os.system, a class of yours) is refused before it is called.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()
        detail = next((line for line in reason if "Unsupported" in line or "global" in line),
                      reason[0] if reason else "")
        raise WeightsError(
            f"--weights={path}: refused: the file holds Python objects, not only tensors, and "
            f"unpickling it would run code ({detail.strip()[:200]}). Save the model's "
            "state_dict() instead."
        ) from None
    except Exception as error:  # torch raises RuntimeError and others for damaged files
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(
            f"--weights={path}: torch cannot read it ({type(error).__name__}: {first[:200]})"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"--weights={path}: holds a {type(state).__name__}, not a state_dict")

    def as_numpy(value):
        if isinstance(value, dict):  # {"state_dict": {...}}: unwrapped by _unwrap
            return {key: as_numpy(inner) for key, inner in value.items()}
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.detach().to(torch.float32).numpy()
        if isinstance(value, torch.Tensor):
            return value.detach().numpy()
        return value

    return {key: as_numpy(value) for key, value in state.items()}


def _read_safetensors(path: str) -> dict:
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
    except ImportError:
        raise WeightsError(
            f"--weights={path}: a .safetensors file needs safetensors "
            "(pip install 'alexnet_tf[safetensors]')"
        ) from None
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise WeightsError(f"--weights={path}: not a readable .safetensors file ({error})") from None


def _unwrap(state: dict) -> dict:
    """The tensors of a state_dict saved as is, inside {"state_dict": ...}, or by DataParallel."""
    if "features.0.weight" not in state:
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if not isinstance(value, dict)}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """The float32 arrays of a torchvision alexnet state_dict, checked against its layout."""
    kind = _file_kind(path)
    state = _read_safetensors(path) if kind == "safetensors" else _read_with_torch(path)
    state = _unwrap(state)
    problems = []
    missing = [key for key in TORCHVISION_SHAPES if key not in state]
    unexpected = sorted(key for key in state if key not in TORCHVISION_SHAPES)
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    num_classes = None
    for key, expected in TORCHVISION_SHAPES.items():
        if key not in state:
            continue
        shape = tuple(np.shape(state[key]))
        if expected[0] is None and len(shape) == len(expected) and shape[0] >= 1:
            num_classes = shape[0] if num_classes is None else num_classes
            expected = (num_classes,) + expected[1:]
        if shape != expected:
            problems.append(f"{key} has shape {list(shape)}, torchvision's alexnet has "
                            f"{[d if d is not None else 'classes' for d in expected]}")
    if problems:
        raise WeightsError(
            f"--weights={path}: not torchvision's alexnet state_dict: " + "; ".join(problems)
        )
    arrays = {}
    for key in TORCHVISION_SHAPES:
        array = np.asarray(state[key])
        if not np.issubdtype(array.dtype, np.floating):
            raise WeightsError(f"--weights={path}: {key} holds {array.dtype}, not floats")
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise WeightsError(f"--weights={path}: {key} holds NaN or infinite values")
        arrays[key] = array
    return arrays


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Our layers' [kernel, bias] from torch's tensors, one rule per layout.

    conv: torch (out, in, h, w) -> Keras (h, w, in, out).
    dense: torch (out, in) -> Keras (in, out).
    dense_after_nchw_flatten: torch flattens pool5 as (channel, row, column), Keras as
      (row, column, channel), so fc6's input axis is regrouped before the transpose.
    """
    weights = {}
    for prefix, layer, layout in TORCHVISION_LAYERS:
        kernel, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        if layout == "conv":
            kernel = kernel.transpose(2, 3, 1, 0)
        elif layout == "dense":
            kernel = kernel.T
        else:
            outputs = kernel.shape[0]
            kernel = kernel.reshape(outputs, _POOL5_CHANNELS, _POOL5_SIZE, _POOL5_SIZE)
            kernel = kernel.transpose(2, 3, 1, 0).reshape(-1, outputs)
        weights[layer] = [np.ascontiguousarray(kernel), np.ascontiguousarray(bias)]
    return weights


def load_torchvision(path: str, image_size: int = TORCHVISION_CROP):
    """A keras.Model computing torchvision's alexnet with the weights in `path`.

    Input: float32 [N, image_size, image_size, 3], RGB 0..255 minus `imagenet.RGB_MEAN`.
    Output: the logits torchvision computes for the same pixels.
    """
    weights = keras_weights(read_state_dict(path))
    from alexnet_tf.model import (alexnet as model)  # TensorFlow only once the file has passed its checks

    network = model.build_alexnet(
        num_classes=int(weights["fc8"][1].shape[0]), variant="single", image_size=image_size,
        initialization="paper", input_normalization=torchvision_input_normalization(),
    )
    for layer, values in weights.items():
        network.get_layer(layer).set_weights(values)
    return network


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_torchvision(weights_path: str, output: str, labels_file: str | None = None) -> dict:
    """Writes model.keras, labels.txt, model_info.json and conv1_filters.png; returns the paths."""
    from alexnet_tf.model import alexnet as model
    from alexnet_tf.train import plotting

    if not output.endswith(".keras"):
        raise WeightsError(f"--output={output}: must end in .keras (e.g. DIR/model.keras)")
    network = load_torchvision(weights_path)
    num_classes = network.output_shape[-1]
    if labels_file:
        class_names = labels_module.read_labels(labels_file)
    elif num_classes == imagenet.NUM_CLASSES:
        # torchvision's class i is the i-th ImageNet synset in sorted order (its ImageFolder
        # sorted the training folders), the order of tensorflow-datasets' labels.txt.
        class_names = labels_module.imagenet_labels()
    else:
        raise WeightsError(f"--weights={weights_path}: {num_classes} classes, not ImageNet's "
                           "1000; pass --labels_file with their names")
    if len(class_names) != num_classes:
        raise WeightsError(f"--labels_file={labels_file}: {len(class_names)} names for "
                           f"{num_classes} classes")
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    # Saved under a temporary name and renamed, so a crash never leaves half a model.keras.
    descriptor, temporary = tempfile.mkstemp(prefix=".import-", suffix=".keras", dir=folder)
    os.close(descriptor)
    try:
        network.save(temporary)
        os.chmod(temporary, model_info._READABLE)
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    labels_path = labels_module.write_labels(
        os.path.join(folder, labels_module.LABELS_FILENAME), class_names)
    info = model_info.make_info(
        variant="single", image_size=TORCHVISION_CROP,
        minimum_image_size=model.MINIMUM_IMAGE_SIZE["single"], num_classes=num_classes,
        parameters=network.count_params(), labels_file=labels_module.LABELS_FILENAME,
        preprocessing=model_info.torchvision_preprocessing(TORCHVISION_CROP, TORCHVISION_RESIZE),
        source={"format": "torchvision", "file": os.path.basename(weights_path),
                "sha256": _sha256(weights_path)},
    )
    info_path = model_info.write_info(output, info)
    filters_path = os.path.join(folder, plotting.CONV1_FILTERS_FILENAME)
    plotting.plot_conv1_filters(network, filters_path)
    return {"model": output, "labels": labels_path, "model_info": info_path,
            "conv1_filters": filters_path}


# --- command line -------------------------------------------------------------------------

# What a user runs next (README, "Start from pretrained weights"): 0.001 because the trainer's
# default 0.01 diverges on a new fc8 (README's table); a batch of 32, not 128, because sets
# worth fine-tuning on are small. README's line is this one and tests run it.
FINE_TUNE_COMMAND = ("python -m alexnet_tf.train --init_from={model} --variant=single "
                     "--train_layers=fc8 --learning_rate=0.001 --batch_size=32 "
                     "--data_dir=RECORDS --model_dir=RUN")

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("format", "torchvision", ["torchvision"], "Where the weights come "
                      "from: torchvision's models.alexnet state_dict.")
    flags.DEFINE_string("weights", None, "The weights: a torch.save'd state_dict (.pth, read "
                        "with weights_only=True) or a .safetensors file.")
    flags.DEFINE_string("output", None, "The model to write, DIR/model.keras; labels.txt, "
                        "model_info.json and conv1_filters.png go beside it.")
    flags.DEFINE_string("labels_file", None, "Class names in label order, one a line, for "
                        "weights not of ImageNet's 1000 classes. Default: ImageNet's synsets.")
    flags.mark_flags_as_required(["weights", "output"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}", exitcode=2)
    try:
        paths = import_torchvision(FLAGS.weights, FLAGS.output, FLAGS.labels_file)
    except (WeightsError, labels_module.ClassListError, model_info.ModelInfoError) as error:
        print(f"import_weights: {error}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name:14s}{path}")
    print(f"export:       python -m alexnet_tf.export --model={paths['model']} "
          "--export_base=SERVING")
    print(f"fine-tune:    {FINE_TUNE_COMMAND.format(model=paths['model'])}")
    print("              (RECORDS: your images converted by tools/build_tfrecords.py; the "
          "classes come from RECORDS/labels.txt; --batch_size at most its training images)")
    return 0


def run() -> None:
    """The console script's entry point (setup.py)."""
    define_flags()
    command_help.show_in_help(sys.modules[__name__])
    app.run(main)


if __name__ == "__main__":
    run()
