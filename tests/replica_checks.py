"""Multi-replica checks run in a fresh process, which can still split its CPU into devices.

    python -m tests.replica_checks replicas OUT_DIR DATA_DIR...   # trainer: 1, 2, 3 replicas
    python -m tests.replica_checks evaluate OUT_DIR DATA_DIR...   # evaluate: 1, 2, 3 replicas
    python -m tests.replica_checks workers OUT_DIR DATA_DIR...    # under TF_CONFIG, 2 workers

They go through the trainer's own wiring (`train.make_datasets`, `train.build_and_compile`,
configs/smoke.cfg with 10 classes and a global batch of 12) or `evaluate`'s, and write what
they measured to OUT_DIR/<mode>[-<worker>].json for tests/test_validation.py to judge. One
process serves every replica count, so TensorFlow starts once, not once per case. `replicas`
runs first: it writes the weights (and OUT_DIR/model.keras) the other two score.
(The trainer and evaluate each define absl flags at import, so they need a process each.)
"""

from __future__ import annotations

import glob
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data import pipeline as data
from alexnet_tf.train import distribution

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10
BATCH_SIZE = 12  # divides over 1, 2 and 3 replicas
IMAGE_SIZE = 67
REFERENCE_WEIGHTS = "reference.weights.h5"
REFERENCE_MODEL = "model.keras"
TEN_CROP_MAX_IMAGES = 50  # ten crops cost ten forward passes: the small sets only


def ten_crop_sets(data_dirs: list[str]) -> list[str]:
    return [d for d in data_dirs if sum(1 for _ in tf.data.TFRecordDataset(
        tf.io.gfile.glob(os.path.join(d, "validation-*-of-*")))) <= TEN_CROP_MAX_IMAGES]


def cpu_strategies() -> dict[int, tf.distribute.Strategy]:
    distribution.split_cpu_into_replicas(3)
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return {1: tf.distribute.get_strategy(),
            2: tf.distribute.MirroredStrategy(cpus[:2]),
            3: tf.distribute.MirroredStrategy(cpus[:3])}


def set_trainer_flags(data_dir: str, *extra: str) -> None:
    from alexnet_tf.train import trainer as train  # noqa: PLC0415  see the module docstring

    train.FLAGS.unparse_flags()
    train.FLAGS(["replica_checks", f"--flagfile={REPO_ROOT}/configs/smoke.cfg",
                 f"--num_classes={NUM_CLASSES}", f"--batch_size={BATCH_SIZE}",
                 "--model_dir=/nonexistent", f"--data_dir={data_dir}", *extra])


def trainer_network(strategy, weights_path: str | None) -> keras.Model:
    from alexnet_tf.train import trainer as train  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    network = train.build_and_compile(strategy)
    if weights_path and os.path.exists(weights_path):
        network.load_weights(weights_path)
    return network


def trainer_validation(network, strategy, data_dir: str) -> dict:
    """What fit logs as val_*: `evaluate` on the trainer's validation data."""
    from alexnet_tf.train import trainer as train  # noqa: PLC0415

    train.FLAGS.data_dir = data_dir
    _, validation_data, _ = train.make_datasets(strategy)
    return network.evaluate(validation_data, return_dict=True, verbose=0)


def evaluate_module(network, strategy, data_dir: str, ten_crop: bool) -> dict:
    from alexnet_tf.evaluate import evaluator as evaluate  # noqa: PLC0415

    dataset = evaluate.scoring_dataset(
        strategy, sorted(glob.glob(os.path.join(data_dir, "validation-*-of-*"))),
        batch_size=BATCH_SIZE,
        image_size=IMAGE_SIZE, label_offset=0, ten_crop=ten_crop)
    return evaluate.evaluate(network, dataset, ten_crop=ten_crop, strategy=strategy)


def one_batch_of_everything(network, data_dir: str) -> dict:
    """The truth: every record once, in one unpadded batch, through Keras's own test_step."""
    pattern = os.path.join(data_dir, "validation-*-of-*")
    images = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))
    dataset = data.build_dataset(pattern, training=False, batch_size=images,
                                 image_size=IMAGE_SIZE)
    metrics = network.evaluate(dataset, return_dict=True, verbose=0)
    return dict(metrics, images=images)


