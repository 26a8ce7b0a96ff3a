"""Top-1 and top-5 accuracy and error of a trained model.keras on the validation shards.

    python -m alexnet_tf.evaluate --data_dir=/data/records --model=/runs/alexnet/model.keras
    python -m alexnet_tf.evaluate --data_dir=/data/records --model=... --ten_crop

By default each image is scored on its centre crop, the input the trainer validates on and the
exported model serves. --ten_crop is the paper's test-time protocol (section 4.1): the four
corner crops and the centre crop and their mirror images, the softmax averaged over the ten.
Images are prepared as the model's model_info.json says: imported torchvision weights are scored
on torchvision's Resize/CenterCrop (or TenCrop), as their published accuracy was measured.

Scoring runs on every GPU of the machine (or on --num_cpu_replicas CPU devices); the last
batches are padded with zero-weight images, so every image is scored exactly once whatever the
replica count and batch size (alexnet_tf/data/validation.py).
"""

from __future__ import annotations

import json
import os
import sys

from alexnet_tf import quiet_output

quiet_output.quiet_tensorflow()  # before TensorFlow loads: its start-up lines once

import keras  # noqa: E402
import tensorflow as tf
from absl import app, flags, logging

import alexnet_tf.model.layers  # noqa: F401  (registers the custom layers for load_model)
from alexnet_tf import labels
from alexnet_tf.data import (augment, damaged_shards, eval_preprocessing, label_offsets, records,
                             shard_listing, validation)
from alexnet_tf.data import pipeline as data
from alexnet_tf.export import signatures as serving
from alexnet_tf.model import model_checks, model_info
from alexnet_tf.train import distribution
from alexnet_tf.evaluate.per_class import PerClassTop1, format_rows

flags.DEFINE_string("data_dir", None, "Directory with the converter's shards.")
flags.DEFINE_string("model", None, "The trained model, e.g. MODEL_DIR/model.keras.")
flags.DEFINE_string("split", "validation", "Which shards to score: SPLIT-*-of-*.")
flags.DEFINE_bool("ten_crop", False, "Average the softmax over the paper's ten crops "
                  "(section 4.1) instead of scoring the centre crop.")
flags.DEFINE_enum("crop_region", None, augment.CROP_REGIONS, "With --ten_crop, whose "
                  "corners: 'central_square', those of the central 256x256 patch of the image "
                  "scaled to 256 (paper, section 2); 'full_image', the scaled image's own "
                  "corners. Default: the model's own protocol (central_square for models "
                  "trained here, full_image for torchvision's weights, as its TenCrop).")
flags.DEFINE_integer("batch_size", 100, "Images per batch (ten crops each with --ten_crop).",
                     lower_bound=1)
flags.DEFINE_integer("image_size", None, "Crop side. Default: the model's input size.",
                     lower_bound=1, upper_bound=256)
flags.DEFINE_integer("label_offset", None, "Subtracted from each record's label. Default: "
                     "the converter's value from manifest.json, else 0.", lower_bound=0)
flags.DEFINE_integer("max_batches", None, "Score only this many batches (quick checks).",
                     lower_bound=1)
flags.DEFINE_string("output_json", None, "Also write the results to this JSON file.")
flags.DEFINE_bool("per_class", False, "Also print the top-1 accuracy of each class, by name.")
flags.DEFINE_string("labels_file", None, "Class names in label order for --per_class. Default: "
                    "labels.txt beside --model, else in --data_dir.")
flags.DEFINE_integer("num_cpu_replicas", 0, "Split the CPU into this many logical devices and "
                     "score on all of them (the multi-replica path without GPUs).",
                     lower_bound=0)
flags.mark_flags_as_required(["data_dir", "model"])
FLAGS = flags.FLAGS


