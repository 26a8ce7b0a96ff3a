"""The network: `build_alexnet` and its custom layers; model_info.json; checks on a model file.

`from alexnet_tf.model import build_alexnet` is the entry point README shows. Importing this
package registers the custom layers with Keras, so `keras.saving.load_model` reads our files.
"""

from alexnet_tf.model.alexnet import (INITIALIZATIONS, LRNS, MINIMUM_IMAGE_SIZE, VARIANTS,
                                      build_alexnet)
from alexnet_tf.model.layers import GroupedConv2D, LocalResponseNormalization

__all__ = ["build_alexnet", "GroupedConv2D", "LocalResponseNormalization", "VARIANTS",
           "INITIALIZATIONS", "LRNS", "MINIMUM_IMAGE_SIZE"]
