"""Trains AlexNet on the converter's TFRecords, on every GPU (or CPU replica) of the machine.

    python -m alexnet_tf.train --flagfile=configs/paper.cfg \
        --data_dir=/data/imagenet/records --model_dir=/runs/alexnet

Running the same command again resumes from the newest checkpoint in --model_dir: after a
finished run it only rewrites the outputs, after a kill it continues from the last epoch
boundary, after a SIGTERM (preemption) from the exact step where it stopped.

Writes to --model_dir: checkpoints/ (every epoch and on SIGTERM), logs/ (TensorBoard),
history.json (one record per epoch), training_curves.png, labels.txt (the records' class
list, so export and predict name the classes), and at the end model.keras and
summary.json (final loss, top-1/top-5 accuracy and error, the best validation epoch, images/s,
the flags); the same in one line on stdout. A run refused before it trains leaves --model_dir
as it found it. --novalidation trains on records without a validation split.
"""

import importlib.util
import json
import math
import os
import re
import statistics
import sys
import warnings

from alexnet_tf import quiet_output

quiet_output.quiet_tensorflow()  # before TensorFlow loads: its start-up lines once

import keras  # noqa: E402
import tensorflow as tf
from absl import app, flags, logging

from alexnet_tf import imagenet, labels, run_lock
from alexnet_tf.data import (augment, damaged_shards, label_offsets, records,
                             shard_listing, validation)
from alexnet_tf.data import pipeline as data
from alexnet_tf.model import model_info
from alexnet_tf.model import alexnet as model
from alexnet_tf.train import (callbacks, class_files, distribution, execution, finetune,
                              folder_changes, keras_internals, loss_scale, plotting, resume_flags,
                              run_summary, safe_writes, schedules, small_sets, steps, stops)

EXIT_PREEMPTED = 128 + 15  # What a shell reports for a process ended by SIGTERM.
EXIT_WORKER_LOST = 75  # EX_TEMPFAIL: restart the job and it resumes.
EXIT_INTERRUPTED = 128 + 2  # SIGINT (Ctrl-C), as a shell reports it.

_FLAGS_BEFORE = set(flags.FLAGS)

# Data.
flags.DEFINE_string("data_dir", None, "Directory with the converter's train-*-of-* and "
                    "validation-*-of-* shards (and manifest.json).")
flags.DEFINE_bool("use_synthetic_data", False, "Train on random images made on the device "
                  "instead of reading --data_dir: measures the model's speed alone.")
flags.DEFINE_integer("label_offset", None, "Subtracted from each record's label. Default: "
                     "the converter's value from manifest.json, else 0.", lower_bound=0)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch. Default: training images "
                     "(from manifest.json, else counted) // --batch_size; 100 with synthetic "
                     "data.", lower_bound=1)
flags.DEFINE_bool("validation", True, "Score the validation split after every epoch. "
                  "--novalidation trains without one (records converted without a validation "
                  "split): no plateau schedule, no best validation epoch, no validation metrics "
                  "in history.json, summary.json, TensorBoard and the curves.")
flags.DEFINE_integer("validation_steps", None, "Cap on validation batches per epoch. "
                     "Default: the whole validation set.", lower_bound=1)
flags.DEFINE_integer("shuffle_buffer", 10000, "Records in the training shuffle buffer.",
                     lower_bound=1)
flags.DEFINE_bool("cache_records", False, "Keep the serialized records in memory after the "
                  "first epoch (small corpora only).")
flags.DEFINE_bool("lighting", True, "PCA colour noise on training images (paper, 4.1).")
flags.DEFINE_enum("crop_region", augment.PAPER_CROP_REGION, augment.CROP_REGIONS, "Where the "
                  "random training crops lie in the image scaled to --resize_side (256) on its "
                  "shorter side: 'central_square', its central square (paper, section 2); "
                  "'full_image', anywhere in it (wider on oblong images).")
flags.DEFINE_integer("resize_side", augment.SHORTER_SIDE, "The shorter side images are "
                     "scaled to before their crops are cut, in training, validation, evaluate "
                     "and the export (saved in model_info.json): each crop covers "
                     "--image_size/--resize_side of it. Paper: 256 for 224/227 crops. With a "
                     "small --image_size, about 1.13x it (76 for 67, 143 for 127) keeps the "
                     "paper's view of the whole photo; 256 zooms into its middle.",
                     lower_bound=1, upper_bound=augment.SHORTER_SIDE)
# Model.
flags.DEFINE_enum("variant", "paper", model.VARIANTS, "'paper': the 2012 two-tower network "
                  "with LRN; 'single': the one-tower network of 'One weird trick' (torchvision).")
flags.DEFINE_integer("num_classes", None, "Width of the last layer. Default: the number of "
                     "classes in --data_dir/labels.txt (which a value given here must equal), "
                     "1000 for records without one or synthetic data.", lower_bound=1)
flags.DEFINE_integer("image_size", 227, "Side of the square training crop (paper: 224, in "
                     "practice 227). At least 67 for 'paper', 63 for 'single'.",
                     lower_bound=1, upper_bound=256)
