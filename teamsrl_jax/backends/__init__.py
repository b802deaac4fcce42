"""LLM backends behind one batched interface (see ``base.Backend``): OpenAI-compatible HTTP, simulated,
and a persistent cache that wraps either."""
