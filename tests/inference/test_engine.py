"""The engine on a tiny random model: greedy decoding against full recomputation, continuous batching,
stop conditions, reproducible sampling, logprobs, sharding and shape bucketing."""

import copy

import numpy as np
import pytest

from teamsrl_jax.inference import Engine, Request, bucket, prompt_bucket, shared_prefix
from teamsrl_jax.model.sharding import MeshConfig, make_mesh, shard_model

from .conftest import assert_same_tokens, check_greedy


def prompts(n, seed=0, vocab=300):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab, size=rng.integers(2, 40)).tolist() for _ in range(n)]


def test_bucket():
    assert [bucket(n, 16) for n in (1, 16, 17, 100)] == [16, 16, 32, 128]
    assert bucket(300, 16, 256) == 256 and bucket(3, 1, 16) == 4
    assert [prompt_bucket(n, 16) for n in (1, 16, 17, 37, 64, 65, 300, 1000)] == [16, 16, 32, 48, 64, 96, 384, 1024]


def test_shared_prefix():
    head = list(range(100, 140))
    assert shared_prefix([head + [1, 2], head + [3], head[:30] + [9]], 8) == 24  # 30 shared, rounded down
    assert shared_prefix([head + [1], head + [1]], 8) == 40  # each keeps a token of its own
    assert shared_prefix([head[:20], head[:20] + [5]], 8) == 16
    assert shared_prefix([head, head[:10] + [7] * 30], 8) == 0  # under two multiples: not worth a program
    assert shared_prefix([head], 8) == 0 and shared_prefix([[1] + head, head], 8) == 0


def test_a_shared_prefix_is_computed_once_with_the_same_tokens(tiny_model):
    system = np.random.default_rng(9).integers(4, 300, size=34).tolist()  # a system prompt all the asks share
    asks = [Request(system + p, max_tokens=8) for p in prompts(5, seed=5)]
    engine = Engine(tiny_model, batch_slots=4, eos_token_ids=[])
    together = engine.generate(asks)
    assert any(key[0] == "prefill" and key[2] == 32 for key in engine.stats.programs)  # 34 shared -> 32 once
    alone = Engine(tiny_model, batch_slots=1, eos_token_ids=[])
    for ask, result in zip(asks, together):
        check_greedy(tiny_model, ask.prompt_ids, result.token_ids)
        assert_same_tokens(tiny_model, ask.prompt_ids, result.token_ids, alone.generate([ask])[0].token_ids)


def test_continuous_batching_greedy_equals_recompute_and_running_alone(tiny_model):
    engine = Engine(tiny_model, batch_slots=3, eos_token_ids=[])
    asks = [Request(p, max_tokens=k) for p, k in zip(prompts(8), (5, 30, 2, 17, 9, 1, 24, 12))]
    order = []
    results = engine.generate(asks, on_result=lambda i, r: order.append(i))
    single = Engine(tiny_model, batch_slots=1, eos_token_ids=[])
    assert sorted(order) == list(range(8)) and order != list(range(8))  # each once; short ones finish first
    for ask, result in zip(asks, results):
        assert result.finish_reason == "length" and len(result.token_ids) == ask.max_tokens == result.completion_tokens
        assert result.prompt_tokens == len(ask.prompt_ids)
        check_greedy(tiny_model, ask.prompt_ids, result.token_ids)
        alone = single.generate([ask])[0]
        assert_same_tokens(tiny_model, ask.prompt_ids, result.token_ids, alone.token_ids)
    # a handful of programs, not one per request: prefill batch x prompt-length buckets, decode kv buckets
    assert len(engine.stats.programs) <= 8 and engine.stats.decode_steps < sum(a.max_tokens for a in asks)


def test_eos_stop_strings_and_length(tiny_model, tiny_tokenizer):
    engine = Engine(tiny_model, tiny_tokenizer, batch_slots=2, eos_token_ids=[])
    ask = Request(engine.chat_ids("write a short poem"), max_tokens=24)
    free = engine.generate([ask])[0]
    eos = free.token_ids[5]
    first = free.token_ids.index(eos)
    stopped = Engine(tiny_model, tiny_tokenizer, batch_slots=2, eos_token_ids=[eos]).generate([ask])[0]
    assert stopped.finish_reason == "stop" and stopped.token_ids == free.token_ids[:first]
    assert stopped.completion_tokens == first + 1  # the EOS was generated, not returned
    # a stop string: the text ends right before it, whatever tokens it spans
    text = free.text
    stop = text[len(text) // 2:len(text) // 2 + 3]
    assert stop.strip() and text.find(stop) >= 0
    cut = engine.generate([Request(ask.prompt_ids, max_tokens=24, stop=("@@never@@", stop))])[0]
    assert cut.finish_reason == "stop" and cut.text == text[:text.find(stop)]
    assert engine.generate([Request(ask.prompt_ids, max_tokens=3)])[0].finish_reason == "length"


def test_chat_ids_render_the_template(tiny_tokenizer, tiny_model):
    engine = Engine(tiny_model, tiny_tokenizer)
    ids = engine.chat_ids("hello", system="be brief")
    expected = tiny_tokenizer.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        add_generation_prompt=True, tokenize=False)
    assert tiny_tokenizer.decode(ids) == expected


