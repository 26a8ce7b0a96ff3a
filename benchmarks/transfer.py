"""Fine-tuning against training from scratch on few photos of new classes (issue 19, item 4).

A model is trained from scratch on the first half of the classes of IMAGE_DIR (sorted names;
Imagenette: tench, English springer, cassette player, chain saw, church). The other half
(French horn, garbage truck, gas pump, golf ball, parachute) is then learned three ways from
10, 50 and all photos per class: from scratch, by fine-tuning fc8 alone (`--init_from
--train_layers=fc8`) and by fine-tuning every layer (`--train_layers=all`), each with the same
number of steps. Every run is `python -m alexnet_tf.train` with configs/imagenette.cfg's
flags, as a user would run it; the validation photos are all of each class's val/ photos.

    python benchmarks/transfer.py --image_dir=../shared/data/imagenette --work_dir=W

Prints one line per run as it ends, then the table (validation top-1, centre crop, best
epoch), and last the ratio of fine-tuned to from-scratch top-1 at 10 photos per class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, "configs", "imagenette.cfg")
MODES = ("scratch", "fc8", "all")


def link_photos(image_dir: str, split: str, classes: list[str], per_class: int | None,
                raw_dir: str) -> int:
    """Links the first `per_class` photos (sorted names; all when None) of each class."""
    count = 0
    for class_name in classes:
        source = os.path.join(image_dir, split, class_name)
        target = os.path.join(raw_dir, split, class_name)
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(source))[:per_class]:
            link = os.path.join(target, name)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(source, name)), link)
            count += 1
    return count


def run(module: str, *flags: str, log_path: str) -> None:
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, "-m", module, *flags], env=environment,
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if result.returncode:
        with open(log_path) as log:
            raise SystemExit(f"{module} failed ({log_path}):\n{log.read()[-3000:]}")


def records(image_dir: str, work_dir: str, name: str, classes: list[str],
            per_class: int | None) -> tuple[str, int]:
    """(records folder, training photos) of `classes`, converted once."""
    raw_dir = os.path.join(work_dir, "raw", name)
    records_dir = os.path.join(work_dir, "records", name)
    train_photos = link_photos(image_dir, "train", classes, per_class, raw_dir)
    link_photos(image_dir, "val", classes, None, raw_dir)
    if not os.path.exists(os.path.join(records_dir, "manifest.json")):
        run("alexnet_tf.convert", f"--input_dir={raw_dir}", f"--output_dir={records_dir}",
            "--layout=folders", "--train_shards=2", "--validation_shards=2",
            "--progress_interval=0", log_path=os.path.join(work_dir, f"convert_{name}.log"))
    return records_dir, train_photos


def train(records_dir: str, model_dir: str, log_path: str, *flags: str) -> dict:
    """Trains (or reuses a finished run in model_dir) and returns its summary.json."""
    summary_path = os.path.join(model_dir, "summary.json")
    if not os.path.exists(summary_path):
        started = time.monotonic()
        run("alexnet_tf.train", f"--flagfile={CONFIG}", f"--data_dir={records_dir}",
            f"--model_dir={model_dir}", "--progress=none", *flags, log_path=log_path)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    with open(summary_path) as handle:
        return json.load(handle)


def best_top1(summary: dict) -> tuple[float, int]:
    best = summary["best_validation"]
    return best["top1_accuracy"], best["epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_dir", required=True, help="train/<class>/* and val/<class>/*")
    parser.add_argument("--work_dir", required=True, help="records and runs; reruns reuse them")
    parser.add_argument("--image_size", type=int, default=127)
    parser.add_argument("--pretrain_epochs", type=int, default=10,
                        help="epochs of the from-scratch model on the first half's classes")
    parser.add_argument("--steps", type=int, default=300,
                        help="training steps of every run on the second half's classes")
    parser.add_argument("--evaluations", type=int, default=6,
                        help="validation passes per run on the second half (its 'epochs')")
    parser.add_argument("--per_class", default="10,50,all",
                        help="photos per class of the second half, comma-separated")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--scratch_learning_rate", type=float, default=0.003)
    parser.add_argument("--finetune_learning_rate", type=float, default=0.001)
    arguments = parser.parse_args()
    os.makedirs(arguments.work_dir, exist_ok=True)
    classes = sorted(os.listdir(os.path.join(arguments.image_dir, "train")))
    first, second = classes[:len(classes) // 2], classes[len(classes) // 2:]
    size = [f"--image_size={arguments.image_size}"]

    print(f"First half, from scratch: {', '.join(first)}", flush=True)
    first_records, first_photos = records(arguments.image_dir, arguments.work_dir, "first",
                                          first, None)
    source_dir = os.path.join(arguments.work_dir, "runs", "first_scratch")
    summary = train(first_records, source_dir, os.path.join(arguments.work_dir, "first.log"),
                    *size, f"--epochs={arguments.pretrain_epochs}")
    top1, epoch = best_top1(summary)
    print(f"first half: {first_photos} photos, {arguments.pretrain_epochs} epochs: "
          f"validation top-1 {top1:.1%} (epoch {epoch})", flush=True)

    steps_per_evaluation = max(1, arguments.steps // arguments.evaluations)
    results: dict[tuple[str, str], tuple[float, int]] = {}
    photos: dict[str, int] = {}
    for per_class in arguments.per_class.split(","):
        count = None if per_class == "all" else int(per_class)
        name = f"second_{per_class}"
        records_dir, photos[per_class] = records(arguments.image_dir, arguments.work_dir, name,
                                                 second, count)
        batch = min(arguments.batch_size, photos[per_class])
        for mode in MODES:
            flags = [*size, f"--batch_size={batch}", f"--steps_per_epoch={steps_per_evaluation}",
                     f"--epochs={arguments.evaluations}"]
            if mode == "scratch":
                flags.append(f"--learning_rate={arguments.scratch_learning_rate}")
            else:
                flags += [f"--init_from={source_dir}", f"--train_layers={mode}",
                          f"--learning_rate={arguments.finetune_learning_rate}"]
            run_dir = os.path.join(arguments.work_dir, "runs", f"{name}_{mode}")
            summary = train(records_dir, run_dir,
                            os.path.join(arguments.work_dir, f"{name}_{mode}.log"), *flags)
            results[(per_class, mode)] = best_top1(summary)
            top1, epoch = results[(per_class, mode)]
            print(f"{per_class} per class ({photos[per_class]} photos), {mode}: validation "
                  f"top-1 {top1:.1%} (after {epoch * steps_per_evaluation} steps)", flush=True)

    chance = 1 / len(second)
    print(f"\nSecond half ({', '.join(second)}), {steps_per_evaluation * arguments.evaluations}"
          f" steps of batch <= {arguments.batch_size} each, {arguments.image_size}x"
          f"{arguments.image_size}, best validation top-1 of {arguments.evaluations} passes "
          f"(chance {chance:.0%}):")
    print("| photos per class | from scratch | fine-tune fc8 | fine-tune all |")
    print("| --- | --- | --- | --- |")
    for per_class in arguments.per_class.split(","):
        cells = [f"{results[(per_class, mode)][0]:.1%}" for mode in MODES]
        print(f"| {per_class} ({photos[per_class]} photos) | " + " | ".join(cells) + " |")
    smallest = arguments.per_class.split(",")[0]
    scratch = results[(smallest, "scratch")][0]
    tuned = max(results[(smallest, "fc8")][0], results[(smallest, "all")][0])
    print(f"transfer: at {smallest} photos per class the better fine-tuning reaches "
          f"{tuned / scratch:.2f}x the top-1 of training from scratch ({tuned:.1%} vs "
          f"{scratch:.1%})")


if __name__ == "__main__":
    main()
