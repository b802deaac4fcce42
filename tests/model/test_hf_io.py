"""Checkpoint I/O: exact save -> load round trips, loading our saves in transformers, one-line errors."""

import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from teamsrl_jax.model import Llama, LlamaConfig
from teamsrl_jax.model.hf_io import CheckpointError, load_pretrained, save_pretrained
from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

TEXTS = ["Below is an instruction that describes a task.", "Write a response that completes the request.",
         "The quick brown fox jumps over the lazy dog."] * 5


def _params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tiny_tokenizer(TEXTS, vocab_size=300, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("tied,max_shard_size", [(True, "5GB"), (False, 40_000)])
def test_save_load_round_trip_is_exact(tmp_path, tokenizer, tied, max_shard_size):
    config = LlamaConfig.preset("tiny", vocab_size=300, tie_word_embeddings=tied, bos_token_id=1,
                                eos_token_id=2, pad_token_id=3, attention_bias=not tied)
    model = Llama(config, rngs=nnx.Rngs(0))
    save_pretrained(model, tmp_path / "ckpt", config=config, tokenizer=tokenizer, max_shard_size=max_shard_size)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    if max_shard_size == "5GB":
        assert "model.safetensors" in files and "model.safetensors.index.json" not in files
    else:
        shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
        assert len(shards) > 2 and "model.safetensors.index.json" in files
        index = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"].values()) == set(shards)
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= set(files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]  # temp dir renamed away

    loaded, loaded_config, loaded_tokenizer = load_pretrained(tmp_path / "ckpt")
    assert loaded_config == config
    assert loaded_tokenizer("a test").input_ids == tokenizer("a test").input_ids
    expected, got = _params(model), _params(loaded)
    assert expected.keys() == got.keys()
    for path in expected:
        np.testing.assert_array_equal(got[path], expected[path], err_msg=str(path))


def test_saved_checkpoint_loads_in_transformers(tmp_path, tokenizer, hf_logits):
    import transformers

    config = LlamaConfig.preset("tiny", vocab_size=300, tie_word_embeddings=False,
                                rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 16})
    model = Llama(config, rngs=nnx.Rngs(1))
    # scale the weights up so the logits are not all near zero
    nnx.update(model, jax.tree.map(lambda x: x * 5, nnx.state(model, nnx.Param)))
    save_pretrained(model, tmp_path / "ckpt", config=config, tokenizer=tokenizer, max_shard_size=50_000)
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    assert type(torch_model).__name__ == "LlamaForCausalLM"
    ids = np.random.default_rng(0).integers(0, 300, size=(2, 24))
    expected = hf_logits(torch_model, ids)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_array_less(np.abs(np.asarray(model(ids)) - expected).max(), 1e-4)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "ckpt")("a test").input_ids == \
        tokenizer("a test").input_ids


def test_save_bfloat16_and_overwrite(tmp_path):
    config = LlamaConfig.preset("tiny", num_hidden_layers=1, vocab_size=300)
    model = Llama(config, rngs=nnx.Rngs(0))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "stale.txt").write_text("old")
    save_pretrained(model, tmp_path / "ckpt", config=config, dtype="bfloat16")
    assert not (tmp_path / "ckpt" / "stale.txt").exists()
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded, _, _ = load_pretrained(tmp_path / "ckpt")
    assert loaded.norm.scale[...].dtype == np.float32  # loads into fp32 master weights
    kernel = np.asarray(model.layers[0].mlp.up_proj.kernel[...])
    np.testing.assert_allclose(np.asarray(loaded.layers[0].mlp.up_proj.kernel[...]), kernel, rtol=1e-2)


# -- errors -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "ckpt"
    config = LlamaConfig.preset("tiny", num_hidden_layers=1, vocab_size=300)
    save_pretrained(Llama(config, rngs=nnx.Rngs(0)), path, config=config)
    return path


def _copy(src, tmp_path):
    return shutil.copytree(src, tmp_path / "copy")


def _edit_tensors(path, edit):
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _one_line_error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_pretrained(path, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_error_missing_config(tmp_path):
    assert str(tmp_path) in _one_line_error(tmp_path, "no config.json in")


def test_error_missing_weights(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    (path / "model.safetensors").unlink()
    assert str(path) in _one_line_error(path, r"no \*\.safetensors weights in")


def test_error_unsupported_architecture(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    hf = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**hf, "architectures": ["GPT2LMHeadModel"]}))
    message = _one_line_error(path, "unsupported architecture 'GPT2LMHeadModel'")
    assert "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM" in message


def test_error_shape_mismatch(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    _edit_tensors(path, lambda t: t.update({"model.layers.0.mlp.up_proj.weight": np.zeros((10, 64), np.float32)}))
    _one_line_error(path, r"tensor model\.layers\.0\.mlp\.up_proj\.weight has shape \(10, 64\), expected \(192, 64\)")


def test_error_dtype_mismatch(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    _edit_tensors(path, lambda t: t.update({"model.norm.weight": np.ones(64, np.int32)}))
    _one_line_error(path, r"tensor model\.norm\.weight has dtype int32, expected a floating dtype")


def test_error_missing_and_unexpected_tensors(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    _edit_tensors(path, lambda t: t.pop("model.layers.0.self_attn.k_proj.weight"))
    _one_line_error(path, r"1 missing tensor\(s\): model\.layers\.0\.self_attn\.k_proj\.weight")
    _edit_tensors(path, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((32, 64), np.float32),
                                            "model.extra.weight": np.zeros(3, np.float32)}))
    _one_line_error(path, r"1 unexpected tensor\(s\): model\.extra\.weight")


def test_error_tokenizer_larger_than_vocab(small_ckpt, tmp_path):
    path = _copy(small_ckpt, tmp_path)
    n = len(train_tiny_tokenizer(TEXTS, vocab_size=300, out_dir=path))
    assert n <= 300
    load_pretrained(path)  # fits in the model's 300 rows
    _one_line_error(path, rf"the tokenizer has {n} tokens but the model's vocab_size is {n - 1}",
                    config_overrides={"vocab_size": n - 1})
