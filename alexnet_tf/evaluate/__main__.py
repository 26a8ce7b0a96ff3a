"""`python -m alexnet_tf.evaluate --data_dir=RECORDS --model=RUN/model.keras`: runs `evaluator.main`."""

from absl import app, flags

from alexnet_tf.evaluate import evaluator

__doc__ = evaluator.__doc__  # absl prints the main module's docstring as `--help`'s usage.

flags.adopt_module_key_flags(evaluator)  # `--help` lists the evaluator's flags.

if __name__ == "__main__":
    app.run(evaluator.main)
