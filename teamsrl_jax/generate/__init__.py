"""The dataset stage: python -m teamsrl_jax.generate."""
