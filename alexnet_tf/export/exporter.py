"""Exports a trained model.keras as a SavedModel that TensorFlow Serving loads as is.

    python -m alexnet_tf.export --model=RUN_DIR/model.keras --export_base=/srv/models/alexnet

writes

    EXPORT_BASE/<version>/saved_model.pb, variables/   the signatures of `signatures.py`
    EXPORT_BASE/<version>/assets.extra/tf_serving_warmup_requests
    EXPORT_BASE/models.config      for tensorflow_model_server --model_config_file
    EXPORT_BASE/request.json       a REST request to try with curl
    EXPORT_BASE/<version>/assets.extra/serving_limits.json, EXPORT_BASE/batching_parameters.txt
                                   the request limits, and TF Serving's batcher settings

TF Serving polls EXPORT_BASE and loads the highest numeric version folder as soon as it
appears, so a version is written under a non-numeric temporary name (which the server
ignores) and renamed into place only when complete; a failed export removes it. The warmup
file holds a few real requests (TF Serving replays them, at most 1000, before it serves the
version), so the first client does not pay for graph optimisation and memory allocation.

The SavedModel holds only TensorFlow ops: the custom LRN layer is traced into its graph, so
the server and any Python without alexnet_tf load it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import sys
import uuid
import zipfile
from collections.abc import Iterator

from alexnet_tf import quiet_output

quiet_output.quiet_tensorflow()  # before TensorFlow loads: its start-up lines once

import keras  # noqa: E402
import numpy as np
import tensorflow as tf
from absl import app, flags
from google.protobuf import text_format
from PIL import Image

from alexnet_tf import command_help
from alexnet_tf import labels as class_list
from alexnet_tf.data import eval_preprocessing
from alexnet_tf.data import pipeline as data
from alexnet_tf.export import signatures as serving
from alexnet_tf.export import limits as serving_limits
from alexnet_tf.export import precision as precision_module
from alexnet_tf.model import layers, model_info
from alexnet_tf.train import stops

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODELS_CONFIG = "models.config"
REST_REQUEST = "request.json"
KERAS_FILE = "model.keras"
# TF Serving names models in URLs (/v1/models/<name>:predict).
_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExportError(Exception):
    """An export that cannot go ahead; the message names the file or flag at fault."""


def load_keras_model(path: str) -> keras.Model:
    """The model saved by training: a .keras file, or a folder holding model.keras.

    `alexnet_tf.model.layers`, imported above, registers the custom layers the file names.
    """
    if os.path.isdir(path):
        path = os.path.join(path, KERAS_FILE)
    if not os.path.isfile(path):
        raise ExportError(f"--model={path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"--model={path}: not a .keras file (those are zip archives)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a damaged or foreign file.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(
            f"--model={path}: not a loadable Keras model ({type(error).__name__}: {first_line})"
        ) from None


def model_image_size(model: keras.Model, image_size: int | None = None) -> int:
    """The square input size the model takes, checked against `image_size` if given."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
        raise ExportError(f"the model takes inputs of shape {shape}, not [N, S, S, 3] images")
    if shape[1] is None:
        if image_size is None:
            raise ExportError("the model accepts any image size; pass --image_size")
        return image_size
    if image_size is not None and image_size != shape[1]:
        raise ExportError(f"--image_size={image_size}, but the model takes {shape[1]}x{shape[1]}")
    return shape[1]


def sample_images() -> list[tuple[str, bytes]]:
    """A few small generated images as (format, encoded bytes): two JPEGs and an RGBA PNG.

    Different sizes and formats exercise what real traffic does (resizing, PNG decoding,
    dropping an alpha channel) during warmup.
    """
    rng = np.random.default_rng(2012)
    images = []
    for height, width, image_format in ((120, 160, "JPEG"), (200, 96, "JPEG"), (128, 128, "PNG")):
        rows, columns = np.mgrid[0:height, 0:width]
        red = 255 * columns / max(width - 1, 1)
        green = 255 * rows / max(height - 1, 1)
        disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 3) ** 2
        blue = np.where(disc, 220.0, 40.0)
        pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 8, (height, width, 3))
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if image_format == "PNG":
            image.putalpha(Image.fromarray(np.full((height, width), 200, np.uint8)))
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        images.append((image_format.lower(), buffer.getvalue()))
    return images


def _serving_apis():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        raise ExportError(
            "writing warmup requests and models.config needs tensorflow-serving-api "
            "(pip install tensorflow-serving-api)"
        ) from None
    return predict_pb2, prediction_log_pb2, model_server_config_pb2