def overflow_step(network, strategy, overflowing_replica: int | None) -> dict:
    """One training step with replica `overflowing_replica`'s images so large that float16
    overflows; the others get plain images. What the optimizer did with it."""

    def replica_batch(context):
        # Far beyond float16's largest value, 65504: inf from the first layer on.
        scale = 1e9 if context.replica_id_in_sync_group == overflowing_replica else 1.0
        images = tf.fill([BATCH_SIZE // strategy.num_replicas_in_sync, IMAGE_SIZE, IMAGE_SIZE, 3],
                         scale)
        return images, tf.zeros([tf.shape(images)[0]], tf.int32)

    batch = strategy.experimental_distribute_values_from_function(replica_batch)
    before = [w.numpy() for w in network.trainable_weights]
    optimizer = network.optimizer
    scale_before = float(optimizer.dynamic_scale.numpy())
    iterations_before = int(optimizer.iterations.numpy())

    @tf.function
    def step(batch):
        strategy.run(network.train_step, args=(batch,))

    step(batch)
    after = [w.numpy() for w in network.trainable_weights]
    return {
        "weights_finite": bool(all(np.isfinite(w).all() for w in after)),
        "weights_changed": bool(any(not np.array_equal(a, b) for a, b in zip(after, before))),
        "scale_before": scale_before,
        "scale_after": float(optimizer.dynamic_scale.numpy()),
        "steps_applied": int(optimizer.iterations.numpy()) - iterations_before,
        "optimizer": type(optimizer).__name__,
    }


def check_replicas(out_dir: str, data_dirs: list[str]) -> dict:
    """The trainer's validation on 1, 2 and 3 replicas; float16 overflow on one of 2."""
    strategies = cpu_strategies()
    set_trainer_flags(data_dirs[0], "--mixed_precision=none")
    weights_path = os.path.join(out_dir, REFERENCE_WEIGHTS)
    results: dict = {"truth": {}, "replicas": {}}
    for replicas, strategy in strategies.items():
        network = trainer_network(strategy, weights_path)
        if replicas == 1:
            network.save_weights(weights_path)
            network.network().save(os.path.join(out_dir, REFERENCE_MODEL))  # as the trainer saves
            results["truth"] = {d: one_batch_of_everything(network, d) for d in data_dirs}
        results["replicas"][replicas] = {
            d: trainer_validation(network, strategy, d) for d in data_dirs}

    set_trainer_flags(data_dirs[0], "--mixed_precision=mixed_float16")
    keras.mixed_precision.set_global_policy("mixed_float16")
    network = trainer_network(strategies[2], None)
    results["float16"] = {"finite": overflow_step(network, strategies[2], None),
                          "replica_1_overflows": overflow_step(network, strategies[2], 1),
                          "replica_0_overflows": overflow_step(network, strategies[2], 0)}
    return results


def check_evaluate(out_dir: str, data_dirs: list[str]) -> dict:
    """`evaluate`'s scoring, centre crop and ten crops, on 1, 2 and 3 replicas."""
    import alexnet_tf.model.layers  # noqa: F401, PLC0415  (registers the custom layers)

    results: dict = {}
    strategies = cpu_strategies()  # before any op: it splits the CPU
    small = ten_crop_sets(data_dirs)
    for replicas, strategy in strategies.items():
        with strategy.scope():
            network = keras.saving.load_model(os.path.join(out_dir, REFERENCE_MODEL),
                                              compile=False)
        results[replicas] = {
            d: {"centre": evaluate_module(network, strategy, d, ten_crop=False),
                **({"ten_crop": evaluate_module(network, strategy, d, ten_crop=True)}
                   if d in small else {})}
            for d in data_dirs}
        if replicas == 1:
            results["truth"] = {
                d: {"centre": evaluate_in_one_batch(network, d, ten_crop=False),
                    **({"ten_crop": evaluate_in_one_batch(network, d, ten_crop=True)}
                       if d in small else {})}
                for d in data_dirs}
    return results


def evaluate_in_one_batch(network, data_dir: str, ten_crop: bool) -> dict:
    from alexnet_tf.evaluate import evaluator as evaluate  # noqa: PLC0415

    pattern = os.path.join(data_dir, "validation-*-of-*")
    images = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))
    dataset = data.build_dataset(pattern, training=False, batch_size=images,
                                 image_size=IMAGE_SIZE, ten_crop=ten_crop)
    return evaluate.evaluate(network, dataset, ten_crop=ten_crop)


def check_workers(out_dir: str, data_dirs: list[str]) -> dict:
    """The same under MultiWorkerMirroredStrategy, then float16 overflow on worker 1 only."""
    strategy = distribution.select_strategy()
    set_trainer_flags(data_dirs[0], "--mixed_precision=none")
    network = trainer_network(strategy, os.path.join(out_dir, REFERENCE_WEIGHTS))
    results = {"validation": {d: trainer_validation(network, strategy, d) for d in data_dirs}}
    set_trainer_flags(data_dirs[0], "--mixed_precision=mixed_float16")
    keras.mixed_precision.set_global_policy("mixed_float16")
    network = trainer_network(strategy, None)
    results["float16"] = {"worker_1_overflows": overflow_step(network, strategy, 1),
                          "finite": overflow_step(network, strategy, None)}
    return results


def main(argv: list[str]) -> None:
    mode, out_dir, *data_dirs = argv[1:]
    checks = {"replicas": check_replicas, "evaluate": check_evaluate, "workers": check_workers}
    results = checks[mode](out_dir, data_dirs)
    name = mode
    if mode == "workers":
        name += "-" + str(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    with open(os.path.join(out_dir, name + ".json"), "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv)
