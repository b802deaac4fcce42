"""Policy training on the instruction-evolution MDP: ``python -m teamsrl_jax.train_policy``.

``agent`` (policy + value + normaliser as one jitted pure state), ``rollout`` (episodes with the LLM calls of
groups of chains pipelined against the CPU work), ``loop`` (collect, learn, log, checkpoint, resume),
``evaluate`` (held-out comparison with baselines), ``report`` (plot, tables), ``config``.
"""
