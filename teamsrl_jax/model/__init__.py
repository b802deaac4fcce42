"""Llama-family model in flax.nnx, Hugging Face checkpoint I/O and the sharding layer.

    from teamsrl_jax.model import LlamaConfig, Llama, load_pretrained, save_pretrained
    from teamsrl_jax.model.sharding import MeshConfig, make_mesh, LOGICAL_AXIS_RULES, logical_sharding
"""

from teamsrl_jax.model.attention import KVCache
from teamsrl_jax.model.config import PRESETS, LlamaConfig
from teamsrl_jax.model.llama import Llama

__all__ = ["PRESETS", "KVCache", "Llama", "LlamaConfig"]
