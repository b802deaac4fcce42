"""LlamaConfig: presets, parameter counts, FLOPs, and Hugging Face config conversion (old and new rope keys)."""

import json

import jax
import pytest
from flax import nnx

from teamsrl_jax.model import Llama, LlamaConfig

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}


@pytest.mark.parametrize("name,params", [
    ("1b", 1_235_814_400),          # Llama-3.2-1B (tied)
    ("llama2-7b", 6_738_415_616),   # Llama-2-7b
    ("llama3-8b", 8_030_261_248),   # Meta-Llama-3-8B
])
def test_preset_parameter_counts_match_published_models(name, params):
    assert LlamaConfig.preset(name).num_params() == params


@pytest.mark.parametrize("overrides", [{}, dict(tie_word_embeddings=False, attention_bias=True)])
def test_num_params_counts_the_model(overrides):
    config = LlamaConfig.preset("tiny", **overrides)
    abstract = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == config.num_params()


def test_flops_per_token():
    config = LlamaConfig.preset("llama2-7b")
    embedding = 32000 * 4096
    expected = 6 * (6_738_415_616 - embedding) + 12 * 32 * 4096 * 2048
    assert config.flops_per_token(2048) == expected
    tied = LlamaConfig.preset("1b")  # the tied LM head is still a matmul
    assert tied.flops_per_token(0) == 6 * 1_235_814_400


def test_preset_overrides_and_unknown_name():
    assert LlamaConfig.preset("tiny", vocab_size=300).vocab_size == 300
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        LlamaConfig.preset("huge")


def test_from_hf_reads_transformers4_and_5_rope_keys():
    base = dict(model_type="llama", vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2)
    old = LlamaConfig.from_hf({**base, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", **LLAMA3_ROPE}})
    new = LlamaConfig.from_hf({**base, "rope_parameters": {"rope_theta": 500000.0, **LLAMA3_ROPE}})
    older = LlamaConfig.from_hf({**base, "rope_theta": 500000.0, "rope_scaling": {**LLAMA3_ROPE, "type": "llama3"}})
    assert old == new == older
    assert new.rope_theta == 500000.0 and new.rope_scaling == LLAMA3_ROPE
    plain = LlamaConfig.from_hf({**base, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}})
    assert plain.rope_scaling is None and plain.head_dim is None and plain.head_size == 16


def test_to_hf_dict_round_trips_and_transformers_reads_it():
    import transformers

    config = LlamaConfig.preset("1b")
    hf = config.to_hf_dict()
    assert LlamaConfig.from_hf(json.loads(json.dumps(hf)), dtype="bfloat16") == config
    theirs = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "model_type"},
                                               model_type="llama")
    assert theirs.rope_parameters["rope_theta"] == 500000.0 and theirs.rope_parameters["factor"] == 32.0
    assert LlamaConfig.from_hf(theirs, dtype="bfloat16") == config


def test_qwen2_and_mistral_specifics():
    base = dict(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    qwen = LlamaConfig.from_hf({**base, "model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": False})
    assert qwen.attention_bias and not qwen.o_bias and qwen.sliding_window is None
    mistral = LlamaConfig.from_hf({**base, "model_type": "mistral", "sliding_window": 4096})
    assert mistral.sliding_window == 4096 and mistral.num_key_value_heads == 4
    with pytest.raises(ValueError, match="use_sliding_window"):
        LlamaConfig.from_hf({**base, "model_type": "qwen2", "use_sliding_window": True})
    with pytest.raises(ValueError, match="unsupported model_type 'gpt2'"):
        LlamaConfig.from_hf({**base, "model_type": "gpt2"})


def test_config_is_hashable_and_validated():
    config = LlamaConfig.preset("1b")
    assert hash(config) == hash(LlamaConfig.preset("1b"))
    with pytest.raises(ValueError, match="remat='some'"):
        LlamaConfig.preset("tiny", remat="some")
    with pytest.raises(ValueError, match="not a multiple"):
        LlamaConfig.preset("tiny", num_key_value_heads=3)
    with pytest.raises(ValueError, match="rope_type='yarn'"):
        LlamaConfig.preset("tiny", rope_scaling={"rope_type": "yarn", "factor": 2.0})
