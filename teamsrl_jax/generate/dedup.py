"""Near-duplicate filtering by ROUGE-L, exact and fast enough for 100K instructions.

The rule is Self-Instruct's: an instruction is kept only if its ROUGE-L F-measure against every
instruction kept so far is below the threshold (0.7); at or above it, it is a near-duplicate and dropped.
The paper says "added only when its ROUGE-L similarity with any existing instruction is less than 0.7",
and that is the rule here (drop at ``>=``); Self-Instruct's and Alpaca's code drop at ``> 0.7``. The two
differ only for a pair at exactly the threshold.

Scores are those of ``rouge_score`` 0.1.2 (``RougeScorer(["rougeL"], use_stemmer=False)``), float for
float: its tokeniser (lower-case, runs of ``[a-z0-9]``) and its F-measure arithmetic.

Speed without approximation comes from prefix filtering on token multisets. Each text is a set of
elements (token, k-th occurrence), so the multiset overlap of two texts is the size of the intersection
of their element sets, and LCS <= overlap. For sizes m, n, F = 2 L / (m + n) >= t needs
L >= t (m + n) / 2, and L <= min(m, n) confines a partner's size to [t n / (2 - t), n (2 - t) / t]; over
those sizes the overlap any partner needs is at least o(n) = ceil(t n / (2 - t)). Sort every element set
in one fixed global order: if two sets share at least o elements, the first shared element sits within
the first (size - o + 1) elements of both (at most size - o elements of either are unshared). So each
kept text is indexed under its first m - o(m) + 1 elements, a new text probes the index with its first
n - o(n) + 1, and no pair at or above the threshold is missed. The order puts rare elements first (their
document frequency in an optional ``vocabulary`` corpus; unseen ones rarest, tied by a stable hash), so
the probed lists are short. Candidates are checked by size, by two bounds on their overlap from the prefix
elements they share with the query (see ``NearDuplicateFilter``), by the exact overlap, and last by the
exact LCS (bit-parallel, the new text's bit masks built once). All bounds
use the threshold lowered by a relative 1e-9, so float rounding cannot drop a true candidate; the final
decision is always rouge_score's float compared with the threshold.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Sequence

import numpy as np

from teamsrl_jax.env.text import STOP_WORDS, lcs_length, stable_hash

_TOKEN = re.compile(r"[a-z0-9]+")
_MARGIN = 1e-9  # relative slack on every bound: rouge_score's floats differ from exact ratios by ~1e-16


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenisation: lower-case, every maximal run of ``[a-z0-9]`` is a token."""
    return _TOKEN.findall(text.lower())


