"""Claim (issue "Speed: faster than PyTorch on the same hardware"): our Keras AlexNet trains
faster than the same network in PyTorch on the same CPU cores; targets >= 2.5x for our best
setting (mixed_bfloat16) against PyTorch's best CPU setting, and >= 2x float32 against float32.

    python benchmarks/train_throughput.py [--batch_size=64] [--warmup_steps=3] [--steps=10]
        [--rounds=2] [--settings=keras:float32,keras:mixed_bfloat16,torch:float32,...]

Measures training steps per second (forward + backward + SGD momentum 0.9 update, learning
rate 0.01, softmax cross-entropy) of the paper's AlexNet (LRN, conv2/4/5 in two groups,
60,965,224 parameters, 227x227 inputs) on one random batch repeated, so that only the model
is timed:
  * Keras: `alexnet_tf.model.build_alexnet(variant="paper")`, compiled and fed as
    `alexnet_tf.train --use_synthetic_data` does (default strategy, tf.data of one batch
    repeated, `model.fit`, the trainer's `Throughput` callback), under the global policy
    "float32" or "mixed_bfloat16";
  * PyTorch: the same layers written out below (no torchvision), float32 and bfloat16 (under
    `torch.autocast("cpu")`), each in the default (NCHW) layout and in channels_last,
    `torch.set_num_threads(os.cpu_count())`. Which layout is faster depends on the CPU and
    the precision, so PyTorch's best is the fastest of the four.
Each setting runs in its own subprocess (no dtype policy or thread pool leaks between them),
under glibc's default malloc and under malloc_settings.py's (`--malloc`), which doubles
PyTorch's CPU speed and leaves Keras's as it is; the rounds interleave the frameworks, and
the best of the rounds and of the allocators counts for each setting. The last line gives
the two ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import malloc_settings

PAPER_PARAMETERS = 60_965_224
IMAGE_SIZE = 227
NUM_CLASSES = 1000
LEARNING_RATE = 0.01
MOMENTUM = 0.9
# Paper, section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75, with
# b = a / (k + alpha * sum(a**2))**beta. torch.nn.LocalResponseNorm divides alpha by n.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0

# framework:precision -> what the table calls it.
SETTINGS = {
    "keras:float32": ("Keras", "float32"),
    "keras:mixed_bfloat16": ("Keras", "mixed_bfloat16"),
    "torch:float32": ("PyTorch", "float32"),
    "torch:float32_channels_last": ("PyTorch", "float32 channels_last"),
    "torch:bfloat16": ("PyTorch", "bf16 autocast"),
    "torch:bfloat16_channels_last": ("PyTorch", "bf16 autocast channels_last"),
}
RESULT_PREFIX = "RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=64, help="Images per training step.")
    parser.add_argument("--warmup_steps", type=int, default=3,
                        help="Steps run before timing (tracing, allocation, caches); >= 1.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per measurement.")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Measurements of each setting, interleaved; the best counts.")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"Comma-separated settings to measure, of: {', '.join(SETTINGS)}.")
    parser.add_argument("--malloc", default="default,tuned",
                        help="glibc malloc settings to measure each setting under: default, "
                             "tuned (benchmarks/malloc_settings.py), or default,tuned.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown --settings {unknown}; choose from {list(SETTINGS)}")
    args.malloc = [m for m in args.malloc.split(",") if m]
    if not args.malloc or any(m not in ("default", "tuned") for m in args.malloc):
        parser.error("--malloc takes default, tuned or default,tuned; got "
                     f"{','.join(args.malloc)!r}")
    for name in ("batch_size", "warmup_steps", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


# ----------------------------------------------------------------------------- Keras worker


def keras_images_per_second(policy: str, batch_size: int, warmup: int, steps: int) -> float:
    """The trainer's --use_synthetic_data path, reduced to one epoch of warmup + steps."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    try:
        import alexnet_tf  # noqa: F401
    except ImportError:  # running from a checkout that was not pip-installed
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from alexnet_tf.model import alexnet as model
    from alexnet_tf.train import callbacks

    keras.mixed_precision.set_global_policy(policy)
    images = 60.0 * tf.random.stateless_normal([batch_size, IMAGE_SIZE, IMAGE_SIZE, 3], [0, 0])
    labels = tf.random.stateless_uniform([batch_size], [0, 0], maxval=NUM_CLASSES, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()

    network = model.build_alexnet(num_classes=NUM_CLASSES, variant="paper",
                                  image_size=IMAGE_SIZE)
    assert network.count_params() == PAPER_PARAMETERS, network.count_params()
    network.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1_accuracy"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")],
        jit_compile=False)  # the trainer's default (--nojit_compile)
    throughput = callbacks.Throughput(batch_size, warmup)
    network.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[throughput],
                verbose=0, shuffle=False)
    return throughput.steady_state_images_per_second


# ----------------------------------------------------------------------------- PyTorch worker


def torch_alexnet(torch_nn):
    """The paper's AlexNet in PyTorch, layer for layer as `build_alexnet(variant="paper")`."""
    nn = torch_nn

    def lrn():
        return nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)

    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, NUM_CLASSES),
    )