def write_warmup_requests(path: str, *, model_name: str, image_size: int) -> int:
    """Writes TF Serving's warmup file and returns how many requests it holds.

    One request per encoded sample image, one batching them all, and one `predict_images`
    request with a preprocessed image, so both signatures and two batch sizes are warm.
    """
    predict_pb2, prediction_log_pb2, _ = _serving_apis()
    encoded = [image_bytes for _, image_bytes in sample_images()]
    batches = [[image_bytes] for image_bytes in encoded] + [encoded]
    requests = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = serving.DEFAULT_SIGNATURE
        request.inputs[serving.IMAGE_BYTES_INPUT].CopyFrom(
            tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)])
        )
        requests.append(request)
    preprocessed = data.preprocess_for_eval(tf.constant(encoded[0]), image_size)[tf.newaxis]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = serving.IMAGES_SIGNATURE
    request.inputs[serving.IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(preprocessed.numpy()))
    requests.append(request)

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return len(requests)


def _write_text_atomically(path: str, text: str) -> None:
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_models_config(export_base: str, model_name: str) -> str:
    """EXPORT_BASE/models.config: a ModelServerConfig serving this folder's latest version."""
    _, _, model_server_config_pb2 = _serving_apis()
    config = model_server_config_pb2.ModelServerConfig()
    model_config = config.model_config_list.config.add()
    model_config.name = model_name
    model_config.base_path = os.path.abspath(export_base)
    model_config.model_platform = "tensorflow"
    path = os.path.join(export_base, MODELS_CONFIG)
    _write_text_atomically(path, text_format.MessageToString(config))
    return path


def write_rest_request(export_base: str) -> str:
    """EXPORT_BASE/request.json: `curl -d @request.json .../v1/models/NAME:predict`."""
    _, jpeg_bytes = sample_images()[0]
    request = {
        "signature_name": serving.DEFAULT_SIGNATURE,
        "instances": [{"b64": base64.b64encode(jpeg_bytes).decode("ascii")}],
    }
    path = os.path.join(export_base, REST_REQUEST)
    _write_text_atomically(path, json.dumps(request) + "\n")
    return path


@contextlib.contextmanager
def _grouped_convolutions_as_towers(model: keras.Model) -> Iterator[None]:
    """Traces grouped convolutions as two towers, whatever the model was trained with.

    Keras's native grouped convolution becomes an XLA cluster (`_XlaMustCompile`) in the
    graph, which not every TF Serving build runs (see `layers._AUTO_IMPLEMENTATION`); the
    towers hold the same weights and give the same outputs with plain Conv2D ops.
    """
    switched = [
        layer
        for layer in model.layers
        if isinstance(layer, layers.GroupedConv2D) and layer.resolved_implementation != "towers"
    ]
    previous = [layer.resolved_implementation for layer in switched]
    for layer in switched:
        layer.resolved_implementation = "towers"
    try:
        yield
    finally:
        for layer, implementation in zip(switched, previous):
            layer.resolved_implementation = implementation


def _write_saved_model(
    model: keras.Model,
    directory: str,
    *,
    image_size: int,
    labels: list[str],
    limits: serving_limits.ServingLimits,
    preprocess=None,
) -> None:
    # Saving traces the functions again, so the towers stay in place until it is done.
    # The archive saves the variables its endpoints use (`_all_variables`). `archive.track`
    # would add the model's Keras variables as a second checkpoint object per weight (its
    # `variables` list), so every weight was stored twice: 2x the disk and the load time.
    with _grouped_convolutions_as_towers(model):
        archive = keras.export.ExportArchive()
        functions = serving.serving_functions(
            model,
            image_size=image_size,
            labels=labels,
            max_pixels=limits.max_pixels,
            max_images_per_request=limits.max_images_per_request,
            preprocess=preprocess,
        )
        for name, function in functions.items():
            archive.add_endpoint(name, function)
        archive.write_out(directory, verbose=False)