def rouge_l_f(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token lists, the same float as ``rouge_score`` (0.0 if either is empty)."""
    if not a or not b:
        return 0.0
    return _f_measure(lcs_length(a, b), len(a), len(b))


def _f_measure(lcs: int, m: int, n: int) -> float:
    """rouge_score's arithmetic: precision, recall, then 2 p r / (p + r) (symmetric in m and n, bit for bit)."""
    precision, recall = lcs / n, lcs / m
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")


def _elements(tokens: Sequence[str]) -> list[str]:
    """Each token with its occurrence number: "the", "cat", "the 1" (tokens hold no spaces)."""
    seen: dict[str, int] = {}
    out = []
    for token in tokens:
        k = seen.get(token, 0)
        seen[token] = k + 1
        out.append(f"{token} {k}" if k else token)
    return out


class _Order(dict):
    """element -> sort key (document frequency, crc32, element): a fixed total order, rarest first."""

    def __init__(self, frequency: dict[str, int]):
        super().__init__()
        self.frequency = frequency

    def __missing__(self, element: str) -> tuple[int, int, str]:
        key = self[element] = (self.frequency.get(element, 0), stable_hash(element), element)
        return key


def _bit_masks(tokens: Sequence[str]) -> dict[str, int]:
    """token -> bit mask of its positions (the query side of the bit-parallel LCS, built once per query)."""
    masks: dict[str, int] = {}
    for j, token in enumerate(tokens):
        masks[token] = masks.get(token, 0) | (1 << j)
    return masks


def _lcs_with(masks: dict[str, int], width: int, tokens: Sequence[str]) -> int:
    """LCS of ``tokens`` against the text behind ``masks`` (``width`` tokens); as ``env.text.lcs_length``."""
    full = (1 << width) - 1
    v = full
    for token in tokens:
        match = masks.get(token)
        if match:
            u = v & match
            v = ((v + u) | (v - u)) & full
    return width - bin(v).count("1")


_POS_BITS = 24  # a posting packs (kept index << 24 | position in its sorted elements)
_POS_MAX = (1 << _POS_BITS) - 1  # positions are clipped to it: a smaller position only loosens the bound


class NearDuplicateFilter:
    """Keeps texts whose ROUGE-L against every kept text is below ``threshold``; exact, indexed.

    ``vocabulary``: texts (e.g. the seed instructions) whose document frequencies order the tokens, rarest
    first; it only affects speed. Without it, stop words go last and other tokens are ordered by hash.

    Before the exact overlap and LCS, candidates are pruned with two bounds on their overlap with the
    query, from the c prefix elements they share with it: the uncounted shared elements all come after
    the earlier of the two prefix ends, so they lie in that text's suffix (PPJoin's count bound), and
    they all come after the last counted match, so they fit in the shorter of the two remainders after it
    (its positional bound).
    """

    def __init__(self, threshold: float = 0.7, vocabulary: Iterable[str] | None = None):
        _check_threshold(threshold)
        self.threshold = threshold
        self._t = threshold * (1 - _MARGIN)
        frequency: dict[str, int] = {}
        if vocabulary is None:
            frequency = dict.fromkeys(STOP_WORDS, 1)
        else:
            for text in vocabulary:
                for element in set(_elements(rouge_tokens(text))):
                    frequency[element] = frequency.get(element, 0) + 1
        self._order = _Order(frequency)
        self._postings: dict[str, array] = {}
        self._tokens: list[tuple[str, ...]] = []
        self._elements: list[tuple[str, ...]] = []
        # per kept text: size, prefix length, (frequency << 32 | crc32) of its last prefix element
        self._meta = np.zeros((64, 3), np.int64)

    def __len__(self) -> int:
        return len(self._tokens)

    def _min_overlap(self, n: int) -> int:
        """The least overlap any admissible partner of a size-n text needs: ceil(t n / (2 - t))."""
        return math.ceil(self._t * n / (2 - self._t))

    def _prefix(self, elements: list[str]) -> tuple[int, int]:
        """(prefix length, coarse order key of its last element; equal keys leave the order open)."""
        n = len(elements)
        length = n - self._min_overlap(n) + 1
        frequency, crc, _ = self._order[elements[length - 1]]
        return length, frequency << 32 | crc

    def _prepare(self, text: str) -> tuple[list[str], list[str]]:
        tokens = rouge_tokens(text)
        elements = _elements(tokens)
        elements.sort(key=self._order.__getitem__)
        return tokens, elements

    def _candidates(self, elements: list[str]) -> np.ndarray:
        """Kept indices that may reach the threshold with the query, increasing."""
        n, t = len(elements), self._t
        px, kx = self._prefix(elements)
        parts, probes = [], []
        for i, element in enumerate(elements[:px]):
            posting = self._postings.get(element)
            if posting:
                parts.append(posting)
                probes.append(i)
        if not parts:
            return np.zeros(0, np.int64)
        packed = np.frombuffer(b"".join(parts), np.int64)
        at = np.repeat(np.array(probes), [len(p) for p in parts])
        # the last match of each candidate: its first occurrence in the reversed probe order
        ids, first, shared = np.unique((packed >> _POS_BITS)[::-1], return_index=True, return_counts=True)
        last = len(packed) - 1 - first
        i_last, j_last = at[last], packed[last] & _POS_MAX
        m, py, ky = self._meta[ids].T
        need = np.ceil(t * (m + n) / 2)
        size_ok = (m >= self._min_overlap(n)) & (m <= math.floor(n * (2 - t) / t))
        rest = np.where(kx < ky, n - px, np.where(kx > ky, m - py, np.maximum(n - px, m - py)))
        bound = shared + np.minimum(rest, np.minimum(n - i_last, m - j_last) - 1)
        return ids[size_ok & (bound >= need)]

    def _check(self, tokens: list[str], elements: list[str]) -> tuple[float, int | None]:
        n = len(tokens)
        if n == 0:
            return 0.0, None
        candidates = self._candidates(elements)
        if not len(candidates):
            return 0.0, None
        t = self._t
        query = set(elements)
        masks = _bit_masks(tokens)
        best, best_j = 0.0, None
        for j in candidates.tolist():
            other = self._tokens[j]
            m = len(other)
            overlap = len(query.intersection(self._elements[j]))
            if overlap < math.ceil(t * (m + n) / 2):
                continue
            if best_j is not None and 2 * min(overlap, m, n) / (m + n) < best * (1 - _MARGIN):
                continue  # cannot beat the best so far
            score = _f_measure(_lcs_with(masks, n, other), m, n)
            if score > best:
                best, best_j = score, j
        return best, best_j

    def _add(self, tokens: list[str], elements: list[str]) -> int:
        j = len(self._tokens)
        self._tokens.append(tuple(tokens))
        self._elements.append(tuple(elements))
        if j == len(self._meta):
            self._meta = np.concatenate([self._meta, np.zeros_like(self._meta)])
        m = len(tokens)
        if m:
            length, key = self._prefix(elements)
            self._meta[j] = m, length, key
            for position, element in enumerate(elements[:length]):
                posting = self._postings.get(element)
                if posting is None:
                    posting = self._postings[element] = array("q")
                posting.append(j << _POS_BITS | min(position, _POS_MAX))
        return j

    def check(self, text: str) -> tuple[float, int | None]:
        """(max ROUGE-L against the kept texts, index of that text), exact whenever it reaches the
        threshold (the first such text on ties); below it, the best of the candidates looked at (0.0, None
        when there were none)."""
        return self._check(*self._prepare(text))

    def add(self, text: str) -> int:
        """Keep ``text`` unconditionally; returns its index."""
        return self._add(*self._prepare(text))

    def offer(self, text: str) -> tuple[bool, float, int | None]:
        """Check ``text`` and keep it when novel: (kept, score, index of the closest kept text)."""
        tokens, elements = self._prepare(text)
        score, match = self._check(tokens, elements)
        kept = score < self.threshold
        if kept:
            self._add(tokens, elements)
        return kept, score, match

    def filter(self, texts: Iterable[str], progress: bool = False) -> list[bool]:
        """``offer`` each text in order; True where it was kept."""
        if progress:
            from tqdm.auto import tqdm

            texts = tqdm(texts, desc="rouge-l dedup", unit="text")
        return [self.offer(text)[0] for text in texts]


def all_pairs_filter(texts: Sequence[str], threshold: float = 0.7) -> list[bool]:
    """The plain O(n^2) filter, the reference for ``NearDuplicateFilter``: each text against every kept one."""
    _check_threshold(threshold)
    kept: list[list[str]] = []
    decisions = []
    for text in texts:
        tokens = rouge_tokens(text)
        novel = all(rouge_l_f(tokens, other) < threshold for other in kept)
        decisions.append(novel)
        if novel:
            kept.append(tokens)
    return decisions
