"""Training a model on a scene: ray batches, learning-rate schedules and the training loop."""