flags.DEFINE_float("dropout", 0.5, "Dropout rate around fc6/fc7 (paper, 4.2).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_enum("initialization", "paper", model.INITIALIZATIONS, "'paper': N(0, 0.01) "
                  "kernels and some biases 1 (section 5), slow to leave chance; 'caffe': "
                  "bvlc_alexnet's (fc6/fc7 N(0, 0.005), biases 0.1); 'he': He-normal, starts "
                  "learning at once.")
flags.DEFINE_enum("lrn", "paper", model.LRNS, "LRN after conv1/conv2 of --variant=paper: "
                  "'paper' k=2, alpha=1e-4 as printed; 'caffe' k=1, alpha=1e-4/5 (Caffe and "
                  "cuda-convnet divide alpha by the window n=5).")
flags.DEFINE_enum("grouped_conv", "auto", ("auto", "towers", "native"), "How the paper "
                  "variant computes conv2/4/5's two groups; same weights either way.")
flags.DEFINE_string("init_from", None, "Start from this model.keras (trained here or "
                    "imported): its architecture and weights; fc8 is newly initialised when "
                    "--num_classes differs from its classes.")
flags.DEFINE_enum("train_layers", "all", finetune.TRAIN_LAYERS, "With --init_from: the "
                  "layers that learn, the rest frozen (weight decay leaves them alone too).")
# Optimization.
flags.DEFINE_integer("batch_size", 128, "GLOBAL batch size, split evenly over the replicas "
                     "(paper: 128).", lower_bound=1)
flags.DEFINE_integer("epochs", 90, "Epochs to train (paper: about 90).", lower_bound=1)
flags.DEFINE_integer("train_steps", None, "Stop after this many steps in total, cutting the "
                     "last epoch short (for smoke runs).", lower_bound=1)
flags.DEFINE_float("learning_rate", 0.01, "Initial learning rate (paper: 0.01).",
                   lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum (paper: 0.9).", lower_bound=0.0,
                   upper_bound=0.999)
flags.DEFINE_float("weight_decay", 5e-4, "The paper's weight decay (section 5: "
                   "v <- 0.9v - 0.0005*lr*w - lr*grad). Applied as the L2 loss term "
                   "(weight_decay/2)*sum(w^2) on the kernels, whose gradient is "
                   "weight_decay*w: exactly the paper's rule. Not a decoupled decay.",
                   lower_bound=0.0)
flags.DEFINE_enum("lr_schedule", "plateau", schedules.SCHEDULES, "'plateau': divide by "
                  "1/--lr_decay_factor when validation error stops improving, at most "
                  "--lr_max_reductions times (paper, 5); 'step': every --lr_step_epochs; "
                  "'cosine': to 0 over --epochs.")
flags.DEFINE_float("lr_warmup_epochs", 0.0, "Raise the rate linearly from 1/N of it to the "
                   "schedule's over the first N optimizer steps, N = this many epochs' steps "
                   "(Goyal et al. 2017; not in the paper). Lets a short run start at a rate that "
                   "would throw freshly initialised weights off; 0: none.", lower_bound=0.0)
flags.DEFINE_float("lr_decay_factor", 0.1, "Multiplier of each plateau or step reduction, "
                   "in (0, 1).", lower_bound=1e-6, upper_bound=0.999999)
flags.DEFINE_integer("lr_patience", 5, "Plateau: epochs without improvement before a "
                     "reduction (the paper does not say).", lower_bound=1)
flags.DEFINE_float("lr_min_delta", 0.001, "Plateau: the fall in validation top-1 error that "
                   "counts as an improvement.", lower_bound=0.0)
flags.DEFINE_integer("lr_max_reductions", 3, "Plateau: most reductions (paper: three).",
                     lower_bound=0)
flags.DEFINE_integer("lr_step_epochs", 30, "Step: epochs between reductions.", lower_bound=1)
flags.DEFINE_integer("seed", None, "Seed for weights, data order and augmentation. With it, "
                     "a resumed run and a multi-worker run read exactly the images, crops and "
                     "order of an uninterrupted single-process run (the input pipeline then "
                     "keeps its order, a little slower). Default: unseeded.", lower_bound=0)
# Hardware.
flags.DEFINE_enum("mixed_precision", "auto", distribution.MIXED_PRECISION_CHOICES, "'auto': "
                  "mixed_bfloat16 on GPUs of compute capability >= 8.0 (no loss scaling), "
                  "mixed_float16 on 7.x, mixed_bfloat16 on CPUs with AMX/AVX512-BF16 and no "
                  "GPU, else float32 ('none').")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step. Honoured under "
                  "multi-replica strategies too (compiled per replica).")
flags.DEFINE_integer("steps_per_execution", 1, "Training steps per call into TensorFlow: the "
                     "host waits for the device once per call, and preemption saves and "
                     "callbacks act every this many steps (and at each epoch's end).",
                     lower_bound=1)
flags.DEFINE_integer("num_cpu_replicas", 0, "Split the CPU into this many logical devices "
                     "and mirror over them (tests the multi-replica path without GPUs).",
                     lower_bound=0)
