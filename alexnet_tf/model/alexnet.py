"""AlexNet as a Keras functional model: the 2012 paper's network, or its single-tower form.

Reference:
  - [ImageNet Classification with Deep Convolutional Neural Networks](
    https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks)
    (Krizhevsky, Sutskever and Hinton, NIPS 2012): variant="paper".
  - [One weird trick for parallelizing convolutional neural networks](
    https://arxiv.org/abs/1404.5997) (Krizhevsky, 2014), in the layout of torchvision's
    `alexnet`: variant="single".

Importing this module imports `alexnet_tf.model.layers`, which registers the custom layers with
Keras: after `import alexnet_tf.model` (or `import alexnet_tf.model.layers`),
`keras.saving.load_model("model.keras")` works.
"""

from __future__ import annotations

import keras

from alexnet_tf.model.layers import (
    GROUPED_CONV_IMPLEMENTATIONS,
    LRN_SETTINGS,
    GroupedConv2D,
    LocalResponseNormalization,
)

VARIANTS = ("paper", "single")
INITIALIZATIONS = ("paper", "caffe", "he")
LRNS = tuple(LRN_SETTINGS)

# The smallest input whose last max-pool still sees a 3x3 map. "paper": conv1 (11x11,
# stride 4, no padding) must give 15x15 so that pool1 -> 7, pool2 -> 3, pool5 -> 1;
# "single" pads conv1 by 2 pixels, so 4 fewer input pixels reach the same 15x15.
MINIMUM_IMAGE_SIZE = {"paper": 67, "single": 63}

# Section 5: "We initialized the weights in each layer from a zero-mean Gaussian distribution
# with standard deviation 0.01."
PAPER_WEIGHT_STDDEV = 0.01
# Section 5: biases are 1 in "the second, fourth, and fifth convolutional layers, as well as
# in the fully-connected hidden layers" (so that ReLUs start with positive inputs), 0 elsewhere.
PAPER_BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
# Caffe's bvlc_alexnet (models/bvlc_alexnet/train_val.prototxt), the public replication:
# N(0, 0.005) in fc6 and fc7, N(0, 0.01) elsewhere, and 0.1 where the paper has biases of 1
# ("found necessary for training, as initialization to 1 gave flat loss", its readme).
CAFFE_WEIGHT_STDDEV = {"fc6": 0.005, "fc7": 0.005}
CAFFE_BIAS = 0.1
# Standard deviation of mean-subtracted ImageNet pixels on the 0..255 scale (torchvision's
# normalisation: 0.229, 0.224, 0.225 times 255). He-normal keeps the scale of a layer's
# input, and assumes that scale is 1: initialization="he" divides the images by this first.
PIXEL_STDDEV = 57.6
# The per-channel affine first layer of models whose weights expect other pixels.
INPUT_NORMALIZATION_LAYER = "input_normalization"
InputNormalization = tuple[tuple[float, float, float], tuple[float, float, float]]


