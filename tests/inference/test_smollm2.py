"""The engine on the real SmolLM2-135M-Instruct GGUF: greedy decoding equals transformers' ``generate``, token
for token, in one ragged batch; a prompt alone equals the same prompt inside the batch; a real answer."""

import numpy as np
import pytest

from teamsrl_jax.inference import Engine, Request

from .conftest import assert_same_tokens, check_greedy

PROMPTS = ["What is the capital of France?",
           "Write a short story about a lighthouse keeper who finds a message in a bottle.",
           "List three prime numbers.",
           "Explain, step by step, how a bill becomes a law in a parliamentary system, and give an example.",
           "Hi"]
NEW_TOKENS = 40


@pytest.fixture(scope="module")
def engine(smollm2_jax):
    model, _, tokenizer = smollm2_jax
    return Engine(model, tokenizer, batch_slots=4)


def test_answers_a_real_question(engine):
    [result] = engine.generate([Request(engine.chat_ids("What is the capital of France?"), max_tokens=24)])
    assert "Paris" in result.text and result.finish_reason == "stop"
    assert result.prompt_tokens == len(engine.chat_ids("What is the capital of France?"))


def test_greedy_equals_transformers_generate(engine, smollm2_jax, smollm2_torch):
    import torch

    tokenizer = engine.tokenizer
    ids = [engine.chat_ids(p) for p in PROMPTS]
    assert len({len(i) for i in ids}) == len(ids)  # ragged
    # no EOS on either side: every row generates NEW_TOKENS tokens
    ours = Engine(smollm2_jax[0], tokenizer, batch_slots=8, eos_token_ids=[]).generate(
        [Request(i, max_tokens=NEW_TOKENS) for i in ids])
    width = max(len(i) for i in ids)
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    with torch.no_grad():
        out = smollm2_torch.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                     max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
                                     pad_token_id=tokenizer.pad_token_id, output_logits=True,
                                     return_dict_in_generate=True)
    theirs = out.sequences[:, width:].numpy()
    logits = torch.stack(out.logits, dim=1).float().numpy()  # [B, T, V]
    matched = []
    for row, result in enumerate(ours):
        assert len(result.token_ids) == NEW_TOKENS and result.finish_reason == "length"
        same = np.asarray(result.token_ids) == theirs[row]
        first = NEW_TOKENS if same.all() else int(np.argmin(same))
        if first < NEW_TOKENS:  # a divergence is allowed only where transformers' two best logits nearly tie
            top2 = np.sort(logits[row, first])[-2:]
            assert top2[1] - top2[0] < 1e-4, f"prompt {row} diverged at token {first} (margin {top2[1] - top2[0]})"
        matched.append(first)
    assert sum(m == NEW_TOKENS for m in matched) >= len(PROMPTS) - 1, matched
    # and without the cache: each token is the argmax of a full forward pass over everything before it
    check_greedy(smollm2_jax[0], ids[1], ours[1].token_ids)


def test_a_prompt_alone_equals_it_inside_a_ragged_batch(engine, smollm2_jax):
    model = smollm2_jax[0]
    ids = [engine.chat_ids(p) for p in PROMPTS]
    batch = engine.generate([Request(i, max_tokens=32) for i in ids])
    alone = engine.generate([Request(ids[1], max_tokens=32)])[0]
    assert_same_tokens(model, ids[1], batch[1].token_ids, alone.token_ids)
    assert batch[1].text == alone.text or batch[1].token_ids != alone.token_ids
