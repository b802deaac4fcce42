"""teamsrl-jax: TeaMs-RL in JAX.

Stages, in pipeline order: ``rl`` (policy networks, TRPO) -> ``env`` and ``backends`` (the
instruction-evolution MDP and its LLMs) -> ``model`` and ``sft`` (Llama-family model, sharded SFT).
"""

__version__ = "0.1.0"