def build_alexnet(
    num_classes: int = 1000,
    variant: str = "paper",
    image_size: int = 227,
    dropout: float = 0.5,
    initialization: str = "paper",
    weight_decay: float = 0.0,
    grouped_conv: str = "auto",
    input_normalization: InputNormalization | None = None,
    lrn: str = "paper",
) -> keras.Model:
    """AlexNet from mean-subtracted 0..255 RGB images to class logits.

    Args:
      num_classes: width of the last layer, fc8.
      variant: "paper" is the 2012 network as trained on two GPUs (section 3, figure 2):
        LRN after conv1 and conv2, conv2/conv4/conv5 in two groups; 60,965,224 parameters
        for 1000 classes at 227x227, the count of Caffe's bvlc_alexnet. "single" is the
        one-tower network of "One weird trick" as torchvision builds it (64/192/384/256/256
        filters, no LRN, no groups, an adaptive average pool to 6x6); 61,100,840 parameters.
      image_size: height and width of the square input; at least 67 ("paper") or 63
        ("single"). The paper says 224, but conv1's 55x55 maps (figure 2) need 227:
        (227 - 11) / 4 + 1 = 55. Other sizes change fc6's input in "paper"; "single" pools
        any size to 6x6.
      dropout: rate of the two dropout layers around fc6/fc7 (section 4.2: 0.5).
      initialization: "paper" draws every kernel from N(0, 0.01) and sets the biases of
        conv2, conv4, conv5, fc6 and fc7 to 1, the rest to 0 (section 5; "single" gets the
        same rule for the same layer names). From scratch this sits at chance for a long
        time: eight layers of N(0, 0.01) weights shrink the image's signal while the biases
        of 1 pass through, so the first logits barely depend on the image (at 227x227 they
        vary by 0.005 between images, against an rms of 0.86), and short demo runs on a CPU
        show nothing (a 4-class toy set stayed at chance for 6 epochs). "he" uses He-normal
        kernels and zero biases, and divides the images by PIXEL_STDDEV in a "pixel_scale"
        layer, as He's derivation assumes unit-scale inputs (the model's input stays 0..255).
        It learned the toy set to 82-89% in 4 epochs with SGD at learning rate 0.001; at the
        paper's 0.01 "paper" learned too but "single" diverged (no batch norm to absorb a
        large step), so start demo runs at 0.001. "caffe" is bvlc_alexnet's: as "paper" but
        N(0, 0.005) in fc6/fc7 and biases 0.1 instead of 1 (see benchmarks/README.md, issue
        19, for both on real photos).
      weight_decay: coefficient l of an L2 penalty l * sum(w**2) on every conv and dense
        kernel (not the biases). The paper's update rule (section 5) uses 0.0005 * w, the
        gradient of 0.00025 * sum(w**2), so the paper's value is 2.5e-4.
      grouped_conv: how "paper" computes its grouped layers; "towers", "native" or "auto"
        (see `alexnet_tf.model.layers.GroupedConv2D`). The weights are the same either way.
      input_normalization: (scale, offset), three numbers each: a first layer
        "input_normalization" computing images * scale + offset per channel, for weights
        trained on other pixels (torchvision's mean/std, see `alexnet_tf.import_weights`).
        It runs before conv1's zero padding, so the borders are zero in the weights' own
        pixel space. Not with initialization="he", which has its own input scale.
      lrn: "paper" (k=2, alpha=1e-4, as printed in section 3.3) or "caffe" (k=1, alpha=1e-4/5:
        cuda-convnet's and Caffe's arithmetic for the same written values, see
        `alexnet_tf.model.layers.LRN_SETTINGS`). "single" has no LRN and ignores it.

    Returns:
      A functional model with input "images" [batch, image_size, image_size, 3] float32 and
      output [batch, num_classes] float32 logits, float32 even under a mixed global policy.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if initialization not in INITIALIZATIONS:
        raise ValueError(f"initialization must be one of {INITIALIZATIONS}, got {initialization!r}")
    if lrn not in LRNS:
        raise ValueError(f"lrn must be one of {LRNS}, got {lrn!r}")
    if grouped_conv not in GROUPED_CONV_IMPLEMENTATIONS:
        raise ValueError(
            f"grouped_conv must be one of {GROUPED_CONV_IMPLEMENTATIONS}, got {grouped_conv!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    minimum = MINIMUM_IMAGE_SIZE[variant]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < minimum:
        raise ValueError(
            f"image_size must be an integer of at least {minimum} for variant={variant!r} "
            f"(smaller inputs vanish before the last max-pool), got {image_size!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if weight_decay < 0.0:
        raise ValueError(f"weight_decay must be 0 or more, got {weight_decay!r}")
    if input_normalization is not None:
        if initialization == "he":
            raise ValueError("input_normalization and initialization='he' both scale the input")
        input_normalization = tuple(tuple(float(v) for v in part) for part in input_normalization)
        if len(input_normalization) != 2 or any(len(part) != 3 for part in input_normalization):
            raise ValueError("input_normalization must be (scale, offset), 3 values each")

    weights = _WeightSettings(initialization, weight_decay, input_normalization)
    if variant == "paper":
        return _paper_alexnet(num_classes, image_size, dropout, weights, grouped_conv, lrn)
    return _single_tower_alexnet(num_classes, image_size, dropout, weights)


class _WeightSettings:
    """Initializers and regularizer for one layer, so the builders read like the paper."""

    def __init__(self, initialization: str, weight_decay: float, input_normalization=None):
        self.initialization = initialization
        self.weight_decay = weight_decay
        self.input_normalization = input_normalization

    def scale_input(self, images):
        """He's derivation assumes unit-scale inputs; the paper fed raw 0..255 differences.

        Measured: He-normal on unscaled pixels starts with logits of rms 28 ("paper") to 250
        ("single") at 227x227, and on a 4-class toy set at 67x67 (SGD at 0.01, momentum 0.9,
        batch 32) its loss went to 1e22 or NaN in the first epoch; scaled, "paper" learned.
        """
        if self.initialization == "he":
            return keras.layers.Rescaling(1.0 / PIXEL_STDDEV, name="pixel_scale")(images)
        if self.input_normalization is not None:
            scale, offset = self.input_normalization
            return keras.layers.Rescaling(
                list(scale), list(offset), name=INPUT_NORMALIZATION_LAYER
            )(images)
        return images

    def __call__(self, layer_name: str) -> dict:
        if self.initialization in ("paper", "caffe"):
            caffe = self.initialization == "caffe"
            stddev = CAFFE_WEIGHT_STDDEV.get(layer_name, PAPER_WEIGHT_STDDEV) if caffe else (
                PAPER_WEIGHT_STDDEV)
            kernel_initializer = keras.initializers.RandomNormal(0.0, stddev)
            one = CAFFE_BIAS if caffe else 1.0
            bias = one if layer_name in PAPER_BIAS_ONE_LAYERS else 0.0
        else:
            kernel_initializer = keras.initializers.HeNormal()
            bias = 0.0
        regularizer = keras.regularizers.L2(self.weight_decay) if self.weight_decay else None
        return dict(
            name=layer_name,
            kernel_initializer=kernel_initializer,
            bias_initializer=keras.initializers.Constant(bias),
            kernel_regularizer=regularizer,
        )


def _paper_alexnet(
    num_classes: int,
    image_size: int,
    dropout: float,
    weights: _WeightSettings,
    grouped_conv: str,
    lrn: str = "paper",
) -> keras.Model:
    """Section 3.5 and figure 2, one GPU's half of a grouped layer being one group."""
    images = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")

    x = weights.scale_input(images)
    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", **weights("conv1"))(x)
    x = LocalResponseNormalization(name="lrn1", **LRN_SETTINGS[lrn])(x)
    # Section 3.4: overlapping pooling, z = 3, s = 2.
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    x = GroupedConv2D(
        256, 5, groups=2, padding="same", activation="relu",
        implementation=grouped_conv, **weights("conv2"),
    )(x)
    x = LocalResponseNormalization(name="lrn2", **LRN_SETTINGS[lrn])(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)

    # conv3 is the one convolution that reads both GPUs' maps.
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", **weights("conv3"))(x)
    x = GroupedConv2D(
        384, 3, groups=2, padding="same", activation="relu",
        implementation=grouped_conv, **weights("conv4"),
    )(x)
    x = GroupedConv2D(
        256, 3, groups=2, padding="same", activation="relu",
        implementation=grouped_conv, **weights("conv5"),
    )(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)

    x = keras.layers.Flatten(name="flatten")(x)
    # Section 4.2: dropout on the outputs of the first two fully-connected layers.
    x = keras.layers.Dense(4096, activation="relu", **weights("fc6"))(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Dense(4096, activation="relu", **weights("fc7"))(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", **weights("fc8"))(x)
    return keras.Model(images, logits, name="alexnet")


def _single_tower_alexnet(
    num_classes: int,
    image_size: int,
    dropout: float,
    weights: _WeightSettings,
) -> keras.Model:
    """torchvision's `alexnet`: features, adaptive average pool to 6x6, classifier."""
    images = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")

    x = weights.scale_input(images)
    x = keras.layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = keras.layers.Conv2D(64, 11, strides=4, activation="relu", **weights("conv1"))(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = keras.layers.Conv2D(192, 5, padding="same", activation="relu", **weights("conv2"))(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", **weights("conv3"))(x)
    x = keras.layers.Conv2D(256, 3, padding="same", activation="relu", **weights("conv4"))(x)
    x = keras.layers.Conv2D(256, 3, padding="same", activation="relu", **weights("conv5"))(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    # torchvision pools to 6x6 whatever the input size; at 224..227 the map already is 6x6
    # and the pool would do nothing, so the layer is only there when it changes something.
    if tuple(x.shape[1:3]) == (1, 1):
        # Averaging one value into each of 6x6 cells repeats it; Keras 3.15's adaptive pool
        # fails on a 1x1 map inside tf.function (inputs of 63 to 94 pixels give one).
        x = keras.layers.UpSampling2D(6, name="avgpool")(x)
    elif tuple(x.shape[1:3]) != (6, 6):
        x = keras.layers.AdaptiveAveragePooling2D(6, name="avgpool")(x)

    x = keras.layers.Flatten(name="flatten")(x)
    # torchvision's classifier puts dropout before fc6 and fc7, not after.
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Dense(4096, activation="relu", **weights("fc6"))(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    x = keras.layers.Dense(4096, activation="relu", **weights("fc7"))(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", **weights("fc8"))(x)
    return keras.Model(images, logits, name="alexnet_single")
