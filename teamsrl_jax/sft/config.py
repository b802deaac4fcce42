"""``SFTConfig``: every knob of an SFT run, one docstring per field, shared by the CLI and the code.

Precedence, lowest first: the field defaults (the paper's recipe, REFERENCE §4) < the preset's
overrides (``PRESETS``) < the YAML file (``--config``) < command-line flags. Unknown YAML keys and
badly typed values fail with one line naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import pathlib
import types
import typing

import yaml


class ConfigError(ValueError):
    """A bad configuration value or file; the message is one line."""


@dataclasses.dataclass
class SFTConfig:
    # --- inputs and outputs
    model: str | None = None
    """Hugging Face checkpoint folder of a Llama-family model (config.json, safetensors, tokenizer)."""
    preset: str | None = None
    """'tiny': no checkpoint, a random tiny Llama and a tokenizer trained on the data (offline smoke run)."""
    data: str = ""
    """Instruction file: a JSON array or JSONL of Alpaca records or chat 'messages' records."""
    data_format: str = "jsonl"
    """'jsonl' reads the file directly; 'tfds' builds an array_record TFDS dataset from it and reads that."""
    tfds_data_dir: str | None = None
    """Where the TFDS dataset is built (default: OUT/tfds)."""
    out: str = "runs/sft"
    """Output folder: metrics.jsonl, checkpoints/, tensorboard/, tokenizer/, final/ (the HF export)."""
    checkpoint_dir: str | None = None
    """Where checkpoints go (default: OUT/checkpoints); multi-host runs need one shared by all hosts, e.g. gs://..."""

    # --- data
    max_length: int = 512
    """Tokens per example (prompt + response + EOS) and positions per packed row."""
    packing: bool = True
    """Pack several examples per row (segment ids keep them apart); off = one example per row."""
    eval_fraction: float = 0.0
    """Fraction of the examples held out for evaluation (deterministic by seed)."""
    eval_count: int = 0
    """Number of examples held out for evaluation; overrides eval_fraction when > 0."""

    # --- optimisation
    epochs: int = 3
    """Passes over the training examples."""
    max_steps: int = 0
    """Train for exactly this many optimizer steps, overriding epochs (0 = run all epochs)."""
    stop_after: int = 0
    """End this invocation after N more steps with a checkpoint (time-sliced or preemptible jobs; resume
    with --resume). The schedule still spans the whole run. 0 = run to the end."""
    global_batch_size: int = 256
    """Rows per optimizer step, over all devices, hosts and accumulation microbatches."""
    grad_accum_steps: int = 1
    """Microbatches per step (a scan inside the jitted step); must divide global_batch_size."""
    learning_rate: float = 2e-5
    """Peak learning rate."""
    warmup_steps: int = 2
    """Linear warm-up steps from 0 to the peak learning rate."""
    lr_schedule: str = "cosine"
    """Decay after warm-up: 'cosine', 'linear' or 'constant'."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak."""
    adam_b1: float = 0.9
    """AdamW beta1."""
    adam_b2: float = 0.999
    """AdamW beta2."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW)."""
    no_decay: tuple[str, ...] = ("norm", "bias", "embed")
    """Parameters whose path contains one of these substrings get no weight decay."""
    max_grad_norm: float = 1.0
    """Clip gradients to this global norm (0 = no clipping)."""

    # --- model numerics
    dtype: str = "bfloat16"
    """Compute dtype of the model ('bfloat16' or 'float32')."""
    param_dtype: str = "float32"
    """Dtype of the master weights and optimizer state."""
    remat: str = "none"
    """Rematerialisation per decoder layer: 'none', 'full' or 'dots'."""

    # --- parallelism
    mesh: str = "data=-1"
    """Device mesh, e.g. 'data=2,fsdp=2,tensor=2' (-1 fills the remaining devices)."""

    # --- bookkeeping
    seed: int = 0
    """Seed of the model init (tiny preset), the eval split and the data order."""
    log_every: int = 1
    """Write metrics every N steps."""
    eval_every: int = 0
    """Evaluate on the eval split every N steps (0 = only at the end; needs an eval split)."""
    checkpoint_every: int = 0
    """Save a checkpoint every N steps (0 = only at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest)."""
    async_checkpoint: bool = True
    """Write checkpoints in the background while training continues."""
    resume: bool = False
    """Continue from the newest checkpoint in OUT/checkpoints (params, optimizer, step, data position)."""
    export: bool = True
    """Write the final model in Hugging Face format to OUT/final."""
    tensorboard: bool = True
    """Also write TensorBoard event files when tensorboardX is installed."""
    progress: bool = True
    """Show a tqdm progress bar."""
    tiny_vocab_size: int = 1024
    """Vocabulary of the tokenizer trained for the tiny preset."""


PRESETS: dict[str, dict] = {
    # A tiny random Llama learning from scratch: larger LR, short rows, small batches, fp32 on CPU.
    "tiny": dict(max_length=256, epochs=1, global_batch_size=8, learning_rate=1e-3, warmup_steps=5,
                 dtype="float32", eval_count=16, eval_every=20, checkpoint_every=20),
}
CHOICES = {
    "preset": (None, *PRESETS), "data_format": ("jsonl", "tfds"), "lr_schedule": ("cosine", "linear", "constant"),
    "dtype": ("float32", "bfloat16"), "param_dtype": ("float32", "bfloat16"), "remat": ("none", "full", "dots"),
}


def _coerce(name: str, value, where: str):
    """``value`` converted to the type of field ``name`` (YAML and CLI strings alike)."""
    hint = typing.get_type_hints(SFTConfig)[name]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    try:
        if value is None or (optional and value in ("", "none", "None", "null")):
            if not optional:
                raise ValueError("may not be empty")
            return None
        if typing.get_origin(base) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if base is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError("expected an integer")
        return base(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: bad value {value!r} for '{name}' ({e})") from None


def validate(cfg: SFTConfig) -> SFTConfig:
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"'{name}' must be one of {[c for c in choices if c]}, got {getattr(cfg, name)!r}")
    if cfg.global_batch_size % cfg.grad_accum_steps:
        raise ConfigError(f"grad_accum_steps={cfg.grad_accum_steps} does not divide "
                          f"global_batch_size={cfg.global_batch_size}")
    if not cfg.data:
        raise ConfigError("no data file: set --data or 'data:' in the config file")
    if not cfg.model and not cfg.preset:
        raise ConfigError("no model: pass --model PATH (a HF checkpoint folder) or --preset tiny")
    return cfg


def load_config(yaml_path: str | None = None, overrides: dict | None = None) -> SFTConfig:
    """Defaults < preset < YAML file < ``overrides`` (e.g. parsed CLI flags), validated."""
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    values: dict = {}
    if yaml_path:
        path = pathlib.Path(yaml_path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{yaml_path}: cannot read config ({' '.join(str(e).split())})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: a config file must be a mapping of field: value")
        for key, value in loaded.items():
            if key not in names:
                raise ConfigError(f"{yaml_path}: unknown key '{key}'")
            values[key] = _coerce(key, value, yaml_path)
    for key, value in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"unknown option '{key}'")
        values[key] = _coerce(key, value, "command line")
    preset = values.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    merged = {**PRESETS.get(preset, {}), **values}
    return validate(SFTConfig(**merged))
