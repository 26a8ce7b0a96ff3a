"""The GPU figures of issue 15 in one run; driven by benchmarks/gpu.sh (see there for use).

Prints, in this order:
  1. the input pipeline alone on every core: `build_dataset(training=True,
     finish_on_device=True)` on generated 256x256 records against a bare decode of them
     (benchmarks/input_pipeline.py, in a subprocess);
  2. synthetic training images/s (`--use_synthetic_data`, the model alone) at batch 256 for
     float32, mixed_float16 and mixed_bfloat16, each without and with XLA (`--jit_compile`),
     with the model FLOP utilisation (MFU) against the card's peak;
  3. real-data training images/s on those 256x256 records at the fastest synthetic setting,
     and its ratio to that setting's synthetic rate.
Every training run is the trainer itself (`alexnet_tf.train.trainer.train()`, in this process, so
TensorFlow starts once), with configs/paper.cfg's recipe and the figure its summary.json
reports (steady state: warm-up steps not timed).

MFU: the paper network takes 0.72 G multiply-adds forward per 227x227 image (Caffe's
bvlc_alexnet count, grouped conv2/4/5), 1.44 GFLOP; a training step about 3x that (forward,
gradients of inputs and of weights): 4.32 GFLOP per image. Peaks used, NVIDIA H200 SXM dense:
989 TFLOP/s bfloat16/float16 tensor cores; 67 TFLOP/s float32 (without tensor cores). TensorFlow
runs float32 convolutions and matmuls as TF32 on tensor cores by default (peak 495 TFLOP/s), so
float32 rows give MFU against both. Override with --peak_tflops_16, --peak_tflops_32.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# Paper network, 227x227: multiply-adds of one forward pass, and a training step's FLOPs.
FORWARD_MULTIPLY_ADDS = 0.72e9
TRAINING_FLOP_PER_IMAGE = 3 * 2 * FORWARD_MULTIPLY_ADDS
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
FLAG_VALUE = {"float32": "none", "mixed_float16": "mixed_float16",
              "mixed_bfloat16": "mixed_bfloat16"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="Tiny sizes on any device "
                        "(CPU included): checks that the script runs, measures nothing. Only "
                        "float32 without XLA is trained (compiling on a CPU takes most of the "
                        "time), then the real-data run.")
    parser.add_argument("--batch_size", type=int, default=256, help="Global batch size.")
    parser.add_argument("--steps", type=int, default=150, help="Training steps per run.")
    parser.add_argument("--warmup_steps", type=int, default=40, help="Steps not timed.")
    parser.add_argument("--steps_per_execution", type=int, default=10,
                        help="The trainer's --steps_per_execution.")
    parser.add_argument("--num_images", type=int, default=2000,
                        help="Generated records (each 500x375 original also stored at 256x256).")
    parser.add_argument("--peak_tflops_16", type=float, default=989.0,
                        help="Dense bfloat16/float16 peak of the card (H200 SXM: 989).")
    parser.add_argument("--peak_tflops_32", type=float, default=67.0,
                        help="Float32 peak without tensor cores (H200 SXM: 67).")
    parser.add_argument("--peak_tflops_tf32", type=float, default=495.0,
                        help="TF32 tensor-core peak, what TensorFlow uses for float32 "
                        "(H200: 495).")
    parser.add_argument("--work_dir", default=None,
                        help="Scratch folder (default: a temporary one).")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch_size, args.steps, args.warmup_steps = 8, 4, 1
        args.steps_per_execution, args.num_images = 2, 64
    if args.steps <= args.warmup_steps:
        parser.error("--steps must exceed --warmup_steps")
    return args


def input_pipeline(records_dir: str, args: argparse.Namespace) -> None:
    """Writes the records (originals and 256x256) and times the pipeline alone on every core."""
    command = [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "input_pipeline.py"),
               f"--data_dir={records_dir}", f"--num_images={args.num_images}",
               "--contenders=decode_256,pipeline_256", f"--rounds={2 if args.dry_run else 5}",
               f"--batch_size={min(args.batch_size, 64)}"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"input_pipeline.py failed:\n{result.stderr[-3000:]}")
    print("Input pipeline alone, every core (benchmarks/input_pipeline.py):")
    for line in result.stdout.splitlines():
        print("  " + line.strip())


def train_images_per_second(model_dir: str, settings: list[str], args) -> float:
    """The trainer's steady-state images/s for configs/paper.cfg plus `settings`."""
    from absl import flags

    from alexnet_tf.train import trainer as train

    config = os.path.join(REPO_ROOT, "configs", "paper.cfg")
    argv = ["train", f"--flagfile={config}", f"--model_dir={model_dir}",
            f"--batch_size={args.batch_size}", "--epochs=1", f"--steps_per_epoch={args.steps}",
            f"--throughput_warmup_steps={args.warmup_steps}", "--validation_steps=1",
            f"--steps_per_execution={args.steps_per_execution}", "--progress=none",
            "--keep_checkpoints=1", *settings]
    if args.dry_run:
        argv += ["--image_size=67", "--shuffle_buffer=64"]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    summary = train.train()
    import keras

    keras.backend.clear_session()
    return float(summary["steady_state_training_images_per_second"])


