"""Small text helpers shared by the operations, the reward, the features and the simulated backend.

Everything here is pure (NumPy only): word tokenisation, a stop-word list, ROUGE-L-like and Jaccard
overlap, single-pass template filling (so that braces or placeholder names inside an instruction are
never re-substituted), matching a filled template back to its values, stable vectorised n-gram hashes
(the same on every machine, unlike ``hash``), and detecting structured input (tables, JSON, code).
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


@lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with an optional apostrophe suffix such as ``don't``).

    Cached: the gates, the features and the novelty memory all tokenise the same texts each step."""
    return list(_words(text))


def content_words(text: str) -> list[str]:
    """``words(text)`` without stop words."""
    return [w for w in words(text) if w not in STOP_WORDS]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)), one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 between two texts on ``words`` tokens (1.0 for two empty texts)."""
    ta, tb = words(a), words(b)
    if not ta or not tb:
        return float(ta == tb)
    lcs = lcs_length(ta, tb)
    return 0.0 if lcs == 0 else 2.0 * lcs / (len(ta) + len(tb))


def jaccard(a: set | frozenset, b: set | frozenset) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


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


_stable_hash_cached = lru_cache(maxsize=1 << 16)(stable_hash)
_M32 = np.uint64(0xFFFFFFFF)


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
    h = np.fromiter((_stable_hash_cached(t) for t in tokens), np.uint64, len(tokens))
    return mix32(h ^ np.uint64(0x5BD1E995)), mix32((h[:-1] * np.uint64(0x9E3779B1)) ^ h[1:])


def byte_trigram_hashes(text: str) -> np.ndarray:
    """Hashes [len-2] of the UTF-8 byte 3-grams of ``text`` (uint64 holding 32-bit values), vectorised."""
    b = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.uint64)
    if len(b) < 3:
        return np.zeros(0, np.uint64)
    return mix32((b[:-2] << np.uint64(16)) | (b[1:-1] << np.uint64(8)) | b[2:] | np.uint64(0x3000000))


_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$", re.M)
_JSON_START = re.compile(r"^\s*[\[{]", re.M)
_JSON_KEY = re.compile(r"\"\s*:")


def has_structured_input(text: str) -> bool:
    """True when the text carries a markdown table (2+ rows), a fenced code block or a JSON object/list."""
    return (len(_TABLE_ROW.findall(text)) >= 2 or "```" in text
            or bool(_JSON_START.search(text) and _JSON_KEY.search(text)))