def torch_images_per_second(precision: str, batch_size: int, warmup: int, steps: int) -> float:
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    channels_last = precision.endswith("channels_last")
    bfloat16 = precision.startswith("bfloat16")
    network = torch_alexnet(torch.nn).train()
    parameters = sum(p.numel() for p in network.parameters())
    assert parameters == PAPER_PARAMETERS, parameters
    images = 60.0 * torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,))
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            loss = loss_fn(network(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()  # CPU ops run synchronously: the step is done when it returns
    return batch_size * steps / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- driver


def run_worker(args: argparse.Namespace) -> None:
    framework, precision = args.worker.split(":", 1)
    measure = keras_images_per_second if framework == "keras" else torch_images_per_second
    rate = measure(precision, args.batch_size, args.warmup_steps, args.steps)
    print(RESULT_PREFIX + json.dumps({"setting": args.worker, "images_per_second": rate}),
          flush=True)


def measure_in_subprocess(setting: str, malloc: str, args: argparse.Namespace) -> float:
    command = [sys.executable, os.path.abspath(__file__), f"--worker={setting}",
               f"--batch_size={args.batch_size}", f"--warmup_steps={args.warmup_steps}",
               f"--steps={args.steps}"]
    env = malloc_settings.environment(tuned=malloc == "tuned",
                                      base=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [l for l in done.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"{setting} failed with exit status {done.returncode}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])["images_per_second"]


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "unknown"


def best_of(best: dict[str, float], prefix: str, precision: str = "") -> tuple[str, float]:
    """(setting, images/s) of the fastest measured setting of a framework (and precision).

    `best` holds each setting's best rate over the rounds and the allocators."""
    candidates = {s: r for s, r in best.items()
                  if s.startswith(prefix) and s.split(":", 1)[1].startswith(precision)}
    if not candidates:
        return "", float("nan")
    setting = max(candidates, key=candidates.get)
    return setting, candidates[setting]


def ratio(numerator: float, denominator: float) -> str:
    """'1.35x', or 'not measured' when --settings left either side out."""
    if math.isnan(numerator) or math.isnan(denominator):
        return "not measured"
    return f"{numerator / denominator:.2f}x"


def report(rates: dict[tuple[str, str], float], args: argparse.Namespace) -> None:
    """The table, then the ratios of each setting's best over the allocators."""
    print(f"\n{'framework':<10} {'precision':<30} " + " ".join(
        f"{'malloc ' + m:>15}" for m in args.malloc))
    for setting in args.settings:
        framework, precision = SETTINGS[setting]
        print(f"{framework:<10} {precision:<30} " + " ".join(
            f"{rates[setting, m]:>15.1f}" for m in args.malloc))
    best = {s: max(rates[s, m] for m in args.malloc) for s in args.settings}
    fastest_malloc = {s: max(args.malloc, key=lambda m: rates[s, m]) for s in args.settings}
    keras_bf16 = best.get("keras:mixed_bfloat16", float("nan"))
    keras_f32 = best.get("keras:float32", float("nan"))
    torch_best, torch_best_rate = best_of(best, "torch:")
    torch_f32, torch_f32_rate = best_of(best, "torch:", "float32")
    which = (f"{SETTINGS[torch_best][1]}, malloc {fastest_malloc[torch_best]}" if torch_best
             else "none measured")
    print(f"\nKeras mixed_bfloat16 / PyTorch best ({which}): {ratio(keras_bf16, torch_best_rate)}"
          f" (target >= 2.5x)")
    f32_which = (f"{SETTINGS[torch_f32][1]}, malloc {fastest_malloc[torch_f32]}" if torch_f32
                 else "none")
    print(f"Keras float32 / PyTorch float32 ({f32_which}):"
          f" {ratio(keras_f32, torch_f32_rate)} (target >= 2x)")
    print(f"train_throughput: Keras mixed_bfloat16 / PyTorch's best CPU setting ({which}): "
          f"{ratio(keras_bf16, torch_best_rate)}; float32 vs float32: "
          f"{ratio(keras_f32, torch_f32_rate)}")


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    if any(s.startswith("torch:") for s in args.settings) and not importlib.util.find_spec("torch"):
        sys.exit("PyTorch is not installed: pip install torch==2.13.0")
    print(f"AlexNet (paper) training, batch {args.batch_size}, {IMAGE_SIZE}x{IMAGE_SIZE}, "
          f"{os.cpu_count()} CPU cores; {args.warmup_steps} warm-up + {args.steps} timed steps, "
          f"best of {args.rounds} rounds. Load average at start: {load_average()}", flush=True)
    rates: dict[tuple[str, str], float] = {}
    runs = [(setting, malloc) for malloc in args.malloc for setting in args.settings]
    for round_index in range(args.rounds):
        # Alternate the order, so that drift in the machine's load hits all settings alike.
        order = runs if round_index % 2 == 0 else runs[::-1]
        for setting, malloc in order:
            rate = measure_in_subprocess(setting, malloc, args)
            rates[setting, malloc] = max(rate, rates.get((setting, malloc), 0.0))
            print(f"  round {round_index + 1}: {setting:<30} malloc {malloc:<8} {rate:7.1f} "
                  "images/s", flush=True)
    print(f"Load average at end: {load_average()}")
    report(rates, args)


if __name__ == "__main__":
    main()