flags.DEFINE_integer("preemption_check_steps", 10, "With several workers: steps between the "
                     "all-reduces by which the workers agree to stop together when a SIGTERM "
                     "reached any of them (one process checks every step, for free).",
                     lower_bound=1)
# Output.
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs, model.keras and summary.json "
                    "go; a run resumes from the checkpoints here.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in --model_dir/checkpoints.",
                     lower_bound=1)
flags.DEFINE_integer("throughput_warmup_steps", 20, "Steps not timed when measuring "
                     "images/s (tracing, compilation, pipeline fill).", lower_bound=0)
flags.DEFINE_enum("progress", "bar", ("bar", "epoch", "none"), "Keras output: a progress bar, "
                  "one line per epoch, or nothing.")

TRAINER_FLAGS = sorted(set(flags.FLAGS) - _FLAGS_BEFORE)
FLAGS = flags.FLAGS
flags.mark_flag_as_required("model_dir")
flags.register_multi_flags_validator(
    ["image_size", "variant"],
    lambda values: values["image_size"] >= model.MINIMUM_IMAGE_SIZE[values["variant"]],
    message="--image_size is below the smallest input of --variant "
    f"({', '.join(f'{k}: {v}' for k, v in model.MINIMUM_IMAGE_SIZE.items())})",
    flag_values=FLAGS)
flags.register_multi_flags_validator(
    ["image_size", "resize_side"], lambda values: values["image_size"] <= values["resize_side"],
    message="--image_size is larger than --resize_side: a crop cannot exceed the scaled image",
    flag_values=FLAGS)
for _name in ("learning_rate", "momentum", "weight_decay", "dropout", "lr_decay_factor",
              "lr_min_delta", "lr_warmup_epochs"):
    # NaN passes every bound (all comparisons with it are False): a run at lr=nan "succeeds".
    flags.register_validator(_name, lambda value: value is None or math.isfinite(value),
                             message=f"--{_name} must be a finite number", flag_values=FLAGS)
flags.register_multi_flags_validator(
    ["data_dir", "use_synthetic_data"], lambda v: v["data_dir"] or v["use_synthetic_data"],
    message="--data_dir is required unless --use_synthetic_data", flag_values=FLAGS)
flags.register_multi_flags_validator(
    ["init_from", "train_layers"], lambda v: v["init_from"] or v["train_layers"] == "all",
    message="--train_layers needs --init_from (the frozen layers would stay random)",
    flag_values=FLAGS)


def find_shards(data_dir: str, split: str, manifest: dict | None = None) -> list[str]:
    """The manifest's shards of `split` when there is one (saying what else was left out),
    else every `split-*-of-*`."""
    try:
        listing = shard_listing.list_shards(data_dir, split, manifest)
    except shard_listing.ShardListingError as error:
        raise app.UsageError(str(error)) from None
    if listing.describe_left_out():
        logging.warning("--data_dir=%s: %s", data_dir, listing.describe_left_out())
    return listing.files


def read_manifest(data_dir: str) -> dict:
    try:
        return records.read_manifest(data_dir) or {}
    except ValueError as error:
        raise app.UsageError(f"--data_dir: {error}") from None


def manifest_images(manifest: dict, split: str) -> int | None:
    """The converter's image count for `split`, None when manifest.json has none."""
    images = manifest.get("splits", {}).get(split, {}).get("images")
    return None if images is None else int(images)


def manifest_classes(manifest: dict, split: str) -> int | None:
    """How many classes the converter wrote into `split`, None when manifest.json does not say.

    Not --num_classes: ImageNet-labelled records of a few classes train a 1000-way fc8.
    """
    info = manifest.get("splits", {}).get(split, {})
    if "num_classes" in info:
        return int(info["num_classes"])
    return len(info["classes"]) if info.get("classes") else None


def count_images(manifest: dict, split: str, shards: list[str]) -> int:
    images = manifest_images(manifest, split)
    if images is not None:
        return images
    logging.warning("No manifest.json image count for %s: counting the records (one pass)", split)
    dataset = tf.data.TFRecordDataset(shards, num_parallel_reads=16)
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def resolve_classes() -> list[str] | None:
    """Sets --num_classes from the records' labels.txt (or checks it); returns the class list.

    Records converted before labels.txt existed have none: the flag (default 1000) decides.
    """
    names, source = None, "labels.txt"
    if not FLAGS.use_synthetic_data and tf.io.gfile.isdir(FLAGS.data_dir):
        try:
            names, source = class_files.read_beside(FLAGS.data_dir)
        except labels.ClassListError as error:
            raise app.UsageError(f"--data_dir: {error}") from None
        if names is None and read_manifest(FLAGS.data_dir).get("labels_file"):
            raise app.UsageError(f"--data_dir: {source} is missing (the converter wrote it "
                                 "beside the shards); convert again or restore it")
    try:
        FLAGS.num_classes = labels.resolve_num_classes(FLAGS.num_classes, names, source=source)
    except labels.ClassListError as error:
        raise app.UsageError(str(error)) from None
    logging.info("Classes: %d%s", FLAGS.num_classes, f" from {source}" if names else "")
    return names


