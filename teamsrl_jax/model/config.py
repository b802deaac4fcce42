"""The Llama-family model configuration: one typed dataclass, Hugging Face config conversion, presets.

Covers Llama 1/2/3 (``model_type="llama"``), Mistral (``"mistral"``, optional sliding window) and
Qwen2 (``"qwen2"``: biases on q/k/v but not o). Field names follow Hugging Face so that
``from_hf`` / ``to_hf_dict`` are near-identity maps.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

MODEL_TYPES = ("llama", "mistral", "qwen2")
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
ROPE_TYPES = ("default", "linear", "llama3")
REMAT_POLICIES = ("none", "full", "dots")
ATTENTION_IMPLS = ("einsum", "jax")


@dataclasses.dataclass
class LlamaConfig:
    vocab_size: int
    """Rows of the token embedding (and columns of the LM head)."""
    hidden_size: int
    """Width D of the residual stream."""
    intermediate_size: int
    """Width F of the SwiGLU MLP."""
    num_hidden_layers: int
    """Number of decoder layers."""
    num_attention_heads: int
    """Query heads N."""
    num_key_value_heads: int
    """Key/value heads K (grouped-query attention when K < N; N must be a multiple of K)."""
    head_dim: int | None = None
    """Per-head width H; None means hidden_size // num_attention_heads."""
    max_position_embeddings: int = 2048
    """Longest context the model was trained for (informational; rope is computed for any position)."""
    rms_norm_eps: float = 1e-6
    """Epsilon inside RMSNorm's rsqrt."""
    rope_theta: float = 10000.0
    """Rotary base wavelength."""
    rope_scaling: dict | None = None
    """HF rope scaling dict: {"rope_type": "linear", "factor": f} or {"rope_type": "llama3", "factor",
    "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}; None = plain rope."""
    tie_word_embeddings: bool = False
    """LM head shares the token embedding matrix."""
    attention_bias: bool = False
    """Biases on the q/k/v projections (and on o for llama; Qwen2 has none on o)."""
    model_type: str = "llama"
    """"llama" | "mistral" | "qwen2": picks the HF architecture name and the bias layout."""
    sliding_window: int | None = None
    """Mistral sliding-window attention: a query sees at most this many most recent tokens."""
    bos_token_id: int | None = None
    """Beginning-of-sequence token id (written to config.json / generation_config.json)."""
    eos_token_id: int | list[int] | None = None
    """End-of-sequence token id, or a list of them (Llama-3 instruct)."""
    pad_token_id: int | None = None
    """Padding token id, if any."""
    dtype: str = "float32"
    """Compute dtype of activations and matmuls ("bfloat16" for mixed precision); logits are always fp32."""
    param_dtype: str = "float32"
    """Dtype of the stored (master) weights."""
    remat: str = "none"
    """Per-decoder-layer rematerialisation: "none", "full" (save nothing) or "dots" (save matmul outputs)."""
    attention_impl: str = "einsum"
    """"einsum" (our masked fp32-softmax attention) or "jax" (jax.nn.dot_product_attention, same mask)."""

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type={self.model_type!r}: supported are {MODEL_TYPES}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}: supported are {REMAT_POLICIES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r}: supported are {ATTENTION_IMPLS}")
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type={self.rope_type!r}: supported are {ROPE_TYPES}")

    def __hash__(self):  # modules keep the config as static data, which jit hashes
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True))

    # -- derived ------------------------------------------------------------------------------------
    @property
    def head_size(self) -> int:
        """The effective per-head width H."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope_type(self) -> str:
        return (self.rope_scaling or {}).get("rope_type", (self.rope_scaling or {}).get("type", "default"))

    @property
    def o_bias(self) -> bool:
        """Llama's attention_bias also puts a bias on o_proj; Qwen2's q/k/v biases stop there."""
        return self.attention_bias and self.model_type != "qwen2"

    def replace(self, **changes) -> LlamaConfig:
        return dataclasses.replace(self, **changes)

    # -- size and cost ------------------------------------------------------------------------------
    def num_params(self) -> int:
        """Exact parameter count (the embedding counted once when tied)."""
        D, F, H = self.hidden_size, self.intermediate_size, self.head_size
        N, K = self.num_attention_heads, self.num_key_value_heads
        attn = D * N * H + 2 * D * K * H + N * H * D
        if self.attention_bias:
            attn += N * H + 2 * K * H + (D if self.o_bias else 0)
        layer = attn + 3 * D * F + 2 * D
        head = 0 if self.tie_word_embeddings else D * self.vocab_size
        return self.vocab_size * D + self.num_hidden_layers * layer + D + head

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), PaLM-style (Chowdhery et al. 2022, App. B):
        6·N + 12·layers·(heads·head_dim)·seq_len, where N counts every weight that enters a matmul,
        i.e. all parameters except the input-embedding lookup table (the LM head counts even when
        tied), and the second term is the attention score and value matmuls (not halved for the
        causal mask). heads·head_dim equals hidden_size for the usual head_dim."""
        matmul_params = self.num_params() - self.vocab_size * self.hidden_size
        if self.tie_word_embeddings:
            matmul_params += self.vocab_size * self.hidden_size
        attention = 12 * self.num_hidden_layers * self.num_attention_heads * self.head_size * seq_len
        return 6.0 * matmul_params + attention

    # -- presets ------------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides) -> LlamaConfig:
        """A named configuration (see PRESETS), with optional field overrides (e.g. vocab_size from
        a tokenizer for "tiny")."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # -- Hugging Face -------------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, hf_config: Any, **overrides) -> LlamaConfig:
        """From a HF config dict or ``transformers.PretrainedConfig``. Reads both the transformers<5
        keys (``rope_theta``, ``rope_scaling``) and the 5.x ``rope_parameters`` dict."""
        d = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
        model_type = d.get("model_type", "llama")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"unsupported model_type {model_type!r}: supported are {MODEL_TYPES}")
        rope = dict(d.get("rope_parameters") or {})
        rope_theta = rope.pop("rope_theta", d.get("rope_theta", 10000.0))
        if rope.pop("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("partial_rotary_factor != 1 is not supported")
        scaling = rope or dict(d.get("rope_scaling") or {})
        scaling.pop("rope_theta", None)
        if "type" in scaling:  # transformers<4.45 spelling
            scaling.setdefault("rope_type", scaling.pop("type"))
        if scaling.get("rope_type", "default") == "default":
            scaling = {}
        if d.get("mlp_bias"):
            raise ValueError("mlp_bias=True is not supported")
        if model_type == "qwen2" and d.get("use_sliding_window"):
            raise ValueError("Qwen2 use_sliding_window=True (per-layer windows) is not supported")
        heads = d["num_attention_heads"]
        fields = dict(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"], num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=heads, num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim"),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=float(rope_theta),
            rope_scaling=scaling or None, tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=True if model_type == "qwen2" else bool(d.get("attention_bias", False)),
            model_type=model_type,
            sliding_window=d.get("sliding_window") if model_type == "mistral" else None,
            bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
            pad_token_id=d.get("pad_token_id"),
        )
        if fields["head_dim"] == d["hidden_size"] // heads:
            fields["head_dim"] = None
        return cls(**{**fields, **overrides})

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict:
        """A config.json dict that transformers 4.x and 5.x (and hence vLLM) load unchanged: it carries
        both the 5.x ``rope_parameters`` and the older ``rope_theta``/``rope_scaling`` keys."""
        rope_parameters = {"rope_type": "default", "rope_theta": self.rope_theta, **(self.rope_scaling or {})}
        d = dict(
            architectures=[ARCHITECTURES[self.model_type]], model_type=self.model_type,
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_size, hidden_act="silu",
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta, rope_scaling=dict(self.rope_scaling) if self.rope_scaling else None,
            rope_parameters=rope_parameters, tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
            torch_dtype=torch_dtype, dtype=torch_dtype, use_cache=True, initializer_range=0.02,
        )
        if self.model_type == "qwen2":
            d.update(use_sliding_window=False, sliding_window=None, max_window_layers=self.num_hidden_layers)
        else:
            d.update(attention_bias=self.attention_bias, mlp_bias=False)
        if self.model_type == "mistral":
            d["sliding_window"] = self.sliding_window
        return d


# Presets are data. Sizes follow the public configs of the named models.
PRESETS: dict[str, dict] = {
    # CI-sized: a couple of layers; set vocab_size from the tokenizer (train_tiny_tokenizer).
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                 rms_norm_eps=1e-5, tie_word_embeddings=True),
    # Llama-3.2-1B-like: 1.24B parameters with tied embeddings.
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
               rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
               rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
               bos_token_id=128000, eos_token_id=128001, dtype="bfloat16"),
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                      rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, dtype="bfloat16"),
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                      rms_norm_eps=1e-5, rope_theta=500000.0, bos_token_id=128000, eos_token_id=128001,
                      dtype="bfloat16"),
}
