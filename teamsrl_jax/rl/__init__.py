"""RL core: policy/value networks (flax.nnx), observation normaliser, GAE, and a jit-compiled TRPO step."""