def scoring_dataset(
    strategy: tf.distribute.Strategy, files: list[str], *, batch_size: int, image_size: int,
    label_offset: int, ten_crop: bool, split_manifest: dict | None = None,
    crop_region: str | None = None, info: dict | None = None,
) -> tf.data.Dataset:
    """(images, labels, weights) batches of the records of `files` over the strategy's
    replicas, padded with zero-weight images to whole global batches.

    Images are prepared as the model's model_info.json record `info` says (None: the paper's
    preprocessing, as for a model trained here): imported torchvision weights are scored
    with torchvision's own transforms, as their published accuracy was.
    """
    if ten_crop:
        prepare = eval_preprocessing.ten_crop_function(info, image_size, crop_region)
    else:
        prepare = eval_preprocessing.eval_function(info, image_size)
    steps = validation.steps_per_pass(
        validation.records_per_pipeline(validation.records_per_file(files, split_manifest), 1,
                                        by_file=False), batch_size)

    def dataset_fn(context):
        return data.build_dataset(
            files, training=False, batch_size=batch_size, image_size=image_size,
            label_offset=label_offset, ten_crop=ten_crop, input_context=context,
            eval_function=prepare, pad_to_examples=validation.examples_per_pipeline(
                steps, batch_size, context.num_input_pipelines))

    return distribution.distribute(strategy, dataset_fn)


def evaluate(
    network: keras.Model, dataset: tf.data.Dataset, *, ten_crop: bool = False,
    max_batches: int | None = None, strategy: tf.distribute.Strategy | None = None,
    per_class: PerClassTop1 | None = None,
) -> dict:
    """Accuracy and error at top-1 and top-5 of `network` over `dataset`.

    `dataset` yields (images, labels) or (images, labels, weights), distributed by `strategy`
    if given; examples of weight 0 are padding and not scored. With `ten_crop` the images
    are [B, 10, S, S, 3] and an image's prediction is the mean of its ten softmax outputs
    (the paper averages the softmax, not the logits).
    """
    strategy = strategy or tf.distribute.get_strategy()

    def probabilities(images):
        if not ten_crop:
            return tf.nn.softmax(network(images, training=False))
        crops = tf.reshape(images, [-1, *images.shape[2:]])
        crop_probabilities = tf.nn.softmax(network(crops, training=False))
        return tf.reduce_mean(tf.reshape(crop_probabilities, [tf.shape(images)[0], 10, -1]), 1)

    @tf.function
    def on_every_replica(images):
        return strategy.run(probabilities, args=(images,))

    def gathered(value):
        return tf.concat(strategy.experimental_local_results(value), axis=0)

    top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    images_scored = 0
    for batch_index, (images, labels, *weights) in enumerate(dataset):
        if max_batches is not None and batch_index >= max_batches:
            break
        predicted, labels = gathered(on_every_replica(images)), gathered(labels)
        if weights:
            real = gathered(weights[0]) > 0
            predicted, labels = tf.boolean_mask(predicted, real), tf.boolean_mask(labels, real)
        top1.update_state(labels, predicted)
        top5.update_state(labels, predicted)
        if per_class is not None:
            per_class.update(labels.numpy(), predicted.numpy())
        images_scored += int(labels.shape[0])
    results = {"images": images_scored, "protocol": "ten-crop" if ten_crop else "centre crop"}
    for k, metric in ((1, top1), (5, top5)):
        accuracy = float(metric.result()) if images_scored else float("nan")
        results[f"top{k}_accuracy"] = accuracy
        results[f"top{k}_error"] = 1.0 - accuracy
    return results


def per_class_names(num_classes: int) -> list[str]:
    """--labels_file, else labels.txt beside the model, else the records'; ImageNet's synsets
    or class_<i> without any (`serving.class_labels`)."""
    path = FLAGS.labels_file or labels.labels_beside(FLAGS.model)
    if path is None and tf.io.gfile.exists(os.path.join(FLAGS.data_dir, labels.LABELS_FILENAME)):
        path = os.path.join(FLAGS.data_dir, labels.LABELS_FILENAME)
    try:
        return serving.class_labels(num_classes, labels_file=path)
    except labels.ClassListError as error:
        fail(f"--per_class: {error}")


