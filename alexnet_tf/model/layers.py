"""The two layers AlexNet needs that Keras does not ship in the paper's form.

* `LocalResponseNormalization`: the brightness normalisation of section 3.3.
* `GroupedConv2D`: conv2, conv4 and conv5, whose kernels see only the half of the previous
  layer's maps that lived on the same GPU (section 3.2, figure 2).

Both are registered with Keras under the package name "alexnet_tf", so a saved `.keras`
model loads with `keras.saving.load_model(path)` once this module has been imported
(`alexnet_tf.model` imports it).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

# Section 3.3: "k = 2, n = 5, alpha = 1e-4, and beta = 0.75". The window of n = 5 adjacent
# kernel maps is the map itself and `depth_radius` = 2 maps on each side.
LRN_DEPTH_RADIUS = 2
LRN_BIAS = 2.0
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
# The two LRN settings in use for AlexNet: "paper" is section 3.3 as printed (k = 2,
# alpha = 1e-4); "caffe" is what cuda-convnet and Caffe's bvlc_alexnet compute from the same
# written values (local_size 5, alpha 1e-4, k = 1), as Caffe divides alpha by the window
# size n: alpha = 1e-4 / 5 here, k = 1. At initialisation "paper" divides every activation by
# about 2**0.75 = 1.68, "caffe" by about 1: two such layers shrink the signal 2.8x more.
LRN_SETTINGS = {"paper": {"bias": LRN_BIAS, "alpha": LRN_ALPHA},
                "caffe": {"bias": 1.0, "alpha": LRN_ALPHA / (2 * LRN_DEPTH_RADIUS + 1)}}

GROUPED_CONV_IMPLEMENTATIONS = ("auto", "towers", "native")

# What grouped_conv="auto" runs on each kind of device; benchmarks/grouped_conv.py measures it.
# CPU (measured): Keras runs Conv2D(groups=2) as an XLA-compiled cluster on the TF backend,
#   because TF's own CPU kernels cannot take the gradient of a grouped convolution without
#   oneDNN; forward + backward of conv2, conv4 and conv5 took 6x to 9x longer that way than
#   as two towers in float32, 15x in bfloat16 (2 cores, TF 2.21, Keras 3.15).
# GPU (not measured here): Keras compiles the grouped convolution with XLA on GPUs too, and a
#   SavedModel that holds an XLA cluster does not run in every TF Serving build (the GPU
#   server has failed with "Could not find compiler for platform CUDA", tensorflow/serving
#   #2214). Two towers cost two extra copies of small activation maps, run in any runtime,
#   and are how the paper computed these layers. Change this entry if the benchmark on a GPU
#   shows "native" winning by enough to be worth the XLA dependency.
_AUTO_IMPLEMENTATION = {"CPU": "towers", "GPU": "towers"}


@keras.saving.register_keras_serializable(package="alexnet_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Section 3.3's response normalisation across adjacent kernel maps (channels last).

    b[i] = a[i] / (bias + alpha * sum(a[j]**2 for j in i-depth_radius..i+depth_radius))**beta,
    the window clipped at the first and last channel. This is the paper's formula as printed
    and exactly `tf.nn.local_response_normalization`. Caffe's LRN layer divides alpha by the
    window size n, so a Caffe model with alpha=1e-4 (bvlc_alexnet) is a different network:
    its equivalent here is alpha=2e-5.

    TF has an LRN kernel only for float32 (and half on CPU), none for bfloat16, so the layer
    computes in float32 and casts back to its compute dtype: that keeps it working under
    the mixed_float16 and mixed_bfloat16 policies, and the sum of squares of 0..255-scale
    activations would overflow float16 anyway.
    """

    def __init__(
        self,
        depth_radius: int = LRN_DEPTH_RADIUS,
        bias: float = LRN_BIAS,
        alpha: float = LRN_ALPHA,
        beta: float = LRN_BETA,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                f"depth_radius must be a non-negative integer (the paper's n=5 is 2), "
                f"got {depth_radius!r}"
            )
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        outputs = tf.nn.local_response_normalization(
            ops.cast(inputs, "float32"),
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
            }
        )
        return config


def resolve_grouped_conv(implementation: str) -> str:
    """Turn "auto" into the implementation that is fast on this machine's devices."""
    if implementation not in GROUPED_CONV_IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {GROUPED_CONV_IMPLEMENTATIONS}, got {implementation!r}"
        )
    if implementation != "auto":
        return implementation
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return _AUTO_IMPLEMENTATION[device]


@keras.saving.register_keras_serializable(package="alexnet_tf")
class GroupedConv2D(keras.layers.Conv2D):
    """A Conv2D whose `groups` groups each see only their share of the input channels.

    The paper split conv2, conv4 and conv5 across two GPUs, each half connected only to the
    maps on its own GPU (section 3.2). Keras's `Conv2D(groups=2)` holds exactly those
    weights, one kernel of shape (height, width, in_channels // groups, filters), with group
    g's filters in output channels g * filters // groups onwards. This layer keeps that
    kernel and lets you choose how it is computed:

    * "towers": split the input channels and the kernel into `groups` pieces, convolve each
      pair, concatenate: the paper's two GPUs on one device.
    * "native": Keras's own grouped convolution (what `Conv2D(groups=...)` runs).
    * "auto": whichever is fast on this machine (see `_AUTO_IMPLEMENTATION`); resolved when
      the layer is created, so a saved model picks again on the machine that loads it.

    The weights are the same either way, so `set_weights` moves a trained model between
    implementations. The config stores what was asked for ("auto" stays "auto");
    `resolved_implementation` is the one in use, read each time the layer is traced (the
    exporter sets it to "towers" so that no XLA cluster reaches the SavedModel).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        groups: int = 2,
        implementation: str = "auto",
        **kwargs,
    ):
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        self.implementation = implementation
        self.resolved_implementation = resolve_grouped_conv(implementation)

    def convolution_op(self, inputs, kernel):
        if self.resolved_implementation == "native" or self.groups == 1:
            return super().convolution_op(inputs, kernel)
        channel_axis = -1 if self.data_format == "channels_last" else 1
        input_groups = ops.split(inputs, self.groups, axis=channel_axis)
        kernel_groups = ops.split(kernel, self.groups, axis=-1)
        outputs = [
            super(GroupedConv2D, self).convolution_op(group_inputs, group_kernel)
            for group_inputs, group_kernel in zip(input_groups, kernel_groups)
        ]
        return ops.concatenate(outputs, axis=channel_axis)

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config
