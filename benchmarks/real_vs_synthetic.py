"""Claim (issue 15): training does not wait for its input. The trainer on real records reaches
>= 95% of its images/s on `--use_synthetic_data` at the same settings, on original-size records
and on the paper's 256x256 records alike.

    python benchmarks/real_vs_synthetic.py [--num_images=1500] [--steps=30] [--rounds=2]

Writes ImageNet-like records (500x375 JPEGs, quality 90, ~100 KB, the generator of
benchmarks/input_pipeline.py) to a temporary folder, and their 256x256 versions (shorter side to
256, centre crop, quality 95) beside them, then runs `python -m alexnet_tf.train`
with the paper's settings (paper variant, batch 64 unless --batch_size, 227x227, every
augmentation on, the trainer's default mixed precision) three ways, each in its own process,
in turns for --rounds rounds:
  * synthetic: `--use_synthetic_data` (one random batch repeated: the model alone);
  * records: the original-size records through `build_dataset`, unseeded;
  * records, --seed: the same with a fixed seed, whose pipeline keeps its order (for exact
    resumes and multi-worker runs; configs/paper.cfg seeds its runs);
  * 256 records, --seed: the 256x256 records, seeded.
Each figure is the trainer's own steady-state images/s from summary.json (warm-up steps
excluded); the best round counts. The last line gives the ratios to synthetic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# name -> (which records, extra trainer flags)
SETTINGS = {
    "synthetic": ("originals", ("--use_synthetic_data",)),
    "records": ("originals", ()),
    "records, --seed": ("originals", ("--seed=1",)),
    "256 records, --seed": ("256x256", ("--seed=1",)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=1500, help="Training JPEGs to write.")
    parser.add_argument("--batch_size", type=int, default=64, help="Global batch size.")
    parser.add_argument("--steps", type=int, default=30, help="Training steps per run.")
    parser.add_argument("--warmup_steps", type=int, default=8, help="Steps not timed.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of the three runs.")
    parser.add_argument("--extra_flags", default="", help="More trainer flags for every run, "
                        "e.g. '--mixed_precision=none'.")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup_steps:
        parser.error("--steps must exceed --warmup_steps")
    return args


def write_records(directory: str, square_dir: str, num_images: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import input_pipeline  # noqa: PLC0415  (the generator of ImageNet-like JPEGs)
    from alexnet_tf.data import records  # noqa: PLC0415

    input_pipeline.write_benchmark_records(directory, num_images, 8, square_dir=square_dir)
    # The trainer validates each epoch: one small validation shard (a copy of a training one).
    for folder in (directory, square_dir):
        source = os.path.join(folder, records.shard_name("train", 0, 8))
        target = os.path.join(folder, records.shard_name("validation", 0, 1))
        with open(source, "rb") as reader, open(target, "wb") as writer:
            writer.write(reader.read())


def run_trainer(data_dir: str, model_dir: str, setting: tuple[str, ...],
                args: argparse.Namespace) -> float:
    command = [
        sys.executable, "-m", "alexnet_tf.train", f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", "--variant=paper", "--image_size=227",
        f"--batch_size={args.batch_size}", "--epochs=1", f"--steps_per_epoch={args.steps}",
        "--validation_steps=1", f"--throughput_warmup_steps={args.warmup_steps}",
        "--progress=none", *args.extra_flags.split(), *setting,
    ]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"trainer failed ({' '.join(setting) or 'records'}):\n"
                         f"{result.stderr[-3000:]}")
    with open(os.path.join(model_dir, "summary.json")) as handle:
        return float(json.load(handle)["steady_state_training_images_per_second"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    best = {name: 0.0 for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="real_vs_synthetic_") as scratch:
        data_dirs = {"originals": os.path.join(scratch, "records"),
                     "256x256": os.path.join(scratch, "records_256")}
        os.makedirs(data_dirs["originals"])
        write_records(data_dirs["originals"], data_dirs["256x256"], args.num_images)
        for round_index in range(args.rounds):
            for setting_index, (name, (kind, setting)) in enumerate(SETTINGS.items()):
                model_dir = os.path.join(scratch, f"model_{round_index}_{setting_index}")
                rate = run_trainer(data_dirs[kind], model_dir, setting, args)
                best[name] = max(best[name], rate)
                print(f"round {round_index + 1}: {name:20s} {rate:7.1f} images/s", flush=True)
    print(f"\nbest of {args.rounds} (batch {args.batch_size}, 227x227, paper variant, "
          f"{os.cpu_count()} cores):")
    for name, rate in best.items():
        print(f"  {name:20s} {rate:7.1f} images/s")
    synthetic = best["synthetic"]
    print(f"real_vs_synthetic: original records reach {best['records'] / synthetic:.2f}x of "
          f"synthetic images/s, seeded {best['records, --seed'] / synthetic:.2f}x, seeded 256x256 "
          f"records {best['256 records, --seed'] / synthetic:.2f}x (target >= 0.95)")


if __name__ == "__main__":
    main()
