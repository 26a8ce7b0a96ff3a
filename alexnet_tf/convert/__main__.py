"""`python -m alexnet_tf.convert` is the same as tools/build_tfrecords.py."""

from alexnet_tf.convert import cli

if __name__ == "__main__":
    cli.run()
