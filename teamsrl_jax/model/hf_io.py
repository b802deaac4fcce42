"""Hugging Face checkpoint I/O: config.json + safetensors (+ tokenizer) <-> our ``Llama``.

Loading streams tensor by tensor: the model is built abstractly (``nnx.eval_shape``), each parameter's
NamedSharding comes from its logical axes and the mesh, and each HF tensor is read from disk, laid out
our way and handed to ``jax.make_array_from_callback`` so every device receives only its own slice.
Layout: HF linear weights are [out, in]; our kernels are [*in, *out] (q: [D, N, H], o: [N, H, D]), so a
kernel is a transpose plus reshape. Rope follows HF's rotate_half convention: no q/k permutation.

``load_pretrained`` also takes a llama.cpp GGUF file (``gguf_io``), which ends in the same ``build_model``.

Saving writes into a temporary sibling directory and renames it into place, so a reader never sees
a half-written checkpoint; the result loads in transformers (and vLLM) unchanged.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from teamsrl_jax.model.config import ARCHITECTURES, LlamaConfig
from teamsrl_jax.model.llama import Llama
from teamsrl_jax.model.sharding import logical_sharding

SUPPORTED_ARCHITECTURES = {arch: model_type for model_type, arch in ARCHITECTURES.items()}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
INDEX_FILE = "model.safetensors.index.json"
# Tensors some checkpoints carry that the model does not use (old conversions saved rope buffers).
_IGNORED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded or written; the message is one line naming the culprit."""


# -- names and layouts ------------------------------------------------------------------------------
def hf_tensor_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a HF checkpoint of ``config`` holds, with its HF shape."""
    D, F, V = config.hidden_size, config.intermediate_size, config.vocab_size
    NH, KH = config.num_attention_heads * config.head_size, config.num_key_value_heads * config.head_size
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                   p + "self_attn.q_proj.weight": (NH, D), p + "self_attn.k_proj.weight": (KH, D),
                   p + "self_attn.v_proj.weight": (KH, D), p + "self_attn.o_proj.weight": (D, NH),
                   p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                   p + "mlp.down_proj.weight": (D, F)}
        if config.attention_bias:
            shapes |= {p + "self_attn.q_proj.bias": (NH,), p + "self_attn.k_proj.bias": (KH,),
                       p + "self_attn.v_proj.bias": (KH,)}
        if config.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (D,)
    return shapes


def hf_name(path: tuple) -> str:
    """Our state path, e.g. ('layers', 0, 'self_attn', 'q_proj', 'kernel') -> its HF tensor name."""
    *modules, leaf = (str(p) for p in path)
    name = ".".join(modules) + (".bias" if leaf == "bias" else ".weight")
    return name if modules[0] == "lm_head" else "model." + name


def to_ours(tensor: np.ndarray, path: tuple, shape: tuple[int, ...]) -> np.ndarray:
    """HF layout -> ours: kernels [out, in] are transposed, then everything takes our shape."""
    return (tensor.T if path[-1] == "kernel" else tensor).reshape(shape)


def to_hf(array: np.ndarray, path: tuple, hf_shape: tuple[int, ...]) -> np.ndarray:
    """Ours -> HF layout (inverse of ``to_ours``)."""
    if path[-1] == "kernel":
        return np.ascontiguousarray(array.reshape(hf_shape[::-1]).T)
    return array.reshape(hf_shape)


# -- loading ----------------------------------------------------------------------------------------
def load_config(path, **overrides) -> LlamaConfig:
    """The LlamaConfig of a HF checkpoint directory (``overrides`` replace fields, e.g. dtype)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"no config.json in {path}")
    try:
        hf = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file}: invalid JSON ({e})") from None
    for arch in hf.get("architectures") or []:
        if arch not in SUPPORTED_ARCHITECTURES:
            raise CheckpointError(f"{config_file}: unsupported architecture {arch!r}; supported: "
                                  f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    try:
        return LlamaConfig.from_hf(hf, **overrides)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{config_file}: {e}") from None


def load_tokenizer(path, vocab_size: int | None = None):
    """``AutoTokenizer`` from ``path``, or None when it holds no tokenizer files; checks that the
    tokenizer's ids fit ``vocab_size``."""
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - transformers raises many types; report them on one line
        raise CheckpointError(f"{path}: cannot load the tokenizer: {str(e).splitlines()[0]}") from None
    check_tokenizer_fits(tokenizer, vocab_size, path)
    return tokenizer


def check_tokenizer_fits(tokenizer, vocab_size: int | None, where) -> None:
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise CheckpointError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size "
                              f"is {vocab_size}")


