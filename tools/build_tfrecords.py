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

from absl import flags  # noqa: E402

from alexnet_tf.convert import cli  # noqa: E402

flags.adopt_module_key_flags(cli)  # `--help` lists the converter's flags, not just this file's.

if __name__ == "__main__":
    cli.run()