def check_labels_fit(manifest: dict, label_offset: int) -> None:
    """A label >= --num_classes would fail deep inside the loss; say so now instead."""
    if "num_classes" in manifest:  # labels index labels.txt, checked by resolve_classes
        return
    label_of = imagenet.synset_to_label()
    synsets = {s for split in manifest.get("splits", {}).values() for s in split["classes"]}
    labels = [label_of[s] for s in synsets if s in label_of]
    if labels and max(labels) >= FLAGS.num_classes:
        raise app.UsageError(
            f"--num_classes={FLAGS.num_classes} is too small: the records hold ImageNet label "
            f"{max(labels) + label_offset} (0-based {max(labels)})"
        )


def synthetic_dataset(context: tf.distribute.InputContext, *, steps: int) -> tf.data.Dataset:
    """One random batch repeated: no decoding, so the numbers measure the model alone."""
    batch = context.get_per_replica_batch_size(FLAGS.batch_size)
    seed = [FLAGS.seed or 0, context.input_pipeline_id]
    images = 60.0 * tf.random.stateless_normal([batch, FLAGS.image_size, FLAGS.image_size, 3], seed)
    labels = tf.random.stateless_uniform([batch], seed, maxval=FLAGS.num_classes, dtype=tf.int32)
    if not steps:
        return tf.data.Dataset.from_tensors((images, labels)).repeat()
    # Validation: weighted, with an unknown batch length like the real validation set's, so
    # tf.distribute's end-of-data step hands each replica an empty batch, not a full-size
    # dummy whose examples the metrics would count (data/validation.py).
    examples = tf.data.Dataset.from_tensor_slices((images, labels, tf.ones([batch])))
    return examples.repeat(distribution.batches_per_pipeline(context, steps)).batch(batch)


def make_datasets(strategy: tf.distribute.Strategy) -> tuple:
    """(training_data, validation, steps_per_epoch).

    `training_data(first_epoch, steps_done)` is the training stream from that point on and
    `validation` the validation set, both distributed per --batch_size over the replicas.
    """
    if FLAGS.use_synthetic_data:
        steps = FLAGS.steps_per_epoch or 100
        train = distribution.distribute(
            strategy, lambda context: synthetic_dataset(context, steps=0))
        validation_data = distribution.distribute(
            strategy, lambda context: synthetic_dataset(context, steps=FLAGS.validation_steps or 1)
        ) if FLAGS.validation else None
        return (lambda first_epoch, steps_done: train), validation_data, steps

    data_dir = FLAGS.data_dir
    if not tf.io.gfile.isdir(data_dir):
        raise app.UsageError(f"--data_dir={data_dir} is not a directory")
    manifest = read_manifest(data_dir)
    splits = ("train", "validation") if FLAGS.validation else ("train",)
    shards = {split: find_shards(data_dir, split, manifest) for split in splits}
    if not shards["train"]:
        raise app.UsageError(f"--data_dir={data_dir} has no train-*-of-* shards "
                             "(run tools/build_tfrecords.py first)")
    if FLAGS.validation and not shards["validation"]:
        raise app.UsageError(
            f"--data_dir={data_dir} has no validation-*-of-* shards: convert again with "
            "--validation_fraction=0.1 (tools/build_tfrecords.py) to hold out a tenth of each "
            "class, or train without validation with --novalidation")
    try:
        label_offset = label_offsets.resolve(FLAGS.label_offset, manifest, shards["train"], data_dir)
    except label_offsets.LabelOffsetError as error:
        raise app.UsageError(str(error)) from None
    check_labels_fit(manifest, label_offset)
    steps = FLAGS.steps_per_epoch
    train_images = manifest_images(manifest, "train")
    if steps is None:
        train_images = count_images(manifest, "train", shards["train"])
        steps = train_images // FLAGS.batch_size
        if steps == 0:
            raise app.UsageError(f"--batch_size={FLAGS.batch_size} is more than the "
                                 f"{train_images} training images in --data_dir={data_dir}")
    trained_classes = manifest_classes(manifest, "train") or FLAGS.num_classes
    warning = (small_sets.from_scratch_warning(train_images, trained_classes)
               if train_images and not FLAGS.init_from else None)
    if warning:
        logging.warning("%s", warning)
    pipelines = distribution.input_pipelines(strategy)
    logging.info("Data: %s, label offset %d, %d steps per epoch, %d input pipeline(s) "
                 "split by %s", data_dir, label_offset, steps, pipelines,
                 "file" if data.shards_by_file(len(shards["train"]), pipelines)
                 else "record")

    def training_data(first_epoch: int, steps_done: int):
        def train_fn(context):
            return data.build_dataset(
                shards["train"], training=True,
                batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
                label_offset=label_offset, shuffle_buffer=FLAGS.shuffle_buffer, seed=FLAGS.seed,
                input_context=context, cache=FLAGS.cache_records, repeat=True,
                lighting=FLAGS.lighting, crop_region=FLAGS.crop_region,
                shorter_side=FLAGS.resize_side, first_epoch=first_epoch,
                finish_on_device=True,
                batches_per_epoch=distribution.batches_per_pipeline(context, steps),
                skip_batches=distribution.batches_per_pipeline(context, steps_done))

        return distribution.distribute(strategy, train_fn)

    if not FLAGS.validation:
        return training_data, None, steps
    validation_counts = validation.records_per_pipeline(
        validation.records_per_file(shards["validation"],
                                    manifest.get("splits", {}).get("validation")),
        pipelines, data.shards_by_file(len(shards["validation"]), pipelines))
    if not sum(validation_counts):
        raise app.UsageError(f"--data_dir={data_dir}: the validation shards hold no records")
    validation_steps = validation.steps_per_pass(validation_counts, FLAGS.batch_size)

    def validation_fn(context):
        # Padded to whole global batches with zero-weight examples: every image once, on any
        # number of replicas and workers (data/validation.py).
        dataset = data.build_dataset(
            shards["validation"], training=False,
            batch_size=FLAGS.batch_size, image_size=FLAGS.image_size,
            shorter_side=FLAGS.resize_side,
            label_offset=label_offset, input_context=context, cache=FLAGS.cache_records,
            pad_to_examples=validation.examples_per_pipeline(
                validation_steps, FLAGS.batch_size, context.num_input_pipelines))
        # Capped here rather than with fit's validation_steps, which would carry the
        # iterator over from one epoch's validation to the next.
        if FLAGS.validation_steps:
            dataset = dataset.take(
                distribution.batches_per_pipeline(context, FLAGS.validation_steps))
        # No autotuning thread: Keras drops each epoch's validation iterator at the next
        # validation, and dropping one waits for that thread's current tuning round, which
        # the busy training threads starve. Measured on configs/demo.cfg (2 CPU cores): a
        # 20 s stall in most epochs, doubling them; none without it.
        options = tf.data.Options()
        options.autotune.enabled = False
        return dataset.with_options(options)

    return training_data, distribution.distribute(strategy, validation_fn), steps


