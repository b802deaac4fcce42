"""Alpaca records of random words from a small vocabulary, and a tokenizer trained on them and the Alpaca
prompts: shared by the SFT and membership-inference tests."""

import json
import random

WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in tall green trees "
         "add two numbers sum is five name colour blue hello you goodbye word ask answer task").split()


def make_records(n: int, seed: int = 0, *, instruction=(3, 10), input=(2, 6), output=(2, 25)) -> list[dict]:
    """``n`` Alpaca records whose fields have word counts drawn from the given ranges, a third with an input
    (deterministic per seed)."""
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [{"instruction": words(rng.randint(*instruction)), "input": words(rng.randint(*input)) if i % 3 == 0 else "",
             "output": words(rng.randint(*output))} for i in range(n)]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def tiny_tokenizer():
    """A 512-token BPE tokenizer trained on the Alpaca prompts and :data:`WORDS`."""
    from teamsrl_jax.model.tokenizer import train_tiny_tokenizer
    from teamsrl_jax.sft import data

    return train_tiny_tokenizer([data.PROMPT_WITH_INPUT, data.PROMPT_NO_INPUT, " ".join(WORDS)] * 3, vocab_size=512)
