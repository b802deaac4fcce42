"""Shared fixtures of the membership-inference tests: a tokenizer trained here, tiny random models saved as
Hugging Face folders, Alpaca records of one distribution."""

import json
import random

import pytest

from teamsrl_jax.model import LlamaConfig, init_model, save_pretrained
from teamsrl_jax.model.tokenizer import train_tiny_tokenizer
from teamsrl_jax.sft import data

WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in tall green trees "
         "add two numbers sum is five name colour blue hello you goodbye word ask answer task").split()


def make_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` Alpaca records of random words, a third with an input (deterministic per seed)."""
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [{"instruction": words(rng.randint(3, 8)), "input": words(rng.randint(2, 5)) if i % 3 == 0 else "",
             "output": words(rng.randint(4, 14))} for i in range(n)]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="session")
def tokenizer():
    texts = [data.PROMPT_WITH_INPUT, data.PROMPT_NO_INPUT, " ".join(WORDS)] * 3
    return train_tiny_tokenizer(texts, vocab_size=512)


def tiny_config(tokenizer) -> LlamaConfig:
    return LlamaConfig.preset("tiny", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                              dtype="float32")


@pytest.fixture(scope="session")
def tiny_models(tokenizer):
    """Two random tiny float32 models (seeds 0 and 1) of the tokenizer's vocabulary."""
    config = tiny_config(tokenizer)
    return init_model(config, seed=0), init_model(config, seed=1), config


@pytest.fixture(scope="session")
def tiny_folders(tiny_models, tokenizer, tmp_path_factory):
    """The two tiny models as Hugging Face folders (config, safetensors, tokenizer)."""
    root = tmp_path_factory.mktemp("tiny_models")
    a, b, config = tiny_models
    for name, model in (("a", a), ("b", b)):
        save_pretrained(model, root / name, config=config, tokenizer=tokenizer)
    return root / "a", root / "b"
