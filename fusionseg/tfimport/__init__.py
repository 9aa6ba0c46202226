"""Import of the original DeepScene TensorFlow-1 checkpoints (deepscene-tf.md)."""
