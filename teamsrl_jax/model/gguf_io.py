"""GGUF checkpoints (llama.cpp's single-file format) -> our ``Llama``, its config and its tokenizer.

A GGUF holds metadata (``{arch}.block_count``, ``tokenizer.ggml.tokens``, ...) and named, possibly
quantised tensors. Architectures: ``llama`` (Llama 1/2/3, Mistral, SmolLM: llama.cpp converts all of
them to ``llama``) and ``qwen2``. Tensors are dequantised with the ``gguf`` package (ggml's own NumPy
decoders) one at a time, renamed to Hugging Face names and handed to ``hf_io.build_model``, which
streams them into (optionally mesh-sharded) arrays exactly as a safetensors checkpoint is loaded.

Layout: GGUF lists a tensor's dims fastest-first (ne0 = the input width), so the NumPy array the reader
gives is already HF's [out, in]. llama.cpp's converter reorders the rows of the llama q and k
projections (and their biases) from HF's rotate-half rope layout to interleaved pairs
(``convert_hf_to_gguf.py``, ``LlamaModel.permute``: per head, rows (2, H/2) -> (H/2, 2)); loading undoes
it. Qwen2 is written unpermuted (llama.cpp runs it with NeoX-style rope, which is HF's layout).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from teamsrl_jax.model.config import LlamaConfig
from teamsrl_jax.model.hf_io import CheckpointError, _few, build_model, check_tokenizer_fits, hf_tensor_shapes
from teamsrl_jax.model.rope import inverse_frequencies

ARCHITECTURES = ("llama", "qwen2")
# HF module -> GGUF name. Layer tensors are "model.layers.{i}.{module}.{weight|bias}" <-> "blk.{i}.{short}.{...}".
_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
          "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down"}
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")
ROPE_FREQS = "rope_freqs.weight"  # Llama-3.1 rope scaling, precomputed per frequency: read into the config


# -- files and metadata -----------------------------------------------------------------------------
def find_gguf(path) -> Path | None:
    """The GGUF file ``path`` names: ``path`` itself when it is a file (or a missing ``*.gguf``), the one
    ``*.gguf`` in a folder without config.json; None for a Hugging Face folder or a folder with no GGUF."""
    path = Path(path)
    if path.is_file() or (path.suffix == ".gguf" and not path.exists()):
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    files = sorted(path.glob("*.gguf"))
    if len(files) > 1:
        raise CheckpointError(f"{path}: {len(files)} .gguf files ({_few([f.name for f in files])}); "
                              f"pass the path of the one to load")
    return files[0] if files else None


@functools.cache
def _reader_class():
    """``gguf.GGUFReader`` reading through a plain ndarray view of its memory map: the reader slices its map once
    per metadata item (hundreds of thousands for a 50K-token vocabulary), and ``np.memmap``'s Python-level
    ``__getitem__``/``__array_finalize__`` made that most of a load (4 of 7 s for SmolLM2). Same bytes, still mapped."""
    import gguf

    class Reader(gguf.GGUFReader):
        @property
        def data(self):
            return self._data

        @data.setter
        def data(self, value):
            self._data = np.asarray(value) if isinstance(value, np.memmap) else value

    return Reader


def open_gguf(file: Path):
    """A ``gguf.GGUFReader`` on ``file``; anything unreadable (missing, empty, truncated, not a GGUF) is one
    CheckpointError line."""
    if not file.is_file():
        raise CheckpointError(f"{file}: no such file")
    try:
        return _reader_class()(file)
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError, KeyError, IndexError, ... on bad bytes
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{file}: not a readable GGUF file (truncated or corrupt?): {detail}") from None


def read_metadata(reader, file: Path) -> dict[str, Any]:
    """Every metadata key -> its Python value (str, int, float, bool, or a list of them)."""
    from gguf import GGUFValueType

    def value(field):
        kind = field.types[-1]  # the element type of an array
        if kind == GGUFValueType.STRING:
            items = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        elif kind == GGUFValueType.BOOL:
            items = [bool(field.parts[i][0]) for i in field.data]
        elif kind == GGUFValueType.FLOAT32:  # the shortest decimal of the float32: 1e-05, not 9.99999974e-06
            items = [float(str(field.parts[i][0])) for i in field.data]
        else:
            items = [field.parts[i][0].item() for i in field.data]
        return items if field.types[0] == GGUFValueType.ARRAY else items[0]

    try:
        return {name: value(field) for name, field in reader.fields.items()}
    except (ValueError, IndexError) as e:
        raise CheckpointError(f"{file}: unreadable metadata: {e}") from None


# -- config -----------------------------------------------------------------------------------------
def config_from_gguf(meta: dict, tensors: dict, file: Path, **overrides) -> LlamaConfig:
    """The LlamaConfig a GGUF describes (``tensors``: name -> ``ReaderTensor``; ``overrides`` replace fields).

    The vocabulary size is the embedding's row count; the embeddings are tied when there is no
    ``output.weight``; bos/eos/pad come from ``tokenizer.ggml.*_token_id`` (eos also lists the
    end-of-turn token when the file names a different one)."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{file}: unsupported architecture {arch!r}; supported: {', '.join(ARCHITECTURES)}")

    def key(name, default=KeyError):
        if f"{arch}.{name}" in meta:
            return meta[f"{arch}.{name}"]
        if default is KeyError:
            raise CheckpointError(f"{file}: metadata key {arch}.{name} is missing")
        return default

    if key("expert_count", 0):
        raise CheckpointError(f"{file}: mixture-of-experts models ({arch}.expert_count={key('expert_count')}) "
                              f"are not supported")
    hidden, heads = key("embedding_length"), key("attention.head_count")
    kv_heads = key("attention.head_count_kv", heads)
    if isinstance(heads, list) or isinstance(kv_heads, list):
        raise CheckpointError(f"{file}: per-layer head counts are not supported")
    head_dim = key("attention.key_length", None) or key("rope.dimension_count", None) or hidden // heads
    if key("rope.dimension_count", head_dim) != head_dim or key("attention.value_length", head_dim) != head_dim:
        raise CheckpointError(f"{file}: rope over part of a head, or values wider than keys, is not supported")
    if "token_embd.weight" not in tensors:
        raise CheckpointError(f"{file}: tensor token_embd.weight is missing")
    vocab_size = int(tensors["token_embd.weight"].shape[1])  # GGUF dims are [D, V]
    if key("vocab_size", vocab_size) != vocab_size:
        raise CheckpointError(f"{file}: {arch}.vocab_size={key('vocab_size')} but token_embd.weight has "
                              f"{vocab_size} rows")
    if len(tokens := meta.get("tokenizer.ggml.tokens", ())) > vocab_size:
        raise CheckpointError(f"{file}: the vocabulary has {len(tokens)} tokens but the model's embedding has "
                              f"only {vocab_size} rows")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    eot = meta.get("tokenizer.ggml.eot_token_id")
    fields = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count"), num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=None if head_dim == hidden // heads else head_dim,
        max_position_embeddings=key("context_length", 2048), rms_norm_eps=key("attention.layer_norm_rms_epsilon"),
        rope_theta=float(key("rope.freq_base", 10000.0)),
        rope_scaling=_rope_scaling(key, tensors, head_dim, file),
        tie_word_embeddings="output.weight" not in tensors,
        attention_bias=arch == "qwen2" or "blk.0.attn_q.bias" in tensors, model_type=arch,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=[eos, eot] if eos is not None and eot is not None and eot != eos else eos,
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
    )
    try:
        return LlamaConfig(**{**fields, **overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}") from None


def _rope_scaling(key, tensors: dict, head_dim: int, file: Path) -> dict | None:
    """HF rope scaling from ``{arch}.rope.scaling.*`` (none, linear) or from a ``rope_freqs.weight`` tensor,
    which llama.cpp writes for Llama-3.1 scaling: per frequency the divisor of the plain inverse frequency.
    That tensor is matched against HF's llama3 rule with Meta's constants (low/high frequency factors 1 and 4,
    original context 8192 unless the file says otherwise); anything else is refused."""
    scaling_type = key("rope.scaling.type", "none")
    if ROPE_FREQS in tensors:
        freqs = np.asarray(tensors[ROPE_FREQS].data, np.float64).reshape(-1)
        theta = float(key("rope.freq_base", 10000.0))
        scaling = {"rope_type": "llama3", "factor": float(freqs.max()), "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0,
                   "original_max_position_embeddings": int(key("rope.scaling.original_context_length", 8192))}
        plain = inverse_frequencies(head_dim, theta)
        if freqs.shape != plain.shape or not np.allclose(inverse_frequencies(head_dim, theta, scaling),
                                                         plain / freqs, rtol=1e-4):
            raise CheckpointError(f"{file}: {ROPE_FREQS} is not Llama-3.1 rope scaling; not supported")
        return scaling
    if scaling_type == "none":
        return None
    if scaling_type == "linear":
        return {"rope_type": "linear", "factor": float(key("rope.scaling.factor"))}
    raise CheckpointError(f"{file}: rope scaling {scaling_type!r} is not supported (none, linear, llama3)")


# -- tensors ----------------------------------------------------------------------------------------
def gguf_name(hf: str) -> str:
    """HF tensor name -> its GGUF name, e.g. model.layers.3.mlp.up_proj.weight -> blk.3.ffn_up.weight."""
    if match := _HF_LAYER.fullmatch(hf):
        return f"blk.{match[1]}.{_LAYER[match[2]]}.{match[3]}"
    module, leaf = hf.rsplit(".", 1)
    return f"{_GLOBAL[module]}.{leaf}"


def unpermute_qk(array: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's ``LlamaModel.permute``: per head, rows in interleaved-pair order (H/2, 2) back
    to HF's rotate-half order (2, H/2). ``array`` is [heads*H, ...] (a weight or a bias)."""
    rows = array.shape[0]
    return array.reshape(heads, rows // heads // 2, 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)


def _check_tensors(tensors: dict, names: dict[str, str], file: Path) -> None:
    """Names present and expected, and every tensor type decodable by ``gguf.quants.dequantize``."""
    from gguf.quants import dequantize

    present = set(tensors) - {ROPE_FREQS}
    if missing := sorted(set(names) - present):
        raise CheckpointError(f"{file}: {len(missing)} missing tensor(s): {_few(missing)}")
    if unexpected := sorted(present - set(names)):
        raise CheckpointError(f"{file}: {len(unexpected)} unexpected tensor(s): {_few(unexpected)}")
    for t in {t.tensor_type: t for t in tensors.values()}.values():  # probe one row of each type
        try:
            dequantize(t.data[:1], t.tensor_type)
        except Exception:  # noqa: BLE001 - NotImplementedError for undecodable types, ValueError for odd shapes
            raise CheckpointError(f"{file}: tensor {t.name} has type {t.tensor_type.name}, which the gguf package "
                                  f"cannot dequantise") from None


def _hf_tensors(tensors: dict, names: dict[str, str], config: LlamaConfig, file: Path):
    """(HF name, float32 array in HF layout, file name) per tensor, dequantised one at a time."""
    from gguf.quants import dequantize

    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    for name, hf in names.items():
        t = tensors[name]
        array = dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
        short = name.split(".")[-2]  # blk.3.attn_q.weight -> attn_q
        if config.model_type == "llama" and short in heads:
            array = unpermute_qk(array, heads[short])
        yield hf, array, file.name


# -- loading ----------------------------------------------------------------------------------------
def load_gguf(path, *, mesh=None, dtype=None, param_dtype=None, config_overrides=None, progress: bool = False):
    """Loads a GGUF file, or the one ``*.gguf`` in a folder. Same contract as ``hf_io.load_pretrained``:
    returns (model, config, tokenizer) with the tokenizer built from the file's metadata (None when it has
    none); ``mesh`` shards the params by their logical axes; ``dtype``/``param_dtype``/``config_overrides``
    replace config fields. ``progress`` shows a bar while the tensors are dequantised."""
    from teamsrl_jax.model.gguf_tokenizer import tokenizer_from_gguf

    file = find_gguf(path)
    if file is None:
        raise CheckpointError(f"{path}: no .gguf file")
    reader = open_gguf(file)
    meta = read_metadata(reader, file)
    tensors = {t.name: t for t in reader.tensors}
    overrides = dict(config_overrides or {})
    overrides |= {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype).items() if v is not None}
    config = config_from_gguf(meta, tensors, file, **overrides)
    tokenizer = tokenizer_from_gguf(meta, file)
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, config.vocab_size, file)
    names = {gguf_name(hf): hf for hf in hf_tensor_shapes(config)}
    _check_tensors(tensors, names, file)
    stream = _hf_tensors(tensors, names, config, file)
    if progress:
        from tqdm.auto import tqdm

        stream = tqdm(stream, total=len(names), desc=f"dequantising {file.name}", unit="tensor")
    return build_model(config, stream, mesh=mesh), config, tokenizer
