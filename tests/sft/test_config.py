"""SFTConfig: precedence (defaults < preset < YAML < flags), coercion, docs, optimizer schedule."""

import dataclasses

import numpy as np
import pytest

from teamsrl_jax.cli import field_docs
from teamsrl_jax.sft.config import PRESETS, ConfigError, SFTConfig, load_config
from teamsrl_jax.sft.optim import decay_mask, lr_schedule


def test_precedence_defaults_preset_yaml_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\ndata: d.jsonl\nlearning_rate: 3e-4\nno_decay: [norm]\npacking: false\n")
    cfg = load_config(str(path), {"global_batch_size": "16", "packing": "true"})
    assert cfg.learning_rate == 3e-4                                  # YAML over preset
    assert cfg.max_length == PRESETS["tiny"]["max_length"]            # preset over default
    assert cfg.global_batch_size == 16 and cfg.packing is True        # flags over YAML
    assert cfg.no_decay == ("norm",) and cfg.adam_b2 == 0.999         # list -> tuple; default kept


def test_every_field_has_a_docstring():
    docs = field_docs(SFTConfig)
    assert [f.name for f in dataclasses.fields(SFTConfig) if not docs.get(f.name)] == []


@pytest.mark.parametrize("text, want", [
    ("learning_rate: [1]\n", "bad value [1] for 'learning_rate'"),
    ("epochs: 2.5\n", "bad value 2.5 for 'epochs'"),
    ("- a\n", "must be a mapping"),
    ("grad_accum_steps: 3\n", "grad_accum_steps=3 does not divide global_batch_size=8"),
])
def test_bad_yaml_values_are_one_line(tmp_path, text, want):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=want.replace("[", r"\[").replace("]", r"\]")) as e:
        load_config(str(path), {"preset": "tiny", "data": "d"})
    assert "\n" not in str(e.value)


def test_schedule_matches_hugging_face_warmup_cosine():
    cfg = SFTConfig(learning_rate=2e-5, warmup_steps=2, lr_schedule="cosine")
    sched = lr_schedule(cfg, 10)
    got = [float(sched(s)) for s in range(10)]
    want = [2e-5 * s / 2 for s in range(2)] + [2e-5 * 0.5 * (1 + np.cos(np.pi * (s - 2) / 8)) for s in range(2, 10)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_weight_decay_mask_skips_norms_and_embeddings():
    params = {"embed_tokens": {"embedding": 0}, "layers": {0: {"input_layernorm": {"scale": 0},
                                                               "mlp": {"up_proj": {"kernel": 0}}}}}
    mask = decay_mask(params, ("norm", "bias", "embed"))
    assert mask == {"embed_tokens": {"embedding": False},
                    "layers": {0: {"input_layernorm": {"scale": False}, "mlp": {"up_proj": {"kernel": True}}}}}


def test_resume_check_names_data_stream_fields_and_allows_the_rest():
    from teamsrl_jax.sft.trainer import check_resumable

    saved = dataclasses.asdict(load_config(None, {"preset": "tiny", "data": "d.jsonl"}))
    longer = load_config(None, {"preset": "tiny", "data": "/elsewhere/d.jsonl", "max_steps": "99", "epochs": "4",
                                "grad_accum_steps": "2", "checkpoint_every": "7", "log_every": "5",
                                "eval_every": "3", "learning_rate": "1e-4", "mesh": "fsdp=-1"})
    check_resumable(saved, longer)  # run length, accumulation, bookkeeping, optimiser, paths: allowed
    changed = load_config(None, {"preset": "tiny", "data": "d.jsonl", "max_length": "128",
                                 "packing": "false", "eval_count": "8", "seed": "3", "global_batch_size": "16"})
    with pytest.raises(ConfigError) as e:
        check_resumable(saved, changed)
    message = str(e.value)
    assert "\n" not in message
    for want in ("max_length 256 -> 128", "packing True -> False", "eval_count 16 -> 8", "seed 0 -> 3",
                 "global_batch_size 8 -> 16"):
        assert want in message
    assert "learning_rate" not in message
