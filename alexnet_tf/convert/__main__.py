"""`python -m alexnet_tf.convert` is the same as tools/build_tfrecords.py."""

from absl import flags

from alexnet_tf.convert import cli

__doc__ = cli.__doc__  # absl prints the main module's docstring as `--help`'s usage.
flags.adopt_module_key_flags(cli)  # `--help` lists the converter's flags, not just this file's.

if __name__ == "__main__":
    cli.run()
