"""`python -m alexnet_tf.export --model=RUN/model.keras --export_base=DIR`: runs `exporter.run`."""

from alexnet_tf.export import exporter

if __name__ == "__main__":
    exporter.run()
