"""Top-5 classes (ImageNet's or your own) for image files, from an exported SavedModel.

    python -m alexnet_tf.predict --model=/srv/models/alexnet photo.jpg other.png
    python -m alexnet_tf.predict --model=/srv/models/alexnet/3 --json photo.jpg

It runs the SavedModel's `serving_default` signature on the files' bytes, the same graph and
preprocessing TensorFlow Serving runs, rather than the Keras code: what it prints is what the
server would answer, with the limits the export set (`--max_pixels`: an image over it is
refused from its header, and named). Each image is a request of its own, so an unreadable,
corrupt or refused file is reported (and makes the exit status 1) without hiding the other
images' answers. `--true_class` prints each image's known class beside the answer (from its
folder or ImageNet's validation ground truth) and how often the model got it right.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Sequence

from alexnet_tf import quiet_output

quiet_output.quiet_tensorflow()  # before TensorFlow loads: its start-up lines once

import tensorflow as tf  # noqa: E402
from absl import app, flags

from alexnet_tf import command_help, imagenet, labels
from alexnet_tf.export import signatures as serving


class PredictError(Exception):
    """A model or image that cannot be used; the message names the file."""


def resolve_saved_model_dir(path: str) -> str:
    """`path` itself if it is a SavedModel, else its highest numeric version folder."""
    if serving.is_saved_model_dir(path):
        return path
    if os.path.isfile(path):
        raise PredictError(
            f"--model={path} is a file; predict takes an exported SavedModel folder. Make one "
            f"with: python -m alexnet_tf.export --model={path} --export_base=EXPORT_BASE, "
            "then pass --model=EXPORT_BASE")
    if not os.path.isdir(path):
        raise PredictError(f"--model={path}: no such folder")
    for version in reversed(serving.numeric_versions(path)):
        candidate = os.path.join(path, str(version))
        if serving.is_saved_model_dir(candidate):
            return candidate
    raise PredictError(
        f"--model={path}: neither a SavedModel nor a folder of numeric SavedModel versions"
    )


def load_classifier(path: str) -> Callable[..., dict[str, tf.Tensor]]:
    """The `serving_default` signature of the SavedModel at `path` (or its latest version)."""
    saved_model_dir = resolve_saved_model_dir(path)
    try:
        loaded = tf.saved_model.load(saved_model_dir)
    except Exception as error:  # TF raises several types for a damaged SavedModel.
        raise PredictError(f"{saved_model_dir}: cannot load the SavedModel ({error})") from None
    if serving.DEFAULT_SIGNATURE not in loaded.signatures:
        raise PredictError(
            f"{saved_model_dir}: has no '{serving.DEFAULT_SIGNATURE}' signature; "
            "export it with python -m alexnet_tf.export"
        )
    return loaded.signatures[serving.DEFAULT_SIGNATURE]


# How tf.debugging.Assert words the serving graph's refusals (image_decode, serving).
_REFUSAL = re.compile(r"assertion failed: \[(.+?)\]\s*(?:\n|$)")


def _tensorflow_reason(error: tf.errors.OpError) -> str:
    """The op's own message ("Unknown image file format...") without TF's node dump."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    for line in error.message.splitlines():
        line = line.strip()
        if line and not line.startswith(noise):
            return line.split("\t [[")[0].strip()
    return error.message.strip()


def class_names_for(
    classifier: Callable[..., dict[str, tf.Tensor]], saved_model_dir: str,
    labels_file: str | None = None,
) -> list[str] | None:
    """The names to print: `labels_file`, else labels.txt in the version folder (the exporter
    writes it), else None (the SavedModel's own `synsets` output names the classes)."""
    path = labels_file or labels.labels_beside(os.path.join(saved_model_dir, "saved_model.pb"))
    if path is None:
        return None
    try:
        names = labels.read_labels(path)
    except labels.ClassListError as error:
        raise PredictError(str(error)) from None
    width = classifier.structured_outputs["probabilities"].shape[-1]
    if width is not None and len(names) != width:
        raise PredictError(f"{path}: lists {len(names)} classes, the model has {width}")
    return names


