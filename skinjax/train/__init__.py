"""Training: state, pure steps, data-parallel wrappers, evaluation and checkpoints."""
