"""Claim (issue 20): a model trained on resized records (`--resize_shorter_side`) gives, served an
original photo through its SavedModel, the top-1 class `evaluate` gives on that photo's resized
record, for >= 99% of photos.

    nice -n 10 python benchmarks/served_vs_evaluated.py --image_dir=../shared/data/imagenette

Converts --train_per_class and --val_per_class photos of each class folder under
IMAGE_DIR/train and IMAGE_DIR/val with --resize_shorter_side=SHORTER_SIDE (below the photos'
shorter side, so the converter's antialiased Lanczos runs), trains a small paper-variant model
on those records for a few epochs, exports it, then for each validation photo compares top-1
of `serving_default` on the original bytes with top-1 of the evaluation pipeline (`evaluate`'s
model_info-chosen preprocessing and the Keras model) on its record. The peer in the same run
is the same SavedModel graph without the model_info record's resize, as exports were before
issue 20, and one whose records' resize decodes the original with TF's fast IDCT (Pillow, so
the converter, uses libjpeg's accurate one). Prints the agreements, and last a ratio; also
`evaluate`'s own top-1 on the records, which the per-photo pass must reproduce.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # transfer.py, beside this
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import transfer  # noqa: E402


def link_subset(image_dir: str, split: str, per_class: int, raw_dir: str) -> int:
    """Links the first `per_class` photos (sorted) of each class of IMAGE_DIR/split."""
    classes = sorted(os.listdir(os.path.join(image_dir, split)))
    return transfer.link_photos(image_dir, split, classes, per_class, raw_dir)


def run(module: str, *flags: str) -> None:
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, "-m", module, *flags], env=environment,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{module} failed:\n{result.stderr[-3000:]}")
    return result


def served_top1(saved_model_dir: str, originals: dict[str, bytes]) -> dict[str, int]:
    import tensorflow as tf

    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    names = sorted(originals)
    top1 = {}
    for start in range(0, len(names), 32):
        batch = names[start:start + 32]
        classes = serve(image_bytes=tf.constant([originals[name] for name in batch]))["classes"]
        top1.update(zip(batch, classes.numpy()[:, 0].tolist()))
    return top1


def evaluated_top1(
    model_path: str, records_dir: str, image_size: int
) -> tuple[dict[str, int], float]:
    """({file name: top-1} per record, top-1 accuracy) through what `evaluate` runs:
    model_info's preprocessing and the Keras model."""
    import glob

    import tensorflow as tf

    from alexnet_tf.data import eval_preprocessing, records
    from alexnet_tf.export import exporter as export
    from alexnet_tf.model import model_info

    model = export.load_keras_model(model_path)
    prepare = eval_preprocessing.eval_function(model_info.read_info(model_path), image_size)
    files = sorted(glob.glob(os.path.join(records_dir, "validation-*")))
    features = {records.ENCODED: tf.io.FixedLenFeature([], tf.string),
                records.FILENAME: tf.io.FixedLenFeature([], tf.string),
                records.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(files).map(
        lambda example: tf.io.parse_single_example(example, features))
    dataset = dataset.map(lambda x: (prepare(x[records.ENCODED]), x[records.FILENAME],
                                     x[records.LABEL])).batch(32)
    top1, correct = {}, 0
    for images, names, labels in dataset:
        classes = tf.argmax(model(images, training=False), axis=-1).numpy()
        correct += int((classes == labels.numpy()).sum())  # the converter's label_offset 0
        names = [os.path.basename(name.decode()) for name in names.numpy()]
        top1.update(zip(names, classes.tolist()))
    return top1, correct / max(len(top1), 1)


def agreement(served: dict[str, int], evaluated: dict[str, int]) -> tuple[int, int]:
    common = sorted(set(served) & set(evaluated))
    return sum(served[name] == evaluated[name] for name in common), len(common)


def convert_and_train(arguments, raw: str, records_dir: str, model_dir: str) -> None:
    """The records, resized, and a small model trained on them for a few epochs."""
    run("alexnet_tf.convert", f"--input_dir={raw}", f"--output_dir={records_dir}",
        f"--resize_shorter_side={arguments.shorter_side}", "--train_shards=8",
        "--validation_shards=1", "--num_workers=2", "--progress_interval=0",
        *(["--center_crop"] if arguments.center_crop else []))
    run("alexnet_tf.train", f"--data_dir={records_dir}", f"--model_dir={model_dir}",
        "--variant=paper", f"--image_size={arguments.image_size}",
        "--initialization=he", "--dropout=0.5", "--batch_size=64",  # configs/imagenette.cfg's
        "--learning_rate=0.003", "--momentum=0.9", "--weight_decay=5e-4",
        "--lr_schedule=cosine", f"--epochs={arguments.epochs}", "--mixed_precision=auto",
        *([f"--steps_per_epoch={arguments.steps_per_epoch}"] if arguments.steps_per_epoch
          else []),
        "--validation=false", "--cache_records=true", "--seed=1",
        "--keep_checkpoints=1", "--progress=epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_dir", required=True, help="train/<class>/* and val/<class>/*")
    parser.add_argument("--train_per_class", type=int, default=60)
    parser.add_argument("--val_per_class", type=int, default=50)
    parser.add_argument("--shorter_side", type=int, default=160)
    parser.add_argument("--center_crop", action="store_true")
    parser.add_argument("--image_size", type=int, default=127)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="shorter epochs, so that the cosine spans a run cut to fit")
    parser.add_argument("--work_dir", default=None, help="default: a temporary folder")
    parser.add_argument("--reuse", action="store_true",
                        help="keep WORK_DIR's records and model if a run left them")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = arguments.work_dir or temporary
        raw, records_dir = os.path.join(work, "raw"), os.path.join(work, "records")
        model_dir, serving_dir = os.path.join(work, "run"), os.path.join(work, "serving")
        train_count = link_subset(arguments.image_dir, "train", arguments.train_per_class, raw)
        val_count = link_subset(arguments.image_dir, "val", arguments.val_per_class, raw)
        classes = len(os.listdir(os.path.join(raw, "train")))
        print(f"{train_count} training and {val_count} validation photos, {classes} classes; "
              f"records --resize_shorter_side={arguments.shorter_side}"
              + (" --center_crop" if arguments.center_crop else ""))
        model_path = os.path.join(model_dir, "model.keras")
        if arguments.reuse and os.path.isfile(model_path):
            print(f"reusing the records and the model in {work}")
        else:
            convert_and_train(arguments, raw, records_dir, model_dir)
        with open(os.path.join(model_dir, "model_info.json")) as handle:
            info = json.load(handle)
        print(f"model_info.json preprocessing: {json.dumps(info['preprocessing'])}")
        scores = os.path.join(work, "evaluate.json")
        run("alexnet_tf.evaluate", f"--data_dir={records_dir}", f"--model={model_path}",
            f"--output_json={scores}")
        with open(scores) as handle:
            evaluate_scores = json.load(handle)

        from alexnet_tf.export import exporter as export
        from alexnet_tf.model import model_info

        model = export.load_keras_model(model_path)
        shutil.rmtree(serving_dir, ignore_errors=True)
        with_resize = export.export_model(model, serving_dir, version=1, info=info)
        before = json.loads(json.dumps(info))
        before["preprocessing"].pop(model_info.RECORDS_RESIZE, None)
        without_resize = export.export_model(model, serving_dir, version=2, info=before)
        from alexnet_tf.data import eval_preprocessing

        accurate_idct = eval_preprocessing.ACCURATE_IDCT
        eval_preprocessing.ACCURATE_IDCT = ""  # the original decoded with TF's fast IDCT
        try:
            fast_idct = export.export_model(model, serving_dir, version=3, info=info)
        finally:
            eval_preprocessing.ACCURATE_IDCT = accurate_idct

        originals = {}
        for class_name in sorted(os.listdir(os.path.join(raw, "val"))):
            folder = os.path.join(raw, "val", class_name)
            for name in sorted(os.listdir(folder)):
                with open(os.path.join(folder, name), "rb") as handle:
                    originals[name] = handle.read()
        evaluated, own_top1 = evaluated_top1(model_path, records_dir, arguments.image_size)
        print(f"evaluate's top-1 on the records: {evaluate_scores.get('top1_accuracy', '?')}; "
              f"the per-photo pass: {own_top1:.4f} over {len(evaluated)} records")
        now = agreement(served_top1(with_resize, originals), evaluated)
        then = agreement(served_top1(without_resize, originals), evaluated)
        fast = agreement(served_top1(fast_idct, originals), evaluated)
        print(f"served originals agree with evaluated records on top-1: {now[0]}/{now[1]} = "
              f"{now[0] / now[1]:.4f} (records' resize in the served graph)")
        print(f"  peer, bilinear resize of the original as before: {then[0]}/{then[1]} = "
              f"{then[0] / then[1]:.4f}")
        print(f"  peer, the records' resize on the original decoded with TF's fast IDCT (before "
              f"Pillow's accurate one was matched): {fast[0]}/{fast[1]} = "
              f"{fast[0] / fast[1]:.4f}")
        print(f"ratio of disagreements, before / now: {(then[1] - then[0])}/"
              f"{max(now[1] - now[0], 1)} = {(then[1] - then[0]) / max(now[1] - now[0], 1):.1f}x; "
              f"agreement now {now[0] / now[1]:.4f} (target >= 0.99)")


if __name__ == "__main__":
    main()