def classify_file(
    classifier: Callable[..., dict[str, tf.Tensor]], image_path: str,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """The top classes of one image file, best first; named by `class_names` when given."""
    try:
        with open(image_path, "rb") as handle:
            image_bytes = handle.read()
    except OSError as error:
        raise PredictError(f"{image_path}: cannot read the file: {error.strerror}") from None
    try:
        outputs = classifier(
            **{serving.IMAGE_BYTES_INPUT: tf.constant([image_bytes], dtype=tf.string)}
        )
    except tf.errors.InvalidArgumentError as error:
        refusal = _REFUSAL.search(error.message)
        # The graph's own checks: an image over the export's limits is refused; a malformed
        # header or an unknown format is not a usable image, as a decoder's error is.
        if refusal and "over the limit" in refusal.group(1):
            raise PredictError(f"{image_path}: refused: {refusal.group(1)}") from None
        reason = refusal.group(1) if refusal else _tensorflow_reason(error)
        raise PredictError(f"{image_path}: not a usable image: {reason}") from None
    predictions = []
    for rank, (class_id, score, synset) in enumerate(
        zip(
            outputs["classes"][0].numpy(),
            outputs["scores"][0].numpy(),
            outputs["synsets"][0].numpy(),
        ),
        start=1,
    ):
        synset = synset.decode("utf-8")
        if class_names is not None:
            synset = class_names[int(class_id)]
        predictions.append(
            {
                "rank": rank,
                "class_id": int(class_id),
                "synset": synset,
                "name": imagenet.class_name_for(synset),
                "probability": float(score),
            }
        )
    return predictions


TRUE_CLASS_SOURCES = ("none", "folder", "imagenet_val")
TRUE_CLASS_MARK = "  <- true class"


def true_class_of(image_path: str, source: str) -> str | None:
    """The class an image is known to be: its folder's name (`folder`), or ImageNet's ground
    truth of an ILSVRC2012_val_<n> file (`imagenet_val`); None for `none`."""
    if source == "folder":
        return os.path.basename(os.path.dirname(os.path.abspath(image_path)))
    if source == "imagenet_val":
        synset = imagenet.validation_synset_for(image_path)
        if synset is None:
            raise PredictError(f"{image_path}: --true_class=imagenet_val needs an "
                               "ILSVRC2012_val_<8 digits> file name")
        return synset
    return None


def true_class_rank(predictions: Sequence[dict[str, object]], true_class: str) -> int | None:
    """Where the true class stands among the predictions (1 = best), None if absent."""
    for prediction in predictions:
        if prediction["synset"] == true_class:
            return int(prediction["rank"])
    return None


def _label(synset: str) -> str:
    name = imagenet.class_name_for(synset)
    return synset if name == synset else f"{synset}  {name}"


def format_predictions(image_path: str, predictions: Sequence[dict[str, object]],
                       true_class: str | None = None) -> str:
    lines = [image_path if true_class is None
             else f"{image_path}  true class: {_label(true_class)}"]
    for prediction in predictions:
        line = (f"  {prediction['rank']}. {100 * prediction['probability']:6.2f}%  "
                f"{_label(str(prediction['synset']))}")
        if true_class is not None and prediction["synset"] == true_class:
            line += TRUE_CLASS_MARK
        lines.append(line)
    return "\n".join(lines)


def format_tally(ranks: Sequence[int | None]) -> str:
    """How often the true class came first and within the top 5."""
    first = sum(rank == 1 for rank in ranks)
    top5 = sum(rank is not None for rank in ranks)
    return (f"true class ranked 1st for {first} of {len(ranks)} images, in the top 5 for "
            f"{top5} of {len(ranks)}")


# --- command line -------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined at run time, not import, so importing this next to other CLIs is safe."""
    flags.DEFINE_string(
        "model", None, "An exported SavedModel: EXPORT_BASE (its highest numeric version is "
        "used) or EXPORT_BASE/<version>."
    )
    flags.DEFINE_bool(
        "json", False, "Print one JSON document ({'model': ..., 'results': [...]}) instead "
        "of text; failed images appear with an 'error' entry."
    )
    flags.DEFINE_string(
        "labels_file", None, "Class names in label order, one a line, to print instead of the "
        "model's own. Default: labels.txt in the SavedModel's folder, if there is one."
    )
    flags.DEFINE_enum(
        "true_class", "none", TRUE_CLASS_SOURCES, "Show each image's known class beside the "
        "answer, marked where it ranks, and count the hits: 'folder', the image's folder name "
        "(photos/val/<class>/x.jpg); 'imagenet_val', ImageNet's validation ground truth of "
        "ILSVRC2012_val_<n> files."
    )
    flags.mark_flag_as_required("model")


def main(argv: list[str]) -> int:
    image_paths = argv[1:]
    if not image_paths:
        raise app.UsageError("name at least one image file after the flags", exitcode=2)
    try:
        model_dir = resolve_saved_model_dir(FLAGS.model)
        classifier = load_classifier(model_dir)
        class_names = class_names_for(classifier, model_dir, FLAGS.labels_file)
    except PredictError as error:
        print(f"predict: {error}", file=sys.stderr)
        return 1
    results = []
    ranks = []
    failed = False
    for image_path in image_paths:
        try:
            true_class = true_class_of(image_path, FLAGS.true_class)
            predictions = classify_file(classifier, image_path, class_names)
        except PredictError as error:
            failed = True
            print(f"predict: {error}", file=sys.stderr)
            results.append({"image": image_path, "error": str(error)})
            continue
        result = {"image": image_path, "predictions": predictions}
        if true_class is not None:
            ranks.append(true_class_rank(predictions, true_class))
            result.update(true_class=true_class, true_class_rank=ranks[-1])
        results.append(result)
        if not FLAGS.json:
            print(format_predictions(image_path, predictions, true_class), flush=True)
    if ranks and not FLAGS.json:
        print(format_tally(ranks))
    if FLAGS.json:
        print(json.dumps({"model": model_dir, "results": results}, indent=2))
    return 1 if failed else 0


def run() -> None:
    """The console script's entry point (setup.py)."""
    define_flags()
    command_help.show_in_help(sys.modules[__name__])
    app.run(main)


if __name__ == "__main__":
    run()