def _weight_index(path: Path) -> dict[str, Path]:
    """HF tensor name -> the safetensors file holding it."""
    index_file = path / INDEX_FILE
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text())["weight_map"]
        files = {name: path / file for name, file in weight_map.items()}
        for file in set(files.values()):
            if not file.is_file():
                raise CheckpointError(f"{index_file} names {file.name}, which does not exist")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors weights in {path}")
    where = {}
    for file in files:
        with safe_open(file, "np") as f:
            where |= {name: file for name in f.keys()}
    return where


def _check_names(where: dict[str, Path], expected: dict, config: LlamaConfig, path: Path) -> None:
    names = {n for n in where if not _IGNORED.fullmatch(n)}
    if config.tie_word_embeddings:
        names.discard("lm_head.weight")  # some tied checkpoints still store the copy; HF ignores it too
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} missing tensor(s): {_few(missing)}")
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} unexpected tensor(s): {_few(unexpected)}")


def _few(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f", ... (+{len(names) - k})" if len(names) > k else "")


def load_pretrained(path, *, mesh=None, dtype=None, param_dtype=None, config_overrides=None):
    """Loads a HF Llama/Mistral/Qwen2 checkpoint directory, or a GGUF file (or a folder holding one
    and no config.json; see ``gguf_io.load_gguf``).

    Returns (model, config, tokenizer); tokenizer is None when the directory has none. With ``mesh``
    the params are sharded per their logical axes (each device gets only its slice); without, they
    live on the default device. ``dtype``/``param_dtype``/``config_overrides`` replace config fields.
    """
    from teamsrl_jax.model import gguf_io  # it imports this module

    path = Path(path)
    if (gguf_file := gguf_io.find_gguf(path)) is not None:
        return gguf_io.load_gguf(gguf_file, mesh=mesh, dtype=dtype, param_dtype=param_dtype,
                                 config_overrides=config_overrides)
    overrides = dict(config_overrides or {})
    overrides |= {k: v for k, v in dict(dtype=dtype, param_dtype=param_dtype).items() if v is not None}
    config = load_config(path, **overrides)
    tokenizer = load_tokenizer(path, config.vocab_size)
    where = _weight_index(path)
    expected = hf_tensor_shapes(config)
    _check_names(where, expected, config, path)
    return build_model(config, _safetensors(where, expected), mesh=mesh), config, tokenizer


def _safetensors(where: dict[str, Path], expected: dict):
    for file in sorted(set(where[name] for name in expected)):
        with safe_open(file, "np") as f:
            for name in sorted(set(f.keys()) & set(expected)):
                yield name, f.get_tensor(name), file.name


