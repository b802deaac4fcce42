"""GGUF checkpoints: the real SmolLM2 GGUF against transformers, the HF conversion round trip, the tokenizer
from metadata, llama.cpp's q/k permutation on tiny GGUFs written here, and one-line errors."""

import json
import os
import stat
import subprocess
import sys

import gguf
import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from teamsrl_jax.model import LlamaConfig
from teamsrl_jax.model.convert import main as convert_main
from teamsrl_jax.model.gguf_io import load_gguf
from teamsrl_jax.model.hf_io import CheckpointError, build_model, hf_name, hf_tensor_shapes, load_pretrained, to_hf
from teamsrl_jax.model.sharding import MeshConfig, make_mesh
from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

Q = gguf.GGMLQuantizationType
LOGIT_TOL = 2e-3  # max |Δlogit| against transformers' own dequantisation, float32
TEXTS = [
    "Give three tips for staying healthy.",
    "Café naïve résumé — “smart quotes”, 10°C; 😀🚀 日本語のテキスト, Ελληνικά, русский.",
    "def f(x):\n\treturn x ** 2  # squares\n\n\n    indented   runs\t\tof  whitespace   ",
    "Pi is 3.14159, the year 2024, 1,000,000 items and x1y2z3; I'm sure they'll've won't.",
    "   leading spaces and trailing ones   ",
]
QUESTIONS = ["What is the capital of France?", "Write a haiku about rain on a tin roof.",
             "Explain, in one sentence, why the sky looks blue during the day."]


def _params(model):
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.fixture(scope="module")
def texts(request):
    """TEXTS plus a few real Alpaca instructions, inputs and answers from the shared seeds when they are there."""
    try:
        seeds = request.getfixturevalue("shared_data") / "seeds" / "alpaca_sample_999.json"
    except pytest.skip.Exception:
        return TEXTS
    rows = json.loads(seeds.read_text())[:40:8]
    return TEXTS + [r["instruction"] + "\n" + r["input"] + "\n" + r["output"][:400] for r in rows]


# -- the real model ---------------------------------------------------------------------------------
def test_smollm2_logits_match_transformers(smollm2_jax, smollm2_torch):
    import torch

    model, config, tokenizer = smollm2_jax
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == ("llama", 30, 576,
                                                                                                    49152)
    assert (config.num_attention_heads, config.num_key_value_heads, config.tie_word_embeddings) == (9, 3, True)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in QUESTIONS]
    ids = [tokenizer(p).input_ids for p in prompts]
    lengths = [len(i) for i in ids]
    assert len(set(lengths)) == len(lengths)  # right padding is exercised
    L = max(lengths)
    batch = np.array([i + [config.pad_token_id] * (L - len(i)) for i in ids])
    valid = np.arange(L)[None] < np.array(lengths)[:, None]
    ours = np.asarray(model(batch, segment_ids_BxL=valid.astype(np.int32)))
    with torch.no_grad():
        theirs = smollm2_torch(torch.as_tensor(batch), attention_mask=torch.as_tensor(valid.astype(np.int64))).logits
    theirs = theirs.float().numpy()
    diff = np.abs(ours - theirs)[valid].max()
    print(f"max |logit diff| vs transformers: {diff:.3g}")
    assert diff < LOGIT_TOL
    np.testing.assert_array_equal(ours.argmax(-1)[valid], theirs.argmax(-1)[valid])
    assert np.abs(theirs[valid]).max() > 10  # real logits, not near-zero ones


