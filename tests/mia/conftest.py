"""Shared fixtures of the membership-inference tests: a tokenizer trained here, tiny random models saved as
Hugging Face folders, Alpaca records of one distribution."""

import pytest

from teamsrl_jax.model import LlamaConfig, init_model, save_pretrained

from .. import records
from ..records import write_jsonl  # noqa: F401  (the tests import it from here)


def make_records(n: int, seed: int = 0) -> list[dict]:
    """``n`` short Alpaca records of random words, a third with an input (deterministic per seed)."""
    return records.make_records(n, seed, instruction=(3, 8), input=(2, 5), output=(4, 14))


@pytest.fixture(scope="session")
def tokenizer():
    return records.tiny_tokenizer()


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
