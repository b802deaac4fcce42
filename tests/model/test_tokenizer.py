"""The locally trained tiny tokenizer: special tokens, lossless round trip, chat template, reload."""

import pytest

from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

TEXTS = ["Give three tips for staying healthy.", "Eat a balanced diet and exercise regularly.",
         "Describe the water cycle in two sentences."] * 4


def test_tiny_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = train_tiny_tokenizer(TEXTS, vocab_size=320, out_dir=tmp_path)
    assert 260 < len(tokenizer) <= 320
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2, 3)
    text = "Unseen wörds & symbols ✓ still encode."
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer("Give three tips").input_ids) < len("Give three tips")  # merges were learned
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "<|user|>\nHi</s>\n<|assistant|>\n"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text).input_ids == ids and reloaded.pad_token == "<pad>"


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="at least 260"):
        train_tiny_tokenizer(TEXTS, vocab_size=100)
