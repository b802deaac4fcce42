"""State features (observations), vectorised over the batch of chains. Pure functions, numpy float32.

``paper``: the one-hot of the previous action (all zeros at reset), as in the original. The running
mean/std normalisation the original applies happens in the RL core, not here.

``default``: a description of the current instruction, laid out as
``[hashed text (dim) | one-hot previous action (A) | step fraction t/H (1) | stats (4)]``:
- hashed text: word unigrams, word bigrams and (UTF-8 byte) 3-grams of the lower-cased words, each group
  hashed with a signed hashing trick (stable 32-bit hashes from ``text.word_ngram_hashes`` /
  ``byte_trigram_hashes``; bucket = h mod dim, sign from bit 31), L2-normalised per group, summed and
  L2-normalised again so that no group dominates by count;
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

from teamsrl_jax.env.text import byte_trigram_hashes, has_structured_input, word_ngram_hashes, words

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


def _add_group(vec: np.ndarray, hashes: np.ndarray) -> None:
    """Add one L2-normalised group of signed hashed features (bucket h mod dim, sign from bit 31)."""
    if not len(hashes):
        return
    dim = len(vec)
    group = np.zeros(dim, np.float32)
    np.add.at(group, (hashes % np.uint64(dim)).astype(np.int64),
              np.where(hashes >> np.uint64(31), 1.0, -1.0).astype(np.float32))
    norm = np.linalg.norm(group)
    if norm > 0:
        vec += group / norm


def hashed_text(texts: Sequence[str], dim: int) -> np.ndarray:
    """[N, dim] signed hashed word 1-2-grams + byte 3-grams, L2-normalised (zeros for empty text)."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        tokens = words(text)
        if not tokens:
            continue
        unigrams, bigrams = word_ngram_hashes(tokens)
        for group in (unigrams, bigrams, byte_trigram_hashes(f" {' '.join(tokens)} ")):
            _add_group(out[i], group)
        out[i] /= np.linalg.norm(out[i])
    return out


def text_stats(texts: Sequence[str]) -> np.ndarray:
    """[N, 4]: log word count / log 257, log line count / log 33, structured input (0/1),
    log sentence count / log 17."""
    rows = [(math.log1p(len(words(t))) / math.log(257), math.log1p(t.count("\n") + 1) / math.log(33),
             float(has_structured_input(t)), math.log1p(len(_SENTENCE_END.findall(t))) / math.log(17))
            for t in texts]
    return np.asarray(rows, np.float32).reshape(len(texts), NUM_STATS)


def default_features(texts: Sequence[str], prev_actions: np.ndarray, step: int, horizon: int,
                     num_actions: int, text_dim: int, text_vectors: np.ndarray | None = None) -> np.ndarray:
    """[N, text_dim + A + 1 + 4] float32 (layout in the module docstring). ``text_vectors`` [N, text_dim]
    replaces the hashed text part (the ``embedding`` kind passes sentence embeddings here)."""
    n = len(texts)
    text_part = hashed_text(texts, text_dim) if text_vectors is None else np.asarray(text_vectors, np.float32)
    return np.concatenate([text_part, one_hot_previous(prev_actions, num_actions),
                           np.full((n, 1), step / horizon, np.float32), text_stats(texts)], axis=1)
