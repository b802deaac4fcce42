"""Llama-family model in flax.nnx, Hugging Face checkpoint I/O and the sharding layer.

    from teamsrl_jax.model import LlamaConfig, Llama, load_pretrained, save_pretrained
    from teamsrl_jax.model.sharding import MeshConfig, make_mesh, LOGICAL_AXIS_RULES, logical_sharding

Modules: config (LlamaConfig, presets), rope, layers (projections, RMSNorm, MLP), attention (masks,
KV cache), llama (the model), sharding (mesh, logical axes), hf_io (checkpoints), gguf_io and gguf_tokenizer
(llama.cpp GGUF files), convert (``python -m teamsrl_jax.model.convert``: GGUF -> HF folder), tokenizer (a tiny
locally trained tokenizer for offline runs).
"""

from teamsrl_jax.model.attention import KVCache
from teamsrl_jax.model.config import PRESETS, LlamaConfig
from teamsrl_jax.model.gguf_io import load_gguf
from teamsrl_jax.model.hf_io import CheckpointError, load_config, load_pretrained, save_pretrained
from teamsrl_jax.model.llama import Llama, init_model

__all__ = ["PRESETS", "CheckpointError", "KVCache", "Llama", "LlamaConfig", "init_model", "load_config",
           "load_gguf", "load_pretrained", "save_pretrained"]
