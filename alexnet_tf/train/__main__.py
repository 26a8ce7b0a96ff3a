"""`python -m alexnet_tf.train --flagfile=configs/NAME.cfg`: runs `trainer.main`."""

from absl import app, flags

from alexnet_tf.train import trainer

__doc__ = trainer.__doc__  # absl prints the main module's docstring as `--help`'s usage.

flags.adopt_module_key_flags(trainer)  # `--help` lists the trainer's flags, not just this file's.

if __name__ == "__main__":
    app.run(trainer.main)
