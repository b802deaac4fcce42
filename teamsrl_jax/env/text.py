"""Small text helpers shared by the operations, the reward, the features and the simulated backend.

Everything here is pure (NumPy only): word tokenisation, a stop-word list, ROUGE-L-like and Jaccard
overlap (LCS bit-parallel), single-pass template filling (so that braces or placeholder names inside an
instruction are never re-substituted), matching a filled template back to its values, stable n-gram hashes
vectorised over a whole batch of texts (the same on every machine and process, unlike ``hash``: resume
depends on it), and detecting structured input (tables, JSON, code).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

STOP_WORDS = frozenset("""
a an the and or but if then else of to in on at by for with from into onto over under about as is are was
were be been being am do does did doing have has had having it its this that these those there here what
which who whom whose when where why how all any both each few more most other some such no nor not only
own same so than too very can will just should would could may might must shall i me my we our you your
he him his she her they them their us also up down out off again further once s t
""".split())


@lru_cache(maxsize=16384)
def word_tuple(text: str) -> tuple[str, ...]:
    """``words(text)`` as a tuple, cached: the gates, the features, the novelty memory and the simulated
    reviewer all tokenise the same texts each step."""
    return tuple(_WORD.findall(text.lower()))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with an optional apostrophe suffix such as ``don't``)."""
    return list(word_tuple(text))


def content_words(text: str) -> list[str]:
    """``words(text)`` without stop words."""
    return [w for w in word_tuple(text) if w not in STOP_WORDS]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel (Hyyrö 2004): one bit per token of ``b`` in a Python int, a few big-int operations per
    token of ``a``: O(len(a) · len(b) / word size) instead of the O(len(a) · len(b)) table."""
    if not a or not b:
        return 0
    positions: dict[str, int] = {}
    for j, y in enumerate(b):
        positions[y] = positions.get(y, 0) | (1 << j)
    full = (1 << len(b)) - 1
    v = full  # a zero bit marks a column where the LCS grew
    for x in a:
        match = positions.get(x)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 between two texts on ``words`` tokens (1.0 for two empty texts)."""
    ta, tb = word_tuple(a), word_tuple(b)
    if not ta or not tb:
        return float(ta == tb)
    lcs = lcs_length(ta, tb)
    return 0.0 if lcs == 0 else 2.0 * lcs / (len(ta) + len(tb))


def fill_template(template: str, **values: str) -> str:
    """Replace every ``{name}`` for the given names in one pass; other braces are left alone.

    ``str.format`` would choke on literal braces in a template (JSON examples) and a chain of
    ``str.replace`` calls would substitute placeholders that appear inside an inserted value.
    """
    if not values:
        return template
    pattern = re.compile(r"\{(" + "|".join(re.escape(k) for k in values) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], template)


def template_matcher(template: str, names: Sequence[str]) -> re.Pattern[str]:
    """A regex that matches ``fill_template(template, **values)`` in full and captures each value.

    A placeholder used more than once must carry the same value each time (a back-reference).
    """
    pattern = re.compile(r"\{(" + "|".join(re.escape(n) for n in names) + r")\}")
    out, seen, pos = [], set(), 0
    for m in pattern.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out), re.DOTALL)


def stable_hash(s: str) -> int:
    """A 32-bit hash that is the same in every process and on every machine (unlike ``hash``)."""
    return zlib.crc32(s.encode("utf-8"))


_WORD_HASHES: dict[str, int] = {}
_WORD_HASHES_MAX = 1 << 17  # bounded: emptied when full (hashes are pure, so this changes no result)
_M32 = np.uint64(0xFFFFFFFF)
_UNIGRAM_SALT, _BIGRAM_MUL, _TRIGRAM_TAG = np.uint64(0x5BD1E995), np.uint64(0x9E3779B1), np.uint64(0x3000000)


def word_hashes(tokens: Sequence[str]) -> np.ndarray:
    """crc32 of each token as uint64 [T]; every distinct word is hashed once (bounded word -> hash cache)."""
    get = _WORD_HASHES.get
    hashes = [get(t) for t in tokens]
    if None in hashes:
        if len(_WORD_HASHES) > _WORD_HASHES_MAX:
            _WORD_HASHES.clear()
        for i, h in enumerate(hashes):
            if h is None:
                hashes[i] = _WORD_HASHES[tokens[i]] = stable_hash(tokens[i])
    return np.array(hashes, np.uint64).reshape(len(hashes))


def mix32(h: np.ndarray) -> np.ndarray:
    """Murmur3's 32-bit finaliser on uint64 arrays: spreads every input bit over all 32 output bits."""
    h = h & _M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    return h ^ (h >> np.uint64(16))


def word_ngram_hashes(tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(unigram hashes [T], bigram hashes [T-1]) as 32-bit values in uint64 arrays; stable everywhere.

    Words are hashed once with crc32 (cached); bigrams combine the two word hashes with ``mix32``."""
    h = word_hashes(tokens)
    return mix32(h ^ _UNIGRAM_SALT), mix32((h[:-1] * _BIGRAM_MUL) ^ h[1:])


def batch_word_ngram_hashes(token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, ...]:
    """``word_ngram_hashes`` of many texts at once: (unigrams, their row, bigrams, their row), each 1-D.

    One hashing pass over all tokens; bigrams are formed over the concatenation and the pairs that
    straddle two texts are dropped."""
    lengths = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
    h = word_hashes([t for tokens in token_lists for t in tokens])
    rows = np.repeat(np.arange(len(token_lists)), lengths)
    inside = rows[:-1] == rows[1:]
    return (mix32(h ^ _UNIGRAM_SALT), rows,
            mix32((h[:-1][inside] * _BIGRAM_MUL) ^ h[1:][inside]), rows[:-1][inside])


def _trigrams(b: np.ndarray) -> np.ndarray:
    return mix32((b[:-2] << np.uint64(16)) | (b[1:-1] << np.uint64(8)) | b[2:] | _TRIGRAM_TAG)


def byte_trigram_hashes(text: str) -> np.ndarray:
    """Hashes [len-2] of the UTF-8 byte 3-grams of ``text`` (uint64 holding 32-bit values), vectorised."""
    b = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.uint64)
    return _trigrams(b) if len(b) >= 3 else np.zeros(0, np.uint64)


def batch_byte_trigram_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``byte_trigram_hashes`` of many texts at once: (hashes, their row), over one concatenated buffer."""
    encoded = [t.encode("utf-8") for t in texts]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    b = np.frombuffer(b"".join(encoded), np.uint8).astype(np.uint64)
    if len(b) < 3:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(texts)), lengths)
    inside = rows[:-2] == rows[2:]
    return _trigrams(b)[inside], rows[:-2][inside]


_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$", re.M)
_JSON_START = re.compile(r"^\s*[\[{]", re.M)
_JSON_KEY = re.compile(r"\"\s*:")


def has_structured_input(text: str) -> bool:
    """True when the text carries a markdown table (2+ rows), a fenced code block or a JSON object/list."""
    return (len(_TABLE_ROW.findall(text)) >= 2 or "```" in text
            or bool(_JSON_START.search(text) and _JSON_KEY.search(text)))
