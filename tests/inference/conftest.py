"""A tiny random model with a locally trained tokenizer, and checks shared by the engine tests."""

import jax
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.model import Llama, LlamaConfig
from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog", "explain how a bill becomes a law",
         "write a short poem about the sea", "score: 7 out of 10", "list three prime numbers: 2, 3, 5"] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tiny_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    config = LlamaConfig.preset("tiny", vocab_size=len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id)
    model = Llama(config, rngs=nnx.Rngs(0))
    nnx.update(model, jax.tree.map(lambda x: x * 5, nnx.state(model, nnx.Param)))  # peaked, far from ties
    return model


_FORWARD = nnx.jit(lambda model, ids: model(ids))


def full_logits(model, ids, width=128):
    """[len(ids), V] logits of one full forward pass (right-padded to ``width``: one compiled program)."""
    padded = np.zeros((1, max(width, len(ids))), np.int32)
    padded[0, :len(ids)] = ids
    return np.asarray(_FORWARD(model, padded))[0, :len(ids)]


def check_greedy(model, prompt_ids, generated, tie=1e-4):
    """Every generated token is the argmax of a full forward pass over the prompt and the tokens before it,
    or within ``tie`` of it (float32 sums differ between batch shapes and CPUs). Returns the full logits."""
    ids = list(prompt_ids) + list(generated)
    logits = full_logits(model, ids)[len(prompt_ids) - 1:len(prompt_ids) - 1 + len(generated)]
    chosen = logits[np.arange(len(generated)), generated]
    assert np.all(chosen >= logits.max(-1) - tie), np.flatnonzero(chosen < logits.max(-1) - tie)
    return logits


def assert_same_tokens(model, prompt_ids, a, b, tie=1e-4):
    """Two greedy continuations agree, up to a first divergence at a near-tie of the two best logits."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            logits = full_logits(model, list(prompt_ids) + list(a[:i]))[-1]
            top2 = np.sort(logits)[-2:]
            assert top2[1] - top2[0] < tie, f"diverged at token {i} with a margin of {top2[1] - top2[0]}"
            return
    assert len(a) == len(b)