def build_and_compile(strategy: tf.distribute.Strategy,
                      warmup_steps: int = 0) -> steps.TrainingModel:
    try:
        source = finetune.read_source(FLAGS.init_from) if FLAGS.init_from else None
        architecture = finetune.architecture(
            source, variant=FLAGS.variant, variant_given=FLAGS["variant"].present,
            initialization=FLAGS.initialization, lrn=FLAGS.lrn,
            lrn_given=FLAGS["lrn"].present)
    except finetune.InitFromError as error:
        raise app.UsageError(str(error)) from None
    with strategy.scope():
        network = model.build_alexnet(
            num_classes=FLAGS.num_classes, image_size=FLAGS.image_size, dropout=FLAGS.dropout,
            # Paper's coefficient -> Keras L2(l): d/dw of l*sum(w^2) is 2*l*w = wd*w.
            weight_decay=FLAGS.weight_decay / 2, grouped_conv=FLAGS.grouped_conv,
            **architecture)
        if source:
            try:
                finetune.start_from(network, source, FLAGS.train_layers)
            except finetune.InitFromError as error:
                raise app.UsageError(str(error)) from None
        # Keras SGD: v <- momentum*v - lr*g; w <- w + v, with g = grad + wd*w from the L2 term:
        # the paper's update (section 5) term for term, the learning rate inside the velocity.
        optimizer = keras.optimizers.SGD(FLAGS.learning_rate, momentum=FLAGS.momentum)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            # Keras would wrap it too, but decide skips per replica (loss_scale.py).
            optimizer = loss_scale.AgreedLossScaleOptimizer(optimizer)
        per_replica_xla = FLAGS.jit_compile and strategy.num_replicas_in_sync > 1
        # The network with the trainer's steps (steps.py), sharing its variables.
        network = steps.TrainingModel(
            network, xla_per_replica=per_replica_xla,
            warmup=schedules.LinearWarmup(warmup_steps) if warmup_steps else None,
            multi_worker=isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))
        network.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            # `loss` holds the L2 term too (Keras adds model.losses, in test_step as well);
            # cross_entropy alone is what papers report and what chance level (ln C) bounds.
            # Weighted: validation's padding examples weigh 0 (data/validation.py).
            weighted_metrics=[
                keras.metrics.SparseCategoricalCrossentropy(from_logits=True,
                                                            name="cross_entropy"),
                keras.metrics.SparseCategoricalAccuracy(name="top1_accuracy"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")],
            # An explicit bool: "auto" would silently turn XLA off under any strategy.
            jit_compile=FLAGS.jit_compile and not per_replica_xla,
            # Keras's count of calls per epoch; execution.ExactStepsPerExecution runs them.
            steps_per_execution=FLAGS.steps_per_execution)
        # Slots exist before a restore (mixed_float16 wraps it in a LossScaleOptimizer).
        network.optimizer.build(network.trainable_variables)
    return network


def claim_model_dir(strategy: tf.distribute.Strategy) -> run_lock.RunLock | None:
    """Locks --model_dir for this job, or says in one line why it cannot hold a run.

    The chief holds the lock for the whole multi-worker job; the other workers share the
    folder legitimately and take none.
    """
    if not distribution.is_chief(strategy):
        return None
    try:
        return run_lock.RunLock(FLAGS.model_dir, what="trainer", flag="--model_dir").acquire()
    except OSError as error:
        raise app.UsageError(f"--model_dir={FLAGS.model_dir} "
                             f"{run_lock.explain_folder_error(FLAGS.model_dir, error)}") from None


def final_metrics(record: dict, prefix: str) -> dict:
    metrics = {"loss": record.get(prefix + "loss"),
               "cross_entropy": record.get(prefix + "cross_entropy")}
    for k in (1, 5):
        accuracy = record.get(f"{prefix}top{k}_accuracy")
        metrics[f"top{k}_accuracy"] = accuracy
        metrics[f"top{k}_error"] = None if accuracy is None else 1.0 - accuracy
    return metrics


def check_validation_flags() -> None:
    """--novalidation: refuse what needs a validation pass, and say what else goes with it."""
    if FLAGS.validation:
        return
    if FLAGS.lr_schedule == "plateau":
        raise app.UsageError(
            "--lr_schedule=plateau lowers the rate when the validation error stops improving, "
            "which --novalidation does not measure: choose --lr_schedule=step or cosine, or "
            "keep validation")
    logging.warning("--novalidation: no validation pass, so no plateau schedule, no best "
                    "validation epoch in the summary, and no validation metrics in "
                    "history.json, summary.json, TensorBoard or training_curves.png")


def follow_the_source_resize_side() -> None:
    """--init_from without --resize_side: photos scaled as the source model saw them."""
    if not FLAGS.init_from or FLAGS["resize_side"].present:
        return
    try:
        side = finetune.resize_side_of(FLAGS.init_from)
    except finetune.InitFromError as error:
        raise app.UsageError(str(error)) from None
    if side is None or side == FLAGS.resize_side:
        return
    if side < FLAGS.image_size:
        raise app.UsageError(f"--init_from={FLAGS.init_from} was trained with --resize_side="
                             f"{side}, smaller than --image_size={FLAGS.image_size}; pass "
                             "--resize_side")
    logging.info("--init_from: images scaled to %d on their shorter side, as %s was trained "
                 "(--resize_side)", side, FLAGS.init_from)
    FLAGS.resize_side = side


def train() -> dict:
    check_validation_flags()
    follow_the_source_resize_side()
    distribution.split_cpu_into_replicas(FLAGS.num_cpu_replicas)
    strategy = distribution.select_strategy(FLAGS.num_cpu_replicas)
    replicas = strategy.num_replicas_in_sync
    logging.info("Strategy: %s", distribution.describe(strategy))
    if FLAGS.batch_size % replicas:
        raise app.UsageError(f"--batch_size={FLAGS.batch_size} does not divide evenly over "
                             f"{replicas} replicas")
    model_dir_lock = claim_model_dir(strategy)
    policy, reason = distribution.choose_mixed_precision(FLAGS.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    logging.info("Mixed precision: %s (%s)", policy, reason)
    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)

    class_names = resolve_classes()
    if class_names is not None and distribution.is_chief(strategy):
        # Beside model.keras, so export and predict find it; checked first on a rerun.
        tf.io.gfile.makedirs(FLAGS.model_dir)
        try:
            class_files.keep_with_model(FLAGS.model_dir, class_names)
        except labels.ClassListError as error:
            raise app.UsageError(f"--model_dir: {error}") from None
    training_data, validation_data, steps_per_epoch = make_datasets(strategy)
    warmup_steps = schedules.warmup_steps(FLAGS.lr_warmup_epochs, steps_per_epoch)
    network = build_and_compile(strategy, warmup_steps)
    if warmup_steps:
        logging.info("Learning-rate warm-up: the first %d steps ramp linearly to the schedule's "
                     "rate (%g in the first epoch)", warmup_steps, FLAGS.learning_rate)
    schedule = schedules.build_schedule(
        FLAGS.lr_schedule, initial_learning_rate=FLAGS.learning_rate, epochs=FLAGS.epochs,
        factor=FLAGS.lr_decay_factor, patience=FLAGS.lr_patience,
        min_delta=FLAGS.lr_min_delta, max_reductions=FLAGS.lr_max_reductions,
        step_epochs=FLAGS.lr_step_epochs)

    chief = distribution.is_chief(strategy)
    write_dir = distribution.worker_directory(FLAGS.model_dir, strategy)
    tf.io.gfile.makedirs(write_dir)
    checkpoint = callbacks.TrainingCheckpoint(
        os.path.join(write_dir, "checkpoints"), model=network, optimizer=network.optimizer,
        schedule=schedule, max_to_keep=FLAGS.keep_checkpoints if chief else 1,
        restore_from=os.path.join(FLAGS.model_dir, "checkpoints"))
    try:
        restored = checkpoint.restore_latest()
    except (AssertionError, ValueError) as error:
        raise app.UsageError(f"--model_dir={FLAGS.model_dir} holds a checkpoint of a different "
                             f"model or flags ({str(error).splitlines()[0]})") from None
    first_epoch = int(checkpoint.completed_epochs.numpy())
    steps_done = int(checkpoint.steps_into_epoch.numpy())
    resume_flags.review(checkpoint, schedule, {name: FLAGS[name].value for name in TRAINER_FLAGS},
                        model_dir=FLAGS.model_dir, mid_epoch=bool(steps_done))
    if restored:
        logging.info("Resuming from %s: %d epochs done, %d steps into the next", restored,
                     first_epoch, steps_done)
    step_count = checkpoint.restored_step_count()
    history_path = os.path.join(FLAGS.model_dir, "history.json")
    history = callbacks.load_history(history_path, first_epoch)
    epochs = callbacks.epochs_for_steps(FLAGS.train_steps, steps_per_epoch, FLAGS.epochs)

    throughput = callbacks.Throughput(FLAGS.batch_size, FLAGS.throughput_warmup_steps)
    partial_logs = checkpoint.partial_logs() if steps_done else {}
    # Order matters: the schedule sees validation error before the checkpoint saves its state.
    callback_list = [
        # First: it must stop a diverged step before any callback below saves it.
        stops.StopOnNonFinite(lambda: float(network.optimizer.learning_rate.numpy()),
                              first_step=steps_done),
        execution.ExactStepsPerExecution(FLAGS.train_steps, step_count),
        throughput,
        callbacks.LearningRateFromSchedule(schedule, network.warmup),
        callbacks.SaveEachEpoch(
            checkpoint, history=history,
            history_path=history_path if chief else None,
            curves_path=os.path.join(FLAGS.model_dir, "training_curves.png") if chief else None,
            resumed_steps=steps_done, resumed_logs=partial_logs),
        callbacks.CheckpointOnPreemption(
            checkpoint, first_step=steps_done, earlier_logs=partial_logs,
            any_worker=distribution.any_worker(strategy),
            check_every=FLAGS.preemption_check_steps if distribution.worker_count() > 1 else 1),
    ]
    callback_list.append(callbacks.Progress(FLAGS.train_steps, terminal=sys.stdout.isatty(),
                                            step_count=step_count))
    callback_list.append(_SPLIT_BEING_READ)
    if chief and importlib.util.find_spec("tensorboard"):
        callback_list.append(keras.callbacks.TensorBoard(os.path.join(FLAGS.model_dir, "logs")))
    elif chief:
        logging.warning("No TensorBoard logs: the tensorboard package is not installed")
    verbose = {"bar": 1, "epoch": 2, "none": 0}[FLAGS.progress]
    # shuffle=False: the input pipeline shuffles; Keras cannot shuffle a tf.data pipeline.
    fit = dict(validation_data=validation_data, callbacks=callback_list, verbose=verbose,
               shuffle=False)
    # Keras says this after every validation pass over a set of unknown length; ours is
    # exactly one pass by design (the training set repeats, so it cannot run out).
    warnings.filterwarnings("ignore", message="Your input ran out of data")

    if FLAGS.train_steps and step_count.taken >= FLAGS.train_steps:
        logging.info("--train_steps=%d steps are taken already; rewriting the outputs",
                     FLAGS.train_steps)
    elif first_epoch >= epochs:
        logging.info("All %d epochs are done already; rewriting the outputs", epochs)
    else:
        if steps_done:
            # Finish the epoch a preemption interrupted with its remaining steps only.
            network.fit(training_data(first_epoch, steps_done), initial_epoch=first_epoch,
                        epochs=first_epoch + 1,
                        steps_per_epoch=max(steps_per_epoch - steps_done, 1), **fit)
            first_epoch += 1
        if first_epoch < epochs and not network.stop_training:
            network.fit(training_data(first_epoch, 0), initial_epoch=first_epoch, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, **fit)

    last = history[-1] if history else {}
    rates = [r["images_per_second"] for r in history if "images_per_second" in r]
    summary = {
        "epochs_completed": len(history),
        "steps_completed": step_count.taken,
        "train": final_metrics(last, ""),
        "validation": final_metrics(last, "val_") if FLAGS.validation else None,
        "best_validation": run_summary.best_validation(history),
        "steady_state_training_images_per_second": throughput.steady_state_images_per_second
        or (statistics.median(rates) if rates else None),
        "mixed_precision": policy,
        "mixed_precision_reason": reason,
        "strategy": distribution.describe(strategy),
        "replicas": replicas,
        "global_batch_size": FLAGS.batch_size,
        "jit_compile": FLAGS.jit_compile,
        "learning_rate_schedule": {"name": FLAGS.lr_schedule, **schedule.state()},
        "flags": {name: FLAGS[name].value for name in TRAINER_FLAGS},
    }
    if chief:
        # The plain network: it loads without the trainer's classes, and carries no optimizer
        # state (resuming reads the checkpoints).
        saved = network.network()
        safe_writes.save_model(saved, os.path.join(FLAGS.model_dir, "model.keras"))
        plotting.plot_conv1_filters(saved, os.path.join(FLAGS.model_dir,
                                                          plotting.CONV1_FILTERS_FILENAME))
        # Records made with --resize_shorter_side: served images are scaled as they were.
        records_options = (read_manifest(FLAGS.data_dir).get("options")
                           if FLAGS.data_dir and not FLAGS.use_synthetic_data else None)
        preprocessing = model_info.paper_preprocessing(
            FLAGS.image_size, records_options, resize_shorter_side=FLAGS.resize_side)
        callbacks.write_json_atomically(
            os.path.join(FLAGS.model_dir, model_info.FILENAME),
            model_info.for_network(saved, FLAGS.image_size, preprocessing))
        callbacks.write_json_atomically(os.path.join(FLAGS.model_dir, "summary.json"), summary)
    else:
        # Its checkpoints only took part in the chief's saves; the last worker out removes
        # the scratch folder too.
        tf.io.gfile.rmtree(write_dir)
        scratch = os.path.dirname(write_dir)
        try:
            if not tf.io.gfile.listdir(scratch):
                tf.io.gfile.rmtree(scratch)
        except tf.errors.OpError:
            pass  # another worker is still there, or already removed it
    logging.info("Done: %s", json.dumps({k: summary[k] for k in ("epochs_completed", "train",
                                                                  "validation")}))
    if model_dir_lock:
        model_dir_lock.release()
    if chief:
        print(run_summary.one_line(summary, history, os.path.join(FLAGS.model_dir, "model.keras")),
              flush=True)
    return summary


_SPLIT_BEING_READ = damaged_shards.SplitBeingRead()
# What train() may write into --model_dir before the first epoch: a refusal removes these.
_WRITTEN_BEFORE_TRAINING = (run_lock.LOCK_FILE, labels.LABELS_FILENAME,
                            labels.LABELS_FILENAME + ".tmp", "checkpoints", "workers")


def _damaged_shard_message(error: BaseException) -> str | None:
    """Which shard is damaged and how, what checks the rest, where the rerun resumes; None when
    the failure is not a damaged record."""
    if FLAGS.use_synthetic_data or not FLAGS.data_dir:
        return None
    damage = damaged_shards.diagnose_data_dir(error, FLAGS.data_dir, records.SPLITS,
                                              first=_SPLIT_BEING_READ.split)
    if damage is None and not isinstance(error, tf.errors.DataLossError):
        return None
    resume = damaged_shards.resume_point(os.path.join(FLAGS.model_dir, "checkpoints"))
    return f"{damaged_shards.explain(error, damage, FLAGS.data_dir)}\n{resume[0].upper()}{resume[1:]}."


def _first_informative_line(message: str) -> str:
    """The cause in a TensorFlow runtime error, skipping its 'Graph execution error:' header
    and the Python stack it quotes."""
    for line in message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}", "", line).strip()  # {{function_node ...}} tags
        if line and "Graph execution error" not in line and not line.startswith(
                ("Detected at node", "File ", "[[", "The error could be")):
            return line
    return message.strip()[:200]