def export_model(
    model: keras.Model,
    export_base: str,
    *,
    version: int | None = None,
    model_name: str = "alexnet",
    image_size: int | None = None,
    label_offset: int = 0,
    synsets_file: str | None = None,
    limits: serving_limits.ServingLimits | None = None,
    labels_file: str | None = None,
    info: dict | None = None,
    precision: str = "float32",
) -> str:
    """Writes EXPORT_BASE/<version>/ (and models.config, request.json and
    batching_parameters.txt); returns its path.

    `version` defaults to one above the highest numeric folder (1 if none); an existing
    version is never overwritten. See `serving.class_labels` for `label_offset` and
    `labels_file` (`synsets_file` is its old name), and `serving_limits` for `limits`
    (default: serving's defaults). The version folder gets a labels.txt of the names its
    `synsets` output gives, line i for class i.
    `info` is the model's model_info.json record: the served graph preprocesses images as
    it says (None: as training here evaluates).
    The SavedModel computes in `precision` whatever dtype policy the model was
    trained under (see `alexnet_tf.export.precision`).
    """
    if limits is None:
        limits = serving_limits.ServingLimits(
            serving.DEFAULT_MAX_PIXELS, serving.DEFAULT_MAX_IMAGES_PER_REQUEST
        )
    if not _MODEL_NAME_PATTERN.match(model_name):
        raise ExportError(
            f"--model_name={model_name!r}: use letters, digits, '_', '.' and '-' "
            "(it becomes part of the serving URL)"
        )
    if version is not None and version < 1:
        raise ExportError(f"--version={version}: versions start at 1")
    if precision not in precision_module.PRECISIONS:
        raise ExportError(f"--precision={precision}: use one of {', '.join(precision_module.PRECISIONS)}")
    _serving_apis()  # fail before the slow part if tensorflow-serving-api is missing
    not_finite = stops.non_finite_variables(model.weights)
    if not_finite:  # a diverged run's weights: every answer would be NaN
        raise ExportError(f"the model's weights hold NaN or infinite values ({len(not_finite)} "
                          f"of {len(model.weights)}, e.g. {not_finite[0]}); not exported")
    image_size = model_image_size(model, image_size)
    try:
        preprocess = eval_preprocessing.eval_function(info, image_size, limits.max_pixels)
    except model_info.ModelInfoError as error:
        raise ExportError(str(error)) from None
    try:
        labels = serving.class_labels(
            model.output_shape[-1], label_offset=label_offset, labels_file=labels_file,
            synsets_file=synsets_file,
        )
    except serving.ClassListError as error:
        raise ExportError(str(error)) from None
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise ExportError(f"--export_base={export_base}: exists and is not a folder")
    os.makedirs(export_base, exist_ok=True)
    if version is None:
        version = max(serving.numeric_versions(export_base), default=0) + 1
    target = os.path.join(export_base, str(version))
    if os.path.lexists(target):
        raise ExportError(f"{target} already exists; pass another --version or remove it")

    model = precision_module.with_precision(model, precision)
    # Not a number, so a polling server ignores it; hidden, so `ls` does too.
    temporary = os.path.join(export_base, f".tmp-export-{model_name}-{uuid.uuid4().hex}")
    os.mkdir(temporary)
    try:
        _write_saved_model(model, temporary, image_size=image_size, labels=labels, limits=limits,
                           preprocess=preprocess)
        serving_limits.write_limits_file(temporary, limits)
        class_list.write_labels(os.path.join(temporary, class_list.LABELS_FILENAME), labels)
        write_warmup_requests(
            os.path.join(temporary, WARMUP_FILE), model_name=model_name, image_size=image_size
        )
        # os.rename would silently replace an empty folder made since the check above.
        if os.path.lexists(target):
            raise ExportError(f"{target} appeared during the export; it is left as it was")
        try:
            os.rename(temporary, target)
        except OSError as error:
            raise ExportError(f"cannot move the export into {target}: {error.strerror}") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    write_models_config(export_base, model_name)
    write_rest_request(export_base)
    _write_text_atomically(
        os.path.join(export_base, serving_limits.BATCHING_PARAMETERS_FILE),
        serving_limits.batching_parameters_text(limits),
    )
    return target


