"""The serving signatures: what TensorFlow Serving runs on a request, in TensorFlow ops only.

Two signatures share one output head:

    serving_default   image_bytes: string [N], encoded JPEG/PNG/GIF/BMP images
    predict_images    images: float32 [N, S, S, 3], already through `preprocess_for_eval`

    outputs  probabilities float32 [N, C]   softmax of the logits
             classes       int64   [N, K]   top-K class ids, best first (K = min(5, C))
             scores        float32 [N, K]   their probabilities
             synsets       string  [N, K]   their WordNet ids (or class names)

`serving_default` decodes and crops inside the graph with `data.preprocess_for_eval`, the very
function the evaluation pipeline runs, so what the server answers for an image is what
evaluation measured for it (the idea of the TF Model Garden's `image_bytes` export). Every
image is decoded on its own under `tf.map_fn`, so one request may mix sizes and formats; an
undecodable image fails its request with InvalidArgument and leaves the model untouched. So
does an image over the export's pixel limit, read from its header before anything is decoded
(`image_decode`), and a request of more images than the export allows.

On TF Serving's REST API, a JSON `{"b64": "..."}` value is base64-decoded for any string
input (tensorflow_serving/util/json_tensor.cc, `FillTensorProto`); the `_bytes` name suffix
only decides whether a string *output* is written back as b64. The input is still named
`image_bytes`, the name Cloud ML Engine clients expect for encoded images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import tensorflow as tf

from alexnet_tf import imagenet
from alexnet_tf import labels as labels_module
from alexnet_tf.data import image_decode
from alexnet_tf.data import pipeline as data

if TYPE_CHECKING:  # predict.py imports this module and should not pay for importing Keras.
    import keras

DEFAULT_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
IMAGE_BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
TOP_K = 5
DEFAULT_MAX_PIXELS = image_decode.DEFAULT_MAX_PIXELS
# A request is decoded image by image; 64 covers a client's batch of the paper's 128 split in
# two, and TF Serving's batcher joins requests into larger batches anyway.
DEFAULT_MAX_IMAGES_PER_REQUEST = 64
# Images of a request decoded at once: one, so a request's peak memory is one image's.
SERVED_IMAGES_AT_ONCE = 1
# The name of the classes below `label_offset`: TF-slim's 1001-class ImageNet models keep
# class 0 for "background" and the 1000 synsets at 1..1000 (the records' --label_offset=1).
BACKGROUND = "background"


# One parser of class lists for the whole package (labels.py); kept here under the old names.
ClassListError = labels_module.ClassListError
read_class_list = labels_module.read_labels


def class_labels(
    num_classes: int, *, label_offset: int = 0, labels_file: str | None = None,
    synsets_file: str | None = None,
) -> list[str]:
    """The name the server reports for each of the model's classes.

    The model's class i is the class of 0-based label i - label_offset; classes below the
    offset are "background". Our input pipeline already subtracts the records' offset, so a
    model trained here needs label_offset=0 (the default); a 1001-class model trained on the
    raw 1..1000 labels needs label_offset=1. Names come from `synsets_file` when given, from
    ImageNet's synset list when the model has 1000 classes past the offset, and are
    "class_<i>" otherwise. `synsets_file` is the old name of `labels_file`.
    """
    if synsets_file is not None and labels_file is not None and synsets_file != labels_file:
        raise ClassListError(f"two class lists given: {labels_file} and {synsets_file}")
    synsets_file = labels_file if labels_file is not None else synsets_file
    if num_classes < 1:
        raise ClassListError(f"the model has {num_classes} classes")
    if not 0 <= label_offset < num_classes:
        raise ClassListError(
            f"label_offset must be in [0, {num_classes}) for a {num_classes}-class model, "
            f"got {label_offset}"
        )
    named_classes = num_classes - label_offset
    if synsets_file is not None:
        names = read_class_list(synsets_file)
        if len(names) != named_classes:
            raise ClassListError(
                f"{synsets_file}: lists {len(names)} classes, but the model has {num_classes} "
                f"classes and label_offset={label_offset}, so it needs {named_classes}"
            )
    elif named_classes == imagenet.NUM_CLASSES:
        names = list(imagenet.synsets())
    else:
        return [f"class_{index}" for index in range(num_classes)]
    return [BACKGROUND] * label_offset + names


def _classifier_outputs(
    model: keras.Model, images: tf.Tensor, labels: tf.Tensor
) -> dict[str, tf.Tensor]:
    # build_alexnet's fc8 returns float32 under any mixed policy; the cast keeps the softmax
    # and the answers float32 for a model (or .keras file) that returns bfloat16 logits.
    logits = tf.cast(model(images, training=False), tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    top_k = min(TOP_K, int(labels.shape[0]))
    scores, classes = tf.math.top_k(probabilities, k=top_k, sorted=True)
    return {
        "probabilities": probabilities,
        "classes": tf.cast(classes, tf.int64),
        "scores": scores,
        "synsets": tf.gather(labels, classes),
    }


def _refuse_large_requests(image_bytes: tf.Tensor, max_images_per_request: int) -> tf.Operation:
    count = tf.size(image_bytes)
    reason = tf.strings.join(
        [
            "the request holds ",
            tf.strings.as_string(count),
            f" images, over the limit of {max_images_per_request} per request "
            "(set by alexnet_tf.export --max_images_per_request)",
        ]
    )
    return tf.debugging.Assert(count <= max_images_per_request, [reason], name="refuse_request")


def serving_functions(
    model: keras.Model,
    *,
    image_size: int,
    labels: Sequence[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_images_per_request: int = DEFAULT_MAX_IMAGES_PER_REQUEST,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> dict[str, Callable[..., dict[str, tf.Tensor]]]:
    """The two signatures as tf.functions with fixed input signatures, keyed by name.

    `serving_default` refuses, with InvalidArgument and before decoding anything, a request of
    more than `max_images_per_request` images and any image over `max_pixels` pixels.
    `preprocess` (bytes -> [image_size, image_size, 3], refusing images over `max_pixels`)
    defaults to the evaluation pipeline's; `eval_preprocessing.eval_function` picks the one a
    model's weights expect.
    """
    if preprocess is None:
        preprocess = lambda one_image: data.preprocess_for_eval(one_image, image_size, max_pixels)
    num_classes = model.output_shape[-1]
    if len(labels) != num_classes:
        raise ClassListError(f"{len(labels)} class names for a {num_classes}-class model")
    label_tensor = tf.constant(list(labels), dtype=tf.string)
    image_spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def serve_image_bytes(image_bytes):
        with tf.control_dependencies([_refuse_large_requests(image_bytes, max_images_per_request)]):
            # One image at a time: tf.map_fn runs 10 by default, and a request of 50 MP
            # images would hold that many decoded at once (each op still uses every core).
            images = tf.map_fn(
                preprocess, image_bytes, fn_output_signature=image_spec,
                parallel_iterations=SERVED_IMAGES_AT_ONCE,
            )
        return _classifier_outputs(model, images, label_tensor)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=IMAGES_INPUT)
        ]
    )
    def serve_images(images):
        return _classifier_outputs(model, images, label_tensor)

    return {DEFAULT_SIGNATURE: serve_image_bytes, IMAGES_SIGNATURE: serve_images}


def is_saved_model_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def numeric_versions(export_base: str) -> list[int]:
    """The version folders TF Serving sees under `export_base`, ascending.

    TF Serving takes a child folder as a version only if its whole name is a number, which is
    why exports are written under a non-numeric temporary name and renamed when complete.
    """
    if not os.path.isdir(export_base):
        return []
    return sorted(
        int(name)
        for name in os.listdir(export_base)
        if name.isascii() and name.isdigit() and os.path.isdir(os.path.join(export_base, name))
    )


__all__ = [
    "BACKGROUND",
    "DEFAULT_MAX_IMAGES_PER_REQUEST",
    "DEFAULT_MAX_PIXELS",
    "ClassListError",
    "DEFAULT_SIGNATURE",
    "IMAGES_SIGNATURE",
    "IMAGE_BYTES_INPUT",
    "IMAGES_INPUT",
    "TOP_K",
    "class_labels",
    "is_saved_model_dir",
    "numeric_versions",
    "read_class_list",
    "serving_functions",
]