def fail(message: str) -> None:
    """One line naming the flag at fault, not a traceback."""
    sys.stderr.write(f"Error: {message}\n")
    sys.exit(2)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if distribution.worker_count() > 1:
        fail("evaluate runs on one machine (its replicas are this machine's devices): unset "
             "TF_CONFIG")
    distribution.split_cpu_into_replicas(FLAGS.num_cpu_replicas)
    strategy = distribution.select_strategy(FLAGS.num_cpu_replicas)
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        fail(f"--batch_size={FLAGS.batch_size} does not divide evenly over "
             f"{strategy.num_replicas_in_sync} replicas")
    if not tf.io.gfile.exists(FLAGS.model):
        fail(f"--model={FLAGS.model} does not exist")
    output_folder = os.path.dirname(FLAGS.output_json or "") or "."
    if FLAGS.output_json and not tf.io.gfile.isdir(output_folder):
        fail(f"--output_json={FLAGS.output_json}: the folder {output_folder} does not exist")
    try:
        with strategy.scope():
            network = model_checks.load_keras_model(FLAGS.model)
        model_side, num_classes = model_checks.image_classifier_shape(network, FLAGS.model)
        image_size = FLAGS.image_size or model_side
        model_checks.check_image_size(image_size, model_side, FLAGS.model)
        info = model_info.read_info(FLAGS.model)
        if info is not None:
            eval_preprocessing.check_fits(info, image_size)
        manifest = records.read_manifest(FLAGS.data_dir) or {}
        shards = shard_listing.list_shards(FLAGS.data_dir, FLAGS.split, manifest)
        if not shards.files:
            fail(f"--data_dir={FLAGS.data_dir} has no {FLAGS.split}-*-of-* shards")
        if shards.describe_left_out():
            logging.warning("--data_dir=%s: %s", FLAGS.data_dir, shards.describe_left_out())
        model_checks.check_classes(num_classes, manifest, FLAGS.split, FLAGS.model)
        label_offset = label_offsets.resolve(FLAGS.label_offset, manifest, shards.files,
                                             FLAGS.data_dir)
    except model_info.ModelInfoError as error:
        fail(f"--model={FLAGS.model}: {error}")
    except ValueError as error:  # the model, the manifest or the flags; the message says which
        fail(str(error) if str(error).startswith("--") else f"--data_dir: {error}")
    per_class = class_names = None
    if FLAGS.per_class:
        class_names = per_class_names(num_classes)
        per_class = PerClassTop1(len(class_names))
    try:
        dataset = scoring_dataset(
            strategy, shards.files, batch_size=FLAGS.batch_size, image_size=image_size,
            label_offset=label_offset, ten_crop=FLAGS.ten_crop,
            split_manifest=manifest.get("splits", {}).get(FLAGS.split),
            crop_region=FLAGS.crop_region, info=info)
        results = evaluate(network, dataset, ten_crop=FLAGS.ten_crop,
                           max_batches=FLAGS.max_batches, strategy=strategy,
                           per_class=per_class)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError) as error:
        damage = (damaged_shards.diagnose(error, {FLAGS.split: shards.files}, manifest=manifest)
                  if damaged_shards.is_read_failure(error) else None)
        if damage is None and not isinstance(error, tf.errors.DataLossError):
            reason = getattr(error, "message", str(error)).splitlines()[0]
            sys.stderr.write(f"Error: scoring the {FLAGS.split} shards in {FLAGS.data_dir} "
                             f"failed: {reason}\n")
        else:
            sys.stderr.write(f"Error: {damaged_shards.explain(error, damage, FLAGS.data_dir)}\n")
        sys.exit(1)
    preprocessing = info["preprocessing"]["name"] if info else "paper"
    shorter_side = info["preprocessing"]["resize_shorter_side"] if info else augment.SHORTER_SIDE
    results.update(model=FLAGS.model, data_dir=FLAGS.data_dir, split=FLAGS.split,
                   image_size=image_size, preprocessing=preprocessing,
                   resize_shorter_side=shorter_side)
    if FLAGS.ten_crop:
        results["crop_region"] = FLAGS.crop_region or eval_preprocessing.default_crop_region(info)
    print(f"{results['images']} {FLAGS.split} images, {results['protocol']}, "
          f"{image_size}x{image_size} of the image scaled to {shorter_side}, "
          f"{preprocessing} preprocessing"
          + (f", {results['crop_region']} corners" if FLAGS.ten_crop else ""))
    for k in (1, 5):
        print(f"top-{k} accuracy {results[f'top{k}_accuracy']:.4f}  "
              f"error {results[f'top{k}_error']:.4f}")
    if per_class is not None:
        results["per_class"] = per_class.rows(class_names)
        print(format_rows(results["per_class"]))
    if FLAGS.output_json:
        with tf.io.gfile.GFile(FLAGS.output_json, "w") as handle:
            handle.write(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