def mfu_text(rate: float, precision: str, args) -> str:
    achieved = rate * TRAINING_FLOP_PER_IMAGE / 1e12
    if precision == "float32":
        return (f"{achieved:7.1f} TFLOP/s, MFU {achieved / args.peak_tflops_32:6.1%} of "
                f"{args.peak_tflops_32:g} (fp32), {achieved / args.peak_tflops_tf32:6.1%} of "
                f"{args.peak_tflops_tf32:g} (tf32)")
    return (f"{achieved:7.1f} TFLOP/s, MFU {achieved / args.peak_tflops_16:6.1%} of "
            f"{args.peak_tflops_16:g}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="gpu_benchmark_")
    records_dir = os.path.join(work_dir, "records")
    square_dir = os.path.join(records_dir, "256x256")
    try:
        input_pipeline(records_dir, args)
        # The trainer validates each epoch: one validation shard (a copy of a training one).
        shutil.copy(os.path.join(square_dir, "train-00000-of-00008"),
                    os.path.join(square_dir, "validation-00000-of-00001"))

        import tensorflow as tf
        from absl import logging

        logging.set_verbosity(logging.WARNING)
        devices = tf.config.list_physical_devices("GPU")
        card = (tf.config.experimental.get_device_details(devices[0]).get("device_name", "GPU")
                if devices else "no GPU (CPU)")
        print(f"\nSynthetic training, paper network, batch {args.batch_size}, "
              f"{args.steps} steps ({args.warmup_steps} untimed), --steps_per_execution="
              f"{args.steps_per_execution}, on {card} ({len(devices)} GPU(s), "
              f"{os.cpu_count()} cores):", flush=True)
        rates = {}
        for precision in PRECISIONS:
            for xla in (False, True):
                if args.dry_run and (xla or precision != "float32"):
                    # Each trainer run costs a dry run (test_gpu_benchmark) 20-60 s of CPU, XLA's
                    # compile most; the trainer's --jit_compile and mixed precision have tests
                    # of their own (tests/test_train.py, tests/test_validation.py).
                    print(f"  {precision:15s} XLA {'on ' if xla else 'off'} skipped in a dry run",
                          flush=True)
                    continue
                settings = ["--use_synthetic_data", f"--mixed_precision={FLAG_VALUE[precision]}",
                            f"--{'' if xla else 'no'}jit_compile"]
                run_dir = os.path.join(work_dir, f"synthetic_{precision}_{xla}")
                rate = train_images_per_second(run_dir, settings, args)
                rates[(precision, xla)] = rate
                print(f"  {precision:15s} XLA {'on ' if xla else 'off'} {rate:9.1f} images/s  "
                      f"{mfu_text(rate, precision, args)}", flush=True)
        (best_precision, best_xla), best_rate = max(rates.items(), key=lambda item: item[1])
        settings = [f"--data_dir={square_dir}", f"--mixed_precision={FLAG_VALUE[best_precision]}",
                    f"--{'' if best_xla else 'no'}jit_compile"]
        real = train_images_per_second(os.path.join(work_dir, "real"), settings, args)
        print(f"\nReal data, 256x256 records, {best_precision}, XLA {'on' if best_xla else 'off'} "
              f"(the fastest synthetic setting), --seed=2012 (configs/paper.cfg): {real:.1f} "
              f"images/s, {mfu_text(real, best_precision, args)}")
        print(f"\n{'dry run (tiny sizes): nothing measured; ' if args.dry_run else ''}"
              f"took {time.monotonic() - started:.0f} s")
        print(json.dumps({"synthetic": {f"{p}{'+xla' if x else ''}": r
                                        for (p, x), r in rates.items()}, "real": real}))
        peak = args.peak_tflops_32 if best_precision == "float32" else args.peak_tflops_16
        best_mfu = best_rate * TRAINING_FLOP_PER_IMAGE / 1e12 / peak
        print(f"gpu: real data reaches {real / best_rate:.2f}x of synthetic images/s at "
              f"{best_precision}{' + XLA' if best_xla else ''} ({real:.0f} vs {best_rate:.0f}); "
              f"best MFU {best_mfu:.1%}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
