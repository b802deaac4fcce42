"""Shared fixtures of the SFT tests: a tokenizer trained here, a tiny Llama, small data files."""

import json

import pytest

from teamsrl_jax.model.tokenizer import train_tiny_tokenizer
from teamsrl_jax.sft import data

WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in tall green trees "
         "add two numbers sum is five name colour blue hello you goodbye word ask answer task").split()


def make_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` Alpaca records of varied lengths, a third with an input (deterministic)."""
    import random

    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [{"instruction": words(rng.randint(3, 10)), "input": words(rng.randint(2, 6)) if i % 3 == 0 else "",
             "output": words(rng.randint(2, 25))} for i in range(n)]


@pytest.fixture(scope="session")
def tokenizer():
    texts = [data.PROMPT_WITH_INPUT, data.PROMPT_NO_INPUT, " ".join(WORDS)] * 3
    return train_tiny_tokenizer(texts, vocab_size=512)


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_records(64)))
    return path
