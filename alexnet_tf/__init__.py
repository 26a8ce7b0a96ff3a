"""alexnet_tf: the 2012 AlexNet, from the raw ImageNet download to TensorFlow Serving.

Importing the package is cheap on purpose (no TensorFlow import here), so the converter's
worker processes and the command-line tools start fast.
"""

__version__ = "0.1.0"
