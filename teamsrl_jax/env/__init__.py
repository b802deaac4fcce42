"""The instruction-evolution MDP: textual operations (actions), seed instructions, state features,
the reviewer-based reward, and the batched environment that steps many instruction chains at once."""
