"""`python -m alexnet_tf.evaluate`: top-1/top-5 of a model.keras on validation shards, centre or
ten crops, overall and per class."""
