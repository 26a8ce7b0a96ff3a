"""Claim: on a CPU, AlexNet's grouped convolutions train much faster as two towers (split the
channels, two convolutions, concatenate) than as Keras's `Conv2D(groups=2)`.

Why it matters: conv2, conv4 and conv5 are grouped (paper, section 3.2), and
`alexnet_tf.model.layers.GroupedConv2D` picks its implementation per device from this measurement.

    python benchmarks/grouped_conv.py [--batch_size=16] [--steps=5] [--dtypes=float32,bfloat16]

Times one forward + backward pass (gradients for the input and the weights) of the three
grouped layers at their 227x227 sizes, in one run, with both implementations holding the same
weights (checked to agree before timing):
  * conv2: 27x27x96 -> 256, 5x5, 2 groups;
  * conv4: 13x13x384 -> 384, 3x3, 2 groups;
  * conv5: 13x13x384 -> 256, 3x3, 2 groups.
A third row, `tf.nn.convolution` handed the grouped kernel directly (no XLA), shows where the
time goes: Keras compiles its grouped convolution with XLA because TF's CPU kernels need
oneDNN to take its gradient; the row reads "unsupported" where that fails.
The last line is the ratio, over the three layers together, for the first dtype.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

try:
    import alexnet_tf  # noqa: F401
except ImportError:  # running from a checkout that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.model.layers import GroupedConv2D  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 16, "Images per forward + backward pass.")
flags.DEFINE_integer("steps", 5, "Timed passes per measurement (the median counts).")
flags.DEFINE_list(
    "dtypes", ["float32", "bfloat16"], "Compute dtypes to measure: float32, bfloat16."
)
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be at least 1")
flags.register_validator("steps", lambda v: v >= 1, "--steps must be at least 1")
flags.register_validator(
    "dtypes",
    lambda v: bool(v) and set(v) <= {"float32", "bfloat16"},
    "--dtypes must list float32 and/or bfloat16",
)

# name: (input height = width, input channels, filters, kernel size), all with 2 groups.
GROUPED_LAYERS = {
    "conv2": (27, 96, 256, 5),
    "conv4": (13, 384, 384, 3),
    "conv5": (13, 384, 256, 3),
}
GROUPS = 2


def _policy(dtype: str) -> str:
    return "float32" if dtype == "float32" else "mixed_bfloat16"


def build_pair(size: int, channels: int, filters: int, kernel_size: int, dtype: str):
    """The same grouped layer twice: Keras's Conv2D(groups=2) and two towers, equal weights."""
    common = dict(padding="same", activation="relu", dtype=_policy(dtype))
    native = keras.layers.Conv2D(filters, kernel_size, groups=GROUPS, **common)
    towers = GroupedConv2D(filters, kernel_size, groups=GROUPS, implementation="towers", **common)
    shape = (None, size, size, channels)
    native.build(shape)
    towers.build(shape)
    towers.set_weights(native.get_weights())
    return native, towers


def direct_grouped_op(layer: keras.layers.Conv2D):
    """`tf.nn.convolution` with the layer's grouped kernel, skipping Keras's XLA wrapper."""

    def forward(inputs):
        kernel = tf.cast(layer.kernel, inputs.dtype)
        bias = tf.cast(layer.bias, inputs.dtype)
        return tf.nn.relu(tf.nn.convolution(inputs, kernel, padding="SAME") + bias)

    return forward


def training_step(forward, variables):
    """A compiled forward + backward pass; returns the gradients so nothing is pruned."""

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.cast(forward(inputs), tf.float32))
        return tape.gradient(loss, [inputs, *variables])

    return step


def seconds_per_step(forward, variables, inputs: tf.Tensor, steps: int) -> float:
    step = training_step(forward, variables)
    for _ in range(2):  # tracing, XLA compilation, oneDNN primitive caches
        [gradient.numpy() for gradient in step(inputs)]
    timings = []
    for _ in range(steps):
        start = time.perf_counter()
        [gradient.numpy() for gradient in step(inputs)]
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def device_name() -> str:
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def measure(dtype: str, batch_size: int, steps: int) -> tuple[float, float]:
    """Prints one line per layer; returns total seconds (Conv2D(groups=2), two towers)."""
    native_total = towers_total = 0.0
    rng = np.random.default_rng(0)
    for name, (size, channels, filters, kernel_size) in GROUPED_LAYERS.items():
        native, towers = build_pair(size, channels, filters, kernel_size, dtype)
        inputs = tf.constant(
            rng.normal(0, 1, (batch_size, size, size, channels)), dtype=tf.as_dtype(dtype)
        )
        tolerance = 1e-3 if dtype == "float32" else 0.1
        np.testing.assert_allclose(
            np.asarray(native(inputs), np.float32),
            np.asarray(towers(inputs), np.float32),
            atol=tolerance,
            rtol=tolerance,
            err_msg=f"{name}: the two implementations disagree",
        )
        native_seconds = seconds_per_step(native, native.trainable_variables, inputs, steps)
        towers_seconds = seconds_per_step(towers, towers.trainable_variables, inputs, steps)
        try:
            direct_seconds = seconds_per_step(
                direct_grouped_op(native), native.trainable_variables, inputs, steps
            )
            direct = f"{direct_seconds * 1e3:9.1f} ms"
        except (tf.errors.OpError, ValueError):
            direct = "  unsupported"
        native_total += native_seconds
        towers_total += towers_seconds
        print(
            f"{dtype:8s} {name}: Conv2D(groups=2) {native_seconds * 1e3:9.1f} ms   "
            f"two_towers {towers_seconds * 1e3:9.1f} ms   "
            f"tf.nn.convolution (grouped, no XLA) {direct}   "
            f"ratio {native_seconds / towers_seconds:6.1f}x",
            flush=True,
        )
    print(
        f"{dtype:8s} all three: two_towers is {native_total / towers_total:.1f}x faster "
        f"than Conv2D(groups=2)",
        flush=True,
    )
    return native_total, towers_total


def main(argv: list[str]) -> None:
    del argv
    # Keras re-creates its XLA-compiled conv function for every trace; TF warns about that.
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    device = device_name()
    print(
        f"forward + backward, batch {FLAGS.batch_size}, median of {FLAGS.steps} steps, "
        f"{device}, {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}"
    )
    totals = {dtype: measure(dtype, FLAGS.batch_size, FLAGS.steps) for dtype in FLAGS.dtypes}
    first = FLAGS.dtypes[0]
    native_total, towers_total = totals[first]
    print(
        f"grouped_conv: two_towers is {native_total / towers_total:.1f}x faster than "
        f"Conv2D(groups=2) ({first}, {device})"
    )


if __name__ == "__main__":
    app.run(main)