def test_smollm2_tokenizer_matches_transformers(smollm2_gguf, smollm2_jax, texts):
    """Our tokenizer from the GGUF metadata against transformers' GGUF tokenizer, with llama.cpp's "smollm"
    pre-tokenizer rule applied on top of it: every \\p{N} character is split off first (SmolLM2's own
    Digits(individual_digits) pre-tokenizer), then GPT-2's regex runs on each piece. transformers skips that
    first step (it has no "smollm" entry), which changes the ids of whitespace before a digit ("\\n\\n1." in
    every numbered list) and of non-ASCII numerals ("½")."""
    import regex
    from transformers import AutoTokenizer

    tokenizer = smollm2_jax[2]
    reference = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    assert len(tokenizer) == len(reference) == 49152

    def llama_cpp_ids(text):  # BPE never merges across a pre-token boundary: encode each piece alone
        pieces = regex.split(r"(\p{N})", text)
        return [i for piece in pieces if piece for i in reference(piece).input_ids]

    moot = 0
    for text in texts:
        ids = tokenizer(text).input_ids
        assert ids == llama_cpp_ids(text), text
        assert tokenizer.decode(ids) == text
        if not regex.search(r"\s\p{N}|[^\P{N}0-9]", text):  # where the rule is moot, transformers agrees as is
            assert ids == reference(text).input_ids, text
            moot += 1
    assert moot >= 3
    # the vocabulary shows the rule: no token joins a digit to anything (" 1", "\n1" and "10" are never tokens)
    vocab = tokenizer.get_vocab()
    assert "Ġ1" not in vocab and "Ċ1" not in vocab and "10" not in vocab and "ĠÂ½" not in vocab
    assert tokenizer.convert_ids_to_tokens(tokenizer("list:\n\n1. a ½ cup").input_ids) == \
        ["list", ":", "ĊĊ", "1", ".", "Ġa", "Ġ", "Â½", "Ġcup"]
    assert reference.convert_ids_to_tokens(reference("list:\n\n1. a ½ cup").input_ids) == \
        ["list", ":", "Ċ", "Ċ", "1", ".", "Ġa", "ĠÂ", "½", "Ġcup"]  # "½" cut between two byte tokens
    # special tokens: bos 1 (<|im_start|>), eos = pad 2 (<|im_end|>), unk 0; no BOS added on encode
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|im_start|>", 1)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) == (2, 2, 0)
    assert tokenizer("Hello").input_ids == reference("Hello").input_ids and tokenizer("Hello").input_ids[0] != 1
    assert tokenizer("<|im_start|>user\nhi<|im_end|>").input_ids[0] == 1  # control tokens stay whole
    assert tokenizer("<repo_name>").input_ids == [3]
    chat = [{"role": "user", "content": "Tell me a joke."}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == reference.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nTell me a joke.<|im_end|>\n" in rendered


def test_smollm2_conversion_round_trips(smollm2_hf_dir, smollm2_jax, smollm2_torch, texts):
    import torch
    import transformers

    model, config, tokenizer = smollm2_jax
    hf_config = json.loads((smollm2_hf_dir / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"] and hf_config["tie_word_embeddings"] is True
    assert json.loads((smollm2_hf_dir / "generation_config.json").read_text())["eos_token_id"] == 2
    # ours: identical parameters, config and tokenizer
    loaded, loaded_config, loaded_tokenizer = load_pretrained(smollm2_hf_dir)
    assert loaded_config == config
    expected, got = _params(model), _params(loaded)
    assert expected.keys() == got.keys()
    for path in expected:
        np.testing.assert_array_equal(got[path], expected[path], err_msg=str(path))
    # transformers: the same logits as its own GGUF load, the same tokenizer and chat template
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_hf_dir)
    for text in texts:
        assert hf_tokenizer(text).input_ids == loaded_tokenizer(text).input_ids == tokenizer(text).input_ids
    chat = [{"role": "user", "content": "Name a colour."}]
    assert hf_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(smollm2_hf_dir).eval()
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    ids = torch.as_tensor([tokenizer(texts[0]).input_ids])
    with torch.no_grad():
        a, b = hf_model(ids).logits.numpy(), smollm2_torch(ids).logits.numpy()
    assert np.abs(a - b).max() < 1e-4


# -- tiny GGUFs written the way llama.cpp's convert_hf_to_gguf.py writes them --------------------------
TINY = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=1, eos_token_id=2, pad_token_id=3)
# HF -> GGUF names, per llama.cpp's gguf-py tensor_mapping.py
GLOBAL_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
               "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def llama_cpp_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py, LlamaModel.permute (HF rotate-half rows -> llama.cpp's interleaved pairs)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_name(hf):
    parts = hf.split(".")
    if parts[1] == "layers":
        return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"
    return f"{GLOBAL_NAMES['.'.join(parts[:-1])]}.{parts[-1]}"


def random_hf_tensors(config, seed=0):
    rng = np.random.default_rng(seed)
    return {name: ((1.0 if name.endswith("norm.weight") else 0.0) + 0.2 * rng.standard_normal(shape)).astype(np.float32)
            for name, shape in hf_tensor_shapes(config).items()}


def tiny_tokenizer_meta():
    """The tiny byte-level tokenizer as GGUF tokenizer metadata (gpt2 kind)."""
    tok = train_tiny_tokenizer(TEXTS * 3, vocab_size=300)
    state = json.loads(tok.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    types = [3 if t in ("<unk>", "<s>", "</s>", "<pad>") else 1 for t in tokens]
    return tok, dict(model="gpt2", tokens=tokens, types=types, merges=merges, add_bos=True,
                     template=tok.chat_template)


def write_gguf(path, config, tensors, qtype=Q.F32, *, arch=None, tokenizer=None, skip=(), extra_tensors=None):
    """A GGUF of HF ``tensors``: q/k permuted for llama, 2-D weights in ``qtype``, 1-D ones in F32."""
    arch = arch or config.model_type
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_freq_base(config.rope_theta)
    w.add_rope_dimension_count(config.head_size)
    w.add_vocab_size(config.vocab_size)
    if config.rope_scaling and config.rope_scaling["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(config.rope_scaling["factor"])
    w.add_bos_token_id(config.bos_token_id)
    w.add_eos_token_id(config.eos_token_id)
    w.add_pad_token_id(config.pad_token_id)
    if tokenizer is not None:
        w.add_tokenizer_model(tokenizer["model"])
        w.add_tokenizer_pre(tokenizer.get("pre", "default"))
        w.add_token_list(tokenizer["tokens"])
        w.add_token_types(tokenizer["types"])
        if "scores" in tokenizer:
            w.add_token_scores(tokenizer["scores"])
        if "merges" in tokenizer:
            w.add_token_merges(tokenizer["merges"])
        w.add_unk_token_id(0)
        w.add_add_bos_token(tokenizer["add_bos"])
        if "space_prefix" in tokenizer:
            w.add_add_space_prefix(tokenizer["space_prefix"])
        if tokenizer.get("template"):
            w.add_chat_template(tokenizer["template"])
    N, K = config.num_attention_heads, config.num_key_value_heads
    for hf, t in tensors.items():
        if hf in skip:
            continue
        if arch == "llama" and ".q_proj." in hf:
            t = llama_cpp_permute(t, N, N)
        elif arch == "llama" and ".k_proj." in hf:
            t = llama_cpp_permute(t, N, K)
        name = _gguf_name(hf)
        if t.ndim == 1 or qtype == Q.F32:
            w.add_tensor(name, t.astype(np.float32))
        elif qtype == Q.F16:
            w.add_tensor(name, t.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
    for name, t in (extra_tensors or {}).items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch,qtype,bias", [("llama", Q.F32, False), ("llama", Q.F16, False), ("llama", Q.Q8_0, True),
                                             ("qwen2", Q.F32, True), ("qwen2", Q.Q4_1, True)])
def test_tiny_gguf_loads_back_the_original(tmp_path, arch, qtype, bias):
    """Written as llama.cpp writes it (llama: q/k rows and biases permuted; qwen2: q/k/v biases, nothing
    permuted), loaded back equal to the original HF tensors within the quantisation error."""
    config = LlamaConfig(**TINY, model_type=arch, attention_bias=bias, tie_word_embeddings=arch == "qwen2")
    original = random_hf_tensors(config)
    path = write_gguf(tmp_path / "tiny.gguf", config, original, qtype)
    model, loaded_config, tokenizer = load_gguf(path)
    assert loaded_config == config and tokenizer is None
    shapes = hf_tensor_shapes(config)
    got = {hf_name(p): to_hf(v, p, shapes[hf_name(p)]) for p, v in _params(model).items()}
    assert got.keys() == original.keys()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert np.abs(llama_cpp_permute(original[q], 4, 4) - original[q]).max() > 0.1  # the permutation is not a no-op
    for name, want in original.items():
        if qtype == Q.F32 or want.ndim == 1:
            np.testing.assert_array_equal(got[name], want, err_msg=name)
        else:  # each block is scaled by its largest |w|: Q8_0 rounds to 1/127 of it, Q4_1 to 1/15 of its range
            step = np.abs(want).max() * {Q.F16: 1e-3, Q.Q8_0: 1 / 127, Q.Q4_1: 2 / 15}[qtype]
            np.testing.assert_allclose(got[name], want, atol=step, rtol=0, err_msg=name)
    if qtype == Q.F32:  # the whole model, not just the tensors: identical logits
        reference = build_model(config, ((n, t, "original") for n, t in original.items()))
        ids = np.random.default_rng(0).integers(0, 300, size=(2, 12))
        np.testing.assert_allclose(np.asarray(model(ids)), np.asarray(reference(ids)), atol=1e-5, rtol=0)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_tiny_gguf_loads_onto_a_mesh(tmp_path, tiny_gguf):
    """Dequantised tensors stream into sharded arrays: each device holds only its slice, same values."""
    path, _ = tiny_gguf
    single, _, _ = load_gguf(path)
    mesh = make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"))
    model, _, _ = load_pretrained(path, mesh=mesh)
    q = model.layers[0].self_attn.q_proj.kernel[...]
    assert q.sharding == NamedSharding(mesh, P("fsdp", "tensor", None))
    assert q.shape == (64, 4, 16) and {s.data.shape for s in q.addressable_shards} == {(32, 2, 16)}
    for (p_, a), (_, b) in zip(_params(single).items(), _params(model).items()):
        np.testing.assert_array_equal(a, b, err_msg=str(p_))


def test_rope_scaling_from_metadata_and_rope_freqs(tmp_path):
    config = LlamaConfig(**TINY, rope_scaling={"rope_type": "linear", "factor": 4.0})
    tensors = random_hf_tensors(config)
    assert load_gguf(write_gguf(tmp_path / "linear.gguf", config, tensors))[1].rope_scaling == config.rope_scaling
    # Llama 3.1: llama.cpp writes per-frequency divisors (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors)
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    config = LlamaConfig(**{**TINY, "rope_theta": 500000.0}, rope_scaling=llama3)
    dim, base = config.head_size, config.rope_theta
    factors = []
    for freq in 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float32) / dim):
        wavelen = 2 * np.pi / freq
        if wavelen < 8192 / 4.0:
            factors.append(1.0)
        elif wavelen > 8192 / 1.0:
            factors.append(8.0)
        else:
            smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            factors.append(1 / ((1 - smooth) / 8.0 + smooth))
    assert 1.0 in factors and 8.0 in factors and len(set(factors)) > 2  # all three bands are present
    path = write_gguf(tmp_path / "llama3.gguf", config, tensors,
                      extra_tensors={"rope_freqs.weight": np.array(factors, np.float32)})
    assert load_gguf(path)[1].rope_scaling == llama3
    path = write_gguf(tmp_path / "odd.gguf", config, tensors,
                      extra_tensors={"rope_freqs.weight": np.linspace(1, 3, dim // 2, dtype=np.float32)})
    _error(path, "not Llama-3.1 rope scaling")


# -- tokenizers from metadata -----------------------------------------------------------------------
def test_byte_level_tokenizer_and_dispatch(tmp_path):
    """The tiny byte-level tokenizer survives GGUF metadata (ids, BOS on encode, template), and load_pretrained
    takes the .gguf file or its folder; a folder with config.json stays a HF checkpoint."""
    original, meta = tiny_tokenizer_meta()
    config = LlamaConfig(**TINY, tie_word_embeddings=True)
    write_gguf(tmp_path / "tiny.gguf", config, random_hf_tensors(config), tokenizer=meta)
    for path in (tmp_path / "tiny.gguf", tmp_path):
        _, _, tokenizer = load_pretrained(path)
        for text in TEXTS:
            assert tokenizer(text).input_ids == original(text).input_ids
            assert tokenizer(text).input_ids[0] == 1  # add_bos_token
        chat = [{"role": "user", "content": "hi"}]
        assert tokenizer.apply_chat_template(chat, tokenize=False) == original.apply_chat_template(chat, tokenize=False)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="config.json"):
        load_pretrained(tmp_path)


def sentencepiece_meta():
    """A Llama-2-style SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces scored -rank."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer_tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=200, show_progress=False))
    learned = sorted(trainer_tok.get_vocab(), key=trainer_tok.get_vocab().get)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + learned
    types = [2, 3, 3] + [6] * 256 + [1] * len(learned)
    scores = [0.0] * 259 + [-float(i) for i in range(len(learned))]
    return dict(model="llama", tokens=tokens, types=types, scores=scores, add_bos=True, space_prefix=True)


def test_sentencepiece_tokenizer_matches_transformers(tmp_path):
    from transformers import AutoTokenizer

    meta = sentencepiece_meta()
    config = LlamaConfig(**{**TINY, "vocab_size": len(meta["tokens"])}, tie_word_embeddings=True)
    write_gguf(tmp_path / "spm.gguf", config, random_hf_tensors(config), tokenizer=meta)
    tokenizer = load_gguf(tmp_path / "spm.gguf")[2]
    reference = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="spm.gguf")
    unseen = "a snowman ☃ and an aleph ℵ"
    for text in TEXTS + ["\n\nnew lines\n", "x", unseen]:
        ids = tokenizer(text).input_ids
        assert ids[0] == 1 and tokenizer.decode(ids, skip_special_tokens=True) == text
        if not text.startswith(" "):
            assert ids == reference(text).input_ids, text
    # llama.cpp prefixes "▁" even to a text that starts with a space (transformers' GGUF tokenizer does not)
    assert "".join(tokenizer.convert_ids_to_tokens(tokenizer("  x").input_ids)[1:]) == "▁▁▁x"
    assert sum(3 <= i < 259 for i in tokenizer(unseen).input_ids) == 6  # two 3-byte characters as bytes


# -- errors -----------------------------------------------------------------------------------------
def _error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as info:
        load_pretrained(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    config = LlamaConfig(**TINY)
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return write_gguf(path, config, random_hf_tensors(config), tokenizer=tiny_tokenizer_meta()[1]), config


def test_error_unsupported_architecture(tmp_path, tiny_gguf):
    _, config = tiny_gguf
    for arch in ("falcon", "gpt2"):
        path = write_gguf(tmp_path / f"{arch}.gguf", config, random_hf_tensors(config), arch=arch)
        assert f"{arch}.gguf" in _error(path, f"unsupported architecture '{arch}'")


def test_error_truncated_file(tmp_path, tiny_gguf):
    data = tiny_gguf[0].read_bytes()
    for size in (0, 10, len(data) // 3, len(data) - 100):
        path = tmp_path / f"cut{size}.gguf"
        path.write_bytes(data[:size])
        assert path.name in _error(path, "not a readable GGUF file")
    (tmp_path / "config.gguf").write_text('{"not": "gguf"}')
    _error(tmp_path / "config.gguf", "not a readable GGUF file")
    _error(tmp_path / "missing.gguf", "no such file")


def test_error_two_gguf_files_in_a_folder(tmp_path, tiny_gguf):
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(tiny_gguf[0].read_bytes())
    message = _error(tmp_path, "2 .gguf files")
    assert str(tmp_path) in message and "a.gguf" in message


def test_error_vocabulary_larger_than_the_embedding(tmp_path):
    _, meta = tiny_tokenizer_meta()
    config = LlamaConfig(**{**TINY, "vocab_size": len(meta["tokens"]) - 10})
    path = write_gguf(tmp_path / "small_embed.gguf", config, random_hf_tensors(config), tokenizer=meta)
    assert "small_embed.gguf" in _error(path, f"{len(meta['tokens'])} tokens but the model's embedding has only")


def test_error_tensors(tmp_path):
    config = LlamaConfig(**TINY)
    tensors = random_hf_tensors(config)
    path = write_gguf(tmp_path / "missing.gguf", config, tensors, skip={"model.layers.1.mlp.up_proj.weight"})
    assert "missing.gguf" in _error(path, "1 missing tensor.*blk.1.ffn_up.weight")
    path = write_gguf(tmp_path / "extra.gguf", config, tensors, extra_tensors={"blk.0.attn_gate.weight": tensors[
        "model.layers.0.mlp.up_proj.weight"]})
    _error(path, "1 unexpected tensor.*blk.0.attn_gate.weight")
    path = write_gguf(tmp_path / "f64.gguf", config, tensors, skip={"model.norm.weight"},
                      extra_tensors={"output_norm.weight": tensors["model.norm.weight"].astype(np.float64)})
    assert "f64.gguf" in _error(path, "output_norm.weight has type F64, which the gguf package cannot dequantise")


def test_convert_cli(tmp_path, tiny_gguf):
    path, config = tiny_gguf
    assert convert_main([str(path), str(tmp_path / "hf"), "--dtype", "bfloat16"]) == 0
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"] and hf_config["torch_dtype"] == "bfloat16"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "hf").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's owner-only folder
    assert stat.S_IMODE((tmp_path / "hf" / "model.safetensors").stat().st_mode) == 0o666 & ~umask
    model, loaded_config, tokenizer = load_pretrained(tmp_path / "hf")
    assert loaded_config == config and tokenizer("a test").input_ids == load_gguf(path)[2]("a test").input_ids
    # a bad file: one line on stderr, exit code 2, from the real entry point
    (tmp_path / "bad.gguf").write_bytes(path.read_bytes()[:1000])
    run = subprocess.run([sys.executable, "-m", "teamsrl_jax.model.convert", str(tmp_path / "bad.gguf"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and "bad.gguf" in run.stderr
    assert not (tmp_path / "out").exists()
