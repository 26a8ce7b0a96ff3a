#!/usr/bin/env python3
"""Raw images (your class folders; ImageNet extracted, Kaggle CLS-LOC, or the original tars) to
verified TFRecord shards and labels.txt.

    python tools/build_tfrecords.py --input_dir=RAW --output_dir=OUT [--num_workers=N]
    python tools/build_tfrecords.py --output_dir=OUT --verify

The work lives in alexnet_tf.convert so tests can import it; this file only starts it.
"""

import os
import sys

try:
    import alexnet_tf  # noqa: F401
except ImportError:  # running from a checkout that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.convert import cli

if __name__ == "__main__":
    cli.run()
