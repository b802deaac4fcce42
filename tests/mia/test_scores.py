"""The per-example scores against a float64 NumPy computation from the model's logits, the SFT text and
tokens against what the SFT trains on, and the bucketed batching."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.mia.documents import sft_documents, sft_text
from teamsrl_jax.mia.scores import TokenScorer, TokenStats, member_scores, min_k_count
from teamsrl_jax.sft import data as sft_data
from teamsrl_jax.sft.records import Record

from .conftest import make_records

MAX_LENGTH = 96


@pytest.fixture(scope="module")
def records():
    alpaca = [Record(**r, line=i + 1) for i, r in enumerate(make_records(5, seed=11))]
    long = Record(instruction="write words", output=" ".join(["word", "ask"] * 60), line=6)
    chat = Record(messages=(("system", "Be brief."), ("user", "hello you"), ("assistant", "goodbye word")), line=7)
    return [*alpaca, long, chat]


@pytest.fixture(scope="module")
def documents(tokenizer, records):
    return sft_documents(tokenizer, records, MAX_LENGTH)


@jax.jit
def _logits(graphdef, state, ids):
    return nnx.merge(graphdef, state)(ids)


def reference_stats(model, sequences):
    """MIMIR's per-token quantities in float64 NumPy, per sequence, from the model's plain logits of all
    sequences at once (one right-padded batch: other shapes and padding than the scorer's buckets)."""
    width = max(len(s) for s in sequences) - 1
    ids = np.zeros((len(sequences), width), np.int32)
    for r, s in enumerate(sequences):
        ids[r, :len(s) - 1] = s[:-1]
    graphdef, state = nnx.split(model)
    all_logits = np.asarray(_logits(graphdef, state, jnp.asarray(ids)), np.float64)
    out = []
    for logits, tokens in zip(all_logits, sequences):
        logits = logits[:len(tokens) - 1]
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        p = np.exp(logp)
        mu = (p * logp).sum(-1)
        sigma = np.sqrt((p * logp ** 2).sum(-1) - mu ** 2)  # MIMIR's E[x^2] - mu^2
        out.append((logp[np.arange(len(tokens) - 1), tokens[1:]], mu, sigma))
    return out


def reference_scores(lp, mu, sigma, text, k=0.2, ref_lp=None):
    loss = -np.mean(lp)
    count = max(1, int(len(lp) * k))
    out = {"loss": -loss, "zlib": -loss / len(zlib.compress(bytes(text, "utf-8"))),
           "min_k": np.mean(sorted(lp)[:count]), "min_k_pp": np.mean(sorted((lp - mu) / sigma)[:count])}
    if ref_lp is not None:
        out["ref"] = -(loss - (-np.mean(ref_lp)))
    return out


def test_documents_are_what_the_sft_trains_on(tokenizer, records, documents):
    examples = sft_data.encode(tokenizer, records, MAX_LENGTH)
    for record, doc, ex in zip(records, documents, examples):
        np.testing.assert_array_equal(doc.tokens, ex.tokens)
    # the text: prompt + response for Alpaca, the template's rendering for chat
    assert documents[0].text == sft_data.alpaca_prompt(records[0]) + records[0].output
    assert "### Input:" in sft_text(tokenizer, records[0])  # make_records gives record 0 an input
    assert documents[6].text == tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in records[6].messages], tokenize=False)
    # untruncated documents decode back to their text; the BOS and the EOS the SFT appends are scored too
    for doc in documents[:5]:
        assert doc.full_length == len(doc.tokens) <= MAX_LENGTH
        assert tokenizer.decode(doc.tokens, skip_special_tokens=True) == doc.text
        assert doc.tokens[0] == tokenizer.bos_token_id and doc.tokens[-1] == tokenizer.eos_token_id
    long = documents[5]
    assert len(long.tokens) == MAX_LENGTH < long.full_length  # cut as the SFT cuts it, text kept whole
    assert long.text.endswith("word ask")


def test_min_k_count_floors_like_mimir():
    assert [min_k_count(n, 0.2) for n in (1, 4, 5, 9, 10, 14, 15)] == [1, 1, 1, 1, 2, 2, 3]
    assert min_k_count(7, 1.0) == 7


def test_scores_match_float64_numpy(tiny_models, documents):
    target, reference, _ = tiny_models
    scorer = TokenScorer(target, batch_size=3)  # 7 documents: batches of 3, 3 and 1 (+2 empty rows)
    stats = scorer([d.tokens for d in documents])
    ref_stats = TokenScorer(reference, batch_size=4)([d.tokens for d in documents])
    assert len(scorer.buckets) <= 3 and all(b % 16 == 0 or b < 16 for b in scorer.buckets)
    want_target = reference_stats(target, [d.tokens for d in documents])
    want_reference = reference_stats(reference, [d.tokens for d in documents])
    for doc, st, ref_st, (lp, mu, sigma), (ref_lp, _, _) in zip(documents, stats, ref_stats, want_target,
                                                                  want_reference):
        np.testing.assert_allclose(st.logprobs, lp, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(st.mu, mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(st.sigma, sigma, rtol=1e-4, atol=1e-5)
        got = member_scores(st, doc.text, k=0.2, ref_loss=ref_st.loss)
        want = reference_scores(lp, mu, sigma, doc.text, ref_lp=ref_lp)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
        assert st.loss == pytest.approx(-got["loss"])


def test_scores_of_a_short_sequence_and_a_degenerate_distribution():
    # Min-K% over fewer than 1/k tokens: the single lowest token (MIMIR's int() would average nothing)
    st = TokenStats(np.array([-1.0, -3.0, -2.0], np.float32), np.zeros(3, np.float32), np.ones(3, np.float32))
    s = member_scores(st, "abc", k=0.2)
    assert s["min_k"] == -3.0 and s["min_k_pp"] == -3.0 and s["loss"] == -2.0
    assert s["zlib"] == pytest.approx(-2.0 / len(zlib.compress(b"abc")))
    # a one-hot next-token distribution has sigma 0: Min-K%++ is not finite (left out of the metrics)
    st = TokenStats(np.array([-1.0, 0.0], np.float32), np.array([-1.0, 0.0], np.float32), np.zeros(2, np.float32))
    assert not np.isfinite(member_scores(st, "ab")["min_k_pp"])