def test_sampling_is_reproducible_per_seed_and_independent_of_the_batch(tiny_model):
    engine = Engine(tiny_model, batch_slots=4, eos_token_ids=[])
    ps = prompts(6, seed=1)
    asks = [Request(p, max_tokens=12, temperature=1.5, top_p=0.95, top_k=50, seed=100 + i) for i, p in enumerate(ps)]
    batch = engine.generate(asks)
    again = engine.generate(asks[::-1])[::-1]
    alone = Engine(tiny_model, batch_slots=1, eos_token_ids=[]).generate([asks[2]])[0]
    assert [r.token_ids for r in batch] == [r.token_ids for r in again]
    assert batch[2].token_ids == alone.token_ids
    other = engine.generate([Request(ps[2], max_tokens=12, temperature=1.5, top_p=0.95, top_k=50, seed=7)])[0]
    assert other.token_ids != batch[2].token_ids
    greedy = engine.generate([Request(ps[2], max_tokens=12)])[0]
    assert greedy.token_ids != batch[2].token_ids  # temperature 1.5 leaves the greedy path


def test_logprobs_match_the_model(tiny_model):
    engine = Engine(tiny_model, batch_slots=2, eos_token_ids=[])
    ask = Request(prompts(1, seed=2)[0], max_tokens=6, logprobs=3)
    result = engine.generate([ask, Request(prompts(1, seed=3)[0], max_tokens=4)])[0]
    logits = check_greedy(tiny_model, ask.prompt_ids, result.token_ids).astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    assert len(result.logprobs) == 6
    for t, (token, lp, top) in enumerate(result.logprobs):
        assert token == result.token_ids[t] and len(top) == 3
        assert lp == pytest.approx(logp[t, token], abs=1e-4)
        assert [i for i, _ in top] == np.argsort(-logp[t])[:3].tolist()
        assert top[0][0] == token  # greedy: the chosen token is the most likely


def test_sharded_over_a_mesh_equals_one_device(tiny_model):
    asks = [Request(p, max_tokens=10) for p in prompts(5, seed=4)]
    single = Engine(tiny_model, batch_slots=4, eos_token_ids=[]).generate(asks)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded_model = shard_model(copy.deepcopy(tiny_model), mesh)
    engine = Engine(sharded_model, batch_slots=4, mesh=mesh, eos_token_ids=[])
    sharded = engine.generate(asks)
    for ask, a, b in zip(asks, single, sharded):
        assert_same_tokens(tiny_model, ask.prompt_ids, a.token_ids, b.token_ids)
    # the engine's own (transposed) weights stay sharded over the mesh, not replicated
    sharding = engine.weights.layers[0].gate_up.sharding
    assert len(sharding.device_set) == 8 and not sharding.is_fully_replicated


def test_bad_requests(tiny_model):
    engine = Engine(tiny_model, max_context=32)
    with pytest.raises(ValueError, match="request 1: the prompt has 40 tokens"):
        engine.generate([Request([5, 6], max_tokens=2), Request([5] * 40)])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.generate([Request([5, 10_000])])
    with pytest.raises(ValueError, match="max_tokens"):
        Request([1], max_tokens=0)
    # the context bounds the answer: prompt + answer never exceed it
    result = engine.generate([Request([5] * 30, max_tokens=50)])[0]
    assert result.finish_reason == "length" and len(result.token_ids) <= 2


def test_bfloat16_model_decodes_like_float32(tiny_model):
    """bf16 weights and compute (the cache in bf16 too): the same greedy path as float32 for most tokens."""
    import jax
    from flax import nnx

    from teamsrl_jax.model import Llama

    config = tiny_model.config.replace(dtype="bfloat16", param_dtype="bfloat16")
    model = Llama(config, rngs=nnx.Rngs(0))
    nnx.update(model, jax.tree.map(lambda x: x.astype("bfloat16"), nnx.state(tiny_model, nnx.Param)))
    engine = Engine(model, batch_slots=2, eos_token_ids=[])
    asks = [Request(p, max_tokens=8) for p in prompts(2, seed=5)]
    half = engine.generate(asks)
    full = Engine(tiny_model, batch_slots=2, eos_token_ids=[]).generate(asks)
    assert engine._new_cache(64).k[0].dtype == jax.numpy.bfloat16
    agree = np.mean([a == b for h, f in zip(half, full) for a, b in zip(h.token_ids, f.token_ids)])
    assert agree >= 0.5, agree
