"""State features (observations), vectorised over the batch of chains. Pure functions, numpy float32.

``paper``: the one-hot of the previous action (all zeros at reset), as in the original. The running
mean/std normalisation the original applies happens in the RL core, not here.

``default``: a description of the current instruction, laid out as
``[hashed text (dim) | one-hot previous action (A) | step fraction t/H (1) | stats (4)]``:
- hashed text: word unigrams, word bigrams and (UTF-8 byte) 3-grams of the lower-cased words, each group
  hashed with a signed hashing trick (stable 32-bit hashes from ``text.batch_word_ngram_hashes`` /
  ``batch_byte_trigram_hashes``; bucket = h mod dim, sign from bit 31), L2-normalised per group, summed and
  L2-normalised again so that no group dominates by count; computed for the whole batch at once, and
  cached per text by ``TextFeatureCache`` in the environment;
- stats: log-scaled word count and line count, whether a structured input (table/JSON/code) is present,
  and log-scaled sentence count, each roughly in [0, 1].

``embedding``: the same layout with the hashed text replaced by a sentence embedding of the instruction
(``encoder.SentenceEncoder``, e.g. all-MiniLM-L6-v2 from a local folder; 384 wide).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from teamsrl_jax.env.text import batch_byte_trigram_hashes, batch_word_ngram_hashes, has_structured_input, word_tuple

FEATURE_KINDS = ("paper", "default", "embedding")
NUM_STATS = 4
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def obs_dim(kind: str, num_actions: int, text_dim: int) -> int:
    """Observation width for a feature kind (``text_dim``: hashed width, or the encoder's width)."""
    return num_actions if kind == "paper" else text_dim + num_actions + 1 + NUM_STATS


def one_hot_previous(prev_actions: np.ndarray, num_actions: int) -> np.ndarray:
    """[N, A] one-hot of the previous actions; a negative entry (no previous action) gives zeros."""
    prev_actions = np.asarray(prev_actions)
    out = np.zeros((len(prev_actions), num_actions), np.float32)
    has = prev_actions >= 0
    out[np.nonzero(has)[0], prev_actions[has]] = 1.0
    return out


def _signed_counts(hashes: np.ndarray, rows: np.ndarray, n: int, dim: int) -> np.ndarray:
    """[n, dim] float64 signed bucket counts (bucket h mod dim, sign + when bit 31 is set), L2-normalised per
    row. Counts are integers, so their sums and norms are exact: a row never depends on the other rows."""
    weights = np.where(hashes >> np.uint64(31), 1.0, -1.0)
    flat = rows * dim + (hashes % np.uint64(dim)).astype(np.int64)
    counts = np.bincount(flat, weights, minlength=n * dim).astype(np.float64, copy=False).reshape(n, dim)
    norms = np.sqrt(np.square(counts).sum(axis=1, keepdims=True))
    return np.divide(counts, norms, out=np.zeros_like(counts), where=norms > 0)


def hashed_text(texts: Sequence[str], dim: int) -> np.ndarray:
    """[N, dim] signed hashed word 1-2-grams + byte 3-grams, L2-normalised (zeros for empty text).

    Vectorised over the batch: one hashing pass over all tokens / bytes, one ``bincount`` per group."""
    n = len(texts)
    tokens = [word_tuple(t) for t in texts]
    unigrams, uni_rows, bigrams, bi_rows = batch_word_ngram_hashes(tokens)
    trigrams, tri_rows = batch_byte_trigram_hashes([f" {' '.join(t)} " if t else "" for t in tokens])
    out = (_signed_counts(unigrams, uni_rows, n, dim) + _signed_counts(bigrams, bi_rows, n, dim)
           + _signed_counts(trigrams, tri_rows, n, dim))
    norms = np.sqrt(np.square(out).sum(axis=1, keepdims=True))
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)


def text_stats(texts: Sequence[str]) -> np.ndarray:
    """[N, 4]: log word count / log 257, log line count / log 33, structured input (0/1),
    log sentence count / log 17."""
    rows = [(math.log1p(len(word_tuple(t))) / math.log(257), math.log1p(t.count("\n") + 1) / math.log(33),
             float(has_structured_input(t)), math.log1p(len(_SENTENCE_END.findall(t))) / math.log(17))
            for t in texts]
    return np.asarray(rows, np.float32).reshape(len(texts), NUM_STATS)


class TextFeatureCache:
    """text -> its row of ``[hashed text (dim) | stats (4)]``, so that an unchanged instruction (a chain whose
    rewrite was eliminated, a seed drawn again) is not featurised twice. Bounded: the oldest entries go
    first. A row depends only on its text, so the cache changes no result (nor does a resumed run's empty
    one). Not for sentence embeddings, whose float rounding depends on the padded batch they ran in."""

    def __init__(self, dim: int, capacity: int = 8192):
        self.dim, self.capacity = dim, capacity
        self._rows: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim + 4] float32: the rows of ``texts``, computed in one batch for those not cached."""
        if not texts:
            return np.zeros((0, self.dim + NUM_STATS), np.float32)
        rows = {t: self._rows.get(t) for t in texts}
        missing = [t for t, row in rows.items() if row is None]
        if missing:
            fresh = np.concatenate([hashed_text(missing, self.dim), text_stats(missing)], axis=1)
            rows.update(zip(missing, fresh))
            self._rows.update(zip(missing, fresh))
            for key in list(self._rows)[:max(0, len(self._rows) - self.capacity)]:
                del self._rows[key]  # dicts keep insertion order: the oldest go first
        return np.stack([rows[t] for t in texts])


def default_features(text_part: np.ndarray, stats: np.ndarray, prev_actions: np.ndarray, step: int, horizon: int,
                     num_actions: int) -> np.ndarray:
    """[N, text_dim + A + 1 + 4] float32 in the layout of the module docstring, from the text part [N, text_dim]
    (``hashed_text``, or sentence embeddings for the ``embedding`` kind) and the ``text_stats`` [N, 4] of the
    same texts, the previous actions [N] (-1: none) and the step ``step`` of ``horizon``."""
    n = len(text_part)
    return np.concatenate([np.asarray(text_part, np.float32), one_hot_previous(prev_actions, num_actions),
                           np.full((n, 1), step / horizon, np.float32), np.asarray(stats, np.float32)], axis=1)
