"""Local inference for our Llama-family model: a batched KV-cache engine with continuous batching.

    from teamsrl_jax.inference import Engine, Request
    engine = Engine.from_pretrained(PATH)          # a Hugging Face folder or a .gguf file
    results = engine.generate([Request(engine.chat_ids(p), max_tokens=64) for p in prompts])

Modules: sampling (greedy / temperature / top-k / top-p / logprobs inside jit), engine (slots, buckets,
prefill and decode programs, stop conditions), feature_major (the engine's forward pass: the model's, with the
weights stored [out, in] and the activations [features, tokens], which decodes faster on a CPU). The ``jax`` LLM
backend (``backends.jax_backend``) serves the instructor, reviewer and responder roles with it.
"""

from teamsrl_jax.inference.engine import Engine, EngineStats, Request, Result, bucket, prompt_bucket, shared_prefix

__all__ = ["Engine", "EngineStats", "Request", "Result", "bucket", "prompt_bucket", "shared_prefix"]