def build_model(config: LlamaConfig, tensors, *, mesh=None) -> Llama:
    """The model of ``config`` with its parameters taken from ``tensors``, an iterable of (HF name,
    numpy array in HF layout, where it came from) covering every name of ``hf_tensor_shapes(config)``.

    Streams: the model is built abstractly, and each tensor is checked, laid out our way, cast to its
    param dtype and placed on its devices (sharded per its logical axes with ``mesh``) as it arrives,
    so one host copy of one tensor is alive at a time.
    """
    expected = hf_tensor_shapes(config)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0))))
    on_default_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = {} if mesh is None else dict(nnx.to_flat_state(logical_sharding(state, mesh)))
    variables = dict(nnx.to_flat_state(state))
    by_name = {hf_name(p): p for p in variables}
    assert by_name.keys() == expected.keys(), "model and hf_tensor_shapes disagree"
    filled = set()
    for name, tensor, where in tensors:
        _check_tensor(name, tensor, expected[name], where)
        p, var = by_name[name], variables[by_name[name]]
        value = to_ours(tensor, p, var.shape).astype(var.dtype)
        sharding = shardings[p].get_value() if shardings else on_default_device
        var.set_value(jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx]))
        filled.add(name)
    if missing := sorted(expected.keys() - filled):
        raise CheckpointError(f"{len(missing)} tensor(s) were never read: {_few(missing)}")
    return nnx.merge(graphdef, state)


def _check_tensor(name: str, tensor: np.ndarray, shape: tuple, where) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise CheckpointError(f"{where}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    if not jnp.issubdtype(tensor.dtype, jnp.floating):
        raise CheckpointError(f"{where}: tensor {name} has dtype {tensor.dtype}, expected a floating dtype")


# -- saving -----------------------------------------------------------------------------------------
def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size={size!r}: expected bytes or e.g. '5GB', '200MB'")
    return int(float(match[1]) * 1000 ** "_KMG".index(match[2] or "_"))


def _host_array(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host sharded) array on this process."""
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def save_pretrained(model: Llama, path, *, config: LlamaConfig, tokenizer=None, dtype: str = "float32",
                    max_shard_size: int | str = "5GB") -> None:
    """Writes a HF checkpoint directory: config.json, generation_config.json, model.safetensors (or
    model-0000i-of-0000n.safetensors + model.safetensors.index.json above ``max_shard_size``) and the
    tokenizer. Tensors are stored in ``dtype``. Replaces ``path`` atomically. Multi-host: every process
    must call it (arrays are gathered collectively); only process 0 writes."""
    path = Path(path)
    np_dtype = jnp.dtype(dtype)
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, config.vocab_size, "save_pretrained")
    expected = hf_tensor_shapes(config)
    variables = [(p, v) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    shards = _plan_shards([(hf_name(p), math.prod(v.shape) * np_dtype.itemsize) for p, v in variables],
                          _parse_size(max_shard_size))
    writer = jax.process_index() == 0
    if writer:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent)) if writer else None
    try:
        weight_map, total = {}, 0
        names = {hf_name(p): (p, v) for p, v in variables}
        for i, shard in enumerate(shards):
            file = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            tensors = {}
            for name in shard:
                p, v = names[name]
                tensors[name] = to_hf(_host_array(v[...]), p, expected[name]).astype(np_dtype)
                weight_map[name] = file
                total += tensors[name].nbytes
            if writer:
                save_file(tensors, tmp / file, metadata={"format": "pt"})
        if writer:
            _write_metadata(tmp, config, tokenizer, dtype, weight_map, total, sharded=len(shards) > 1)
            _swap_into_place(tmp, path)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plan_shards(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    """Greedy packing in order; a tensor larger than max_bytes gets a shard of its own."""
    shards, current, used = [], [], 0
    for name, size in sizes:
        if current and used + size > max_bytes:
            shards.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    return shards + [current] if current else shards


def _write_metadata(tmp: Path, config, tokenizer, dtype, weight_map, total, sharded) -> None:
    (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(torch_dtype=dtype), indent=2) + "\n")
    generation = {k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    generation = {"_from_model_config": True, **{k: v for k, v in generation.items() if v is not None}}
    (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if sharded:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Renames tmp to path; an existing path is moved aside first and removed after. The folder and its files
    get the umask's default modes (mkdtemp makes the folder owner-only, safetensors its files)."""
    umask = os.umask(0o022)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for file in tmp.iterdir():
        file.chmod(0o666 & ~umask)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
