"""`python -m alexnet_tf.export --model=RUN/model.keras --export_base=DIR`: runs `exporter.main`."""

from absl import app, flags

from alexnet_tf.export import exporter

__doc__ = exporter.__doc__  # absl prints the main module's docstring as `--help`'s usage.

if __name__ == "__main__":
    exporter.define_flags()
    flags.adopt_module_key_flags(exporter)  # `--help` lists the exporter's flags.
    app.run(exporter.main)