# --- command line -------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags are defined here rather than at import, so tests and tools that import this
    module next to other CLIs (which also have a --model) do not collide."""
    flags.DEFINE_string(
        "model", None, "The trained model: a .keras file, or the training run's folder "
        "holding model.keras."
    )
    flags.DEFINE_string(
        "export_base", None, "The folder TF Serving watches (its --model_base_path); the "
        "export goes to EXPORT_BASE/<version>/."
    )
    flags.DEFINE_integer(
        "version", None, "The version folder's number. Default: one above the highest "
        "existing version, 1 if none. An existing version is never overwritten.", lower_bound=1
    )
    flags.DEFINE_string(
        "model_name", "alexnet", "The name clients use (/v1/models/<name>:predict), written "
        "to models.config."
    )
    flags.DEFINE_integer(
        "image_size", None, "Side of the square crop the model takes. Default: read from "
        "the model's input.", lower_bound=1
    )
    flags.DEFINE_integer(
        "label_offset", 0, "The model's class i is 0-based label i - label_offset; classes "
        "below it are 'background'. Models trained here need 0: the input pipeline already "
        "removes the records' offset.", lower_bound=0
    )
    flags.DEFINE_string(
        "labels_file", None, "Class names in label order: a text file with one a line, or a "
        ".json list. Default: labels.txt beside --model (the trainer writes it), else "
        "ImageNet's synsets for 1000 classes (past --label_offset), else class_<i>."
    )
    flags.DEFINE_string("synsets_file", None, "Deprecated: the old name of --labels_file.")
    flags.DEFINE_integer(
        "max_pixels", serving.DEFAULT_MAX_PIXELS, "The server refuses, from its header and "
        "before decoding it, any image with more pixels than this (decompression bombs). The "
        "default passes every camera and phone photograph up to 50 MP.", lower_bound=1
    )
    flags.DEFINE_integer(
        "max_images_per_request", serving.DEFAULT_MAX_IMAGES_PER_REQUEST, "The server refuses "
        "a request with more images; also TF Serving's max_batch_size in "
        "batching_parameters.txt.", lower_bound=1
    )
    flags.DEFINE_integer(
        "batch_timeout_micros", 5_000, "batching_parameters.txt: how long TF Serving waits to "
        "fill a batch.", lower_bound=0
    )
    flags.DEFINE_integer(
        "max_enqueued_batches", 16, "batching_parameters.txt: batches that may wait; beyond "
        "them a request fails at once (UNAVAILABLE) rather than queueing.", lower_bound=1
    )
    flags.DEFINE_integer(
        "num_batch_threads", 4, "batching_parameters.txt: batches run at once; about the "
        "serving machine's core count.", lower_bound=1
    )
    flags.DEFINE_enum(
        "precision", "float32", list(precision_module.PRECISIONS), "What the served model "
        "computes in, whatever policy it was trained under. bfloat16 halves the weights read "
        "per request; use it on CPUs with AMX or GPUs with bfloat16 tensor cores (see "
        "README, Serving)."
    )
    flags.mark_flags_as_required(["model", "export_base"])
    flags.register_validator(
        "model_name",
        lambda name: bool(_MODEL_NAME_PATTERN.match(name or "")),
        message="--model_name: use letters, digits, '_', '.' and '-'",
    )


def _labels_file_for(model_path: str) -> str | None:
    """--labels_file, else its deprecated alias --synsets_file, else labels.txt beside the model."""
    if FLAGS.labels_file and FLAGS.synsets_file and FLAGS.labels_file != FLAGS.synsets_file:
        raise ExportError("--labels_file and --synsets_file (its deprecated alias) name "
                          "different files; give --labels_file only")
    if FLAGS.synsets_file and not FLAGS.labels_file:
        print("export: --synsets_file is deprecated; use --labels_file", file=sys.stderr)
    return FLAGS.labels_file or FLAGS.synsets_file or class_list.labels_beside(model_path)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}", exitcode=2)
    try:
        model = load_keras_model(FLAGS.model)
        try:
            info = model_info.read_info(FLAGS.model)
        except model_info.ModelInfoError as error:
            raise ExportError(str(error)) from None
        path = export_model(
            model,
            FLAGS.export_base,
            version=FLAGS.version,
            model_name=FLAGS.model_name,
            image_size=FLAGS.image_size,
            label_offset=FLAGS.label_offset,
            labels_file=_labels_file_for(FLAGS.model),
            limits=serving_limits.ServingLimits(
                max_pixels=FLAGS.max_pixels,
                max_images_per_request=FLAGS.max_images_per_request,
                batch_timeout_micros=FLAGS.batch_timeout_micros,
                max_enqueued_batches=FLAGS.max_enqueued_batches,
                num_batch_threads=FLAGS.num_batch_threads,
            ),
            info=info,
            precision=FLAGS.precision,
        )
    except ExportError as error:
        print(f"export: {error}", file=sys.stderr)
        return 1
    base = os.path.abspath(FLAGS.export_base)
    print(f"exported {path}")
    print(
        f"serve:  tensorflow_model_server --rest_api_port=8501 "
        f"--model_config_file={os.path.join(base, MODELS_CONFIG)}"
    )
    print(
        f"        (under load add --enable_batching --batching_parameters_file="
        f"{os.path.join(base, serving_limits.BATCHING_PARAMETERS_FILE)})"
    )
    print(
        f"try:    curl -d @{os.path.join(base, REST_REQUEST)} "
        f"http://localhost:8501/v1/models/{FLAGS.model_name}:predict"
    )
    return 0


def run() -> None:
    """The console script's entry point (setup.py)."""
    define_flags()
    command_help.show_in_help(sys.modules[__name__])
    app.run(main)


if __name__ == "__main__":
    run()