def main(argv: list[str]) -> None:
    # A single process's refusal takes back what it wrote; in a cluster the chief's folder is
    # shared, and one worker cannot tell its own entries from the others'.
    changes = (folder_changes.FolderChanges(FLAGS.model_dir, _WRITTEN_BEFORE_TRAINING)
               if distribution.worker_count() < 2 else None)
    try:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            keras_internals.check()
        except RuntimeError as error:
            sys.stderr.write(f"Error: {error}\n")
            sys.exit(1)
        train()
    except app.UsageError as error:
        # One line naming the flag, not absl's usage dump or a TensorFlow traceback.
        sys.stderr.write(f"Error: {error}\n")
        if changes and stops.position.epoch is None:  # refused before the first epoch began
            changes.take_back()
        sys.exit(2)
    except tf.errors.NotFoundError as error:
        sys.stderr.write(f"Error: reading the records failed: {error.message.splitlines()[0]}\n")
        sys.exit(1)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError) as error:
        # Labels that do not fit the flags surface from deep inside a step; name the flag.
        for needle, flag in (("Received a label value", "--num_classes"),
                             ("label_offset", "--label_offset")):
            line = next((l.strip() for l in getattr(error, "message", "").splitlines()
                         if needle in l), None)
            if line:
                sys.stderr.write(f"Error: the records' labels do not fit {flag}="
                                 f"{FLAGS[flag[2:]].value}: {line}\n")
                sys.exit(1)
        message = _damaged_shard_message(error)
        if message is None:
            raise
        sys.stderr.write(f"Error: {message}\n")
        sys.exit(1)
    except (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError) as error:
        if distribution.worker_count() < 2:
            raise
        # A worker died or became unreachable; collectives cannot recover within a run.
        sys.stderr.write(
            f"Error: lost a worker of the cluster ({type(error).__name__}: "
            f"{_first_informative_line(error.message)}). Start every worker again with the same "
            "command: training resumes from the last checkpoint in --model_dir.\n")
        sys.exit(EXIT_WORKER_LOST)
    except callbacks.TrainingPreempted as error:
        logging.warning("%s", error)
        sys.exit(EXIT_PREEMPTED)
    except (stops.TrainingDiverged, safe_writes.WriteFailed) as error:
        sys.stderr.write(f"Error: {error}; {stops.resume_words(FLAGS.model_dir)}\n")
        sys.exit(1)
    except run_lock.FolderInUse as error:
        sys.stderr.write(f"Error: {error}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write(stops.interrupted_message(FLAGS.model_dir) + "\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    app.run(main)
