"""`python -m alexnet_tf.export`: model.keras -> a versioned SavedModel for TensorFlow Serving, with
its signatures, the request limits it promises operators, and the precision it serves in."""
