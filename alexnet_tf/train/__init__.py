"""`python -m alexnet_tf.train`: the trainer and what runs around `fit` (the step, the strategy,
schedules, checkpoints, stops, resume rules, safe writes, fine-tuning, the run's pictures)."""
