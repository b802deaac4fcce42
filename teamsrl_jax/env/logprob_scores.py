"""The reviewer's score or verdict from its token log-probabilities (``Completion.logprobs``).

A reviewer that writes "Score: 7" had, at the position of the "7", a distribution over every score it might
have written. Its mean says more than the sampled digit (a 7 chosen over an almost-as-likely 8 is not a 7
chosen over a 2), and reading it needs no agreement on the reply's format. ``Reward.score`` uses these
readers where the completion carries log-probabilities and falls back to parsing the text where they find
no position to read.

Score: the position is the first generated token that is a score number (its stripped text an integer in
1..10 that is not part of a longer number) right after a "Score:"-style label; without a label, a number that
opens the reply (as after a "Score:" prefill) or that is followed by "/10" or "out of 10". Numbers that state
the scale ("1-10") are skipped, and a number elsewhere in the prose ("a 10-year-old") is not a score. Among that position's alternatives
(``TokenLogprob.top`` and the generated token) the score numbers are kept, their probabilities
renormalised, and the score is their probability-weighted mean.

"10" as two tokens: tokenizers that split digits (Llama 2, SmolLM2, Qwen) write 10 as "1" then "0", so the
alternative "1" stands for 1 and 10 together:
- where "1" was generated, the next position tells them apart: a continuation starting with "0" is 10, one
  that ends the number is 1, another digit (11, 12, ...) is out of range and dropped;
- where another number was generated, the split is unknown: the mass of "1" goes to the end of the scale
  nearer the generated number (10 after 6..10, 1 after 2..5), since a reviewer's scores are unimodal: mass
  at "1" next to a generated 9 is a 10.
A tokenizer with a "10" token of its own (Llama 3, GPT-4) lists it among the alternatives; then "1" is 1.

Opened replies (``RewardConfig.prefill``: the reply was made to start after "Score:" or "Answer:"): the score
or verdict is read at the reply's first token (or the second, after a token of whitespace alone) from the
alternatives there, whatever was generated: a small model may write a word where a number belongs, yet its
distribution at that position still ranks the scores (the mean is then over the score numbers only, that is,
given that it writes a score).

Verdict (the paper reward): at the first generated token that reads "equal" or "not" (case, spaces and
markdown ignored), after the last "Answer:"-style label if there is one (as ``reward.parse_verdict``), the
verdict is Not Equal when the alternatives reading "not" are together likelier than those reading "equal".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from teamsrl_jax.backends.base import TokenLogprob

ANSWER_LABEL = re.compile(r"\b(?:final\s+answer|answer|verdict|judge?ment|decision|conclusion|result)\s*[:\-–]",
                          re.I)
_SCORE_LABEL = re.compile(r"\b(?:score|rating|grade|mark)\b(?:\s*[(\[][^)\]\n]{0,12}[)\]])?[^\w\n]{0,6}?"
                          r"(?:is\s+|of\s+)?[*_\s]*$", re.I)
_SCALE_BEFORE = re.compile(r"(?:/|\bout\s+of|\d\s*(?:-|–|\bto))\s*[*_]*\s*$", re.I)
_SCALE_AFTER = re.compile(r"^\s*(?:-|–|to\b)\s*\d", re.I)
_DIGITS = re.compile(r"[0-9]+")
_OPENING = re.compile(r"[\s*_#>\"']*")          # only markup before the number: it opens the reply
_OUT_OF_TEN = re.compile(r"\s*[*_]*\s*(?:/|out\s+of)\s*10\b", re.I)


def _alternatives(token: TokenLogprob) -> dict[str, float]:
    """Token text -> log-probability at one position: the listed alternatives and the generated token."""
    alternatives = dict(token.top)
    alternatives.setdefault(token.token, token.logprob)
    return alternatives


def _offsets(tokens: Sequence[TokenLogprob]) -> tuple[str, list[int]]:
    """The generated text and the character offset where each token starts."""
    starts, at = [], 0
    for t in tokens:
        starts.append(at)
        at += len(t.token)
    return "".join(t.token for t in tokens), starts


def _score_position(tokens: Sequence[TokenLogprob]) -> int | None:
    """The position to read the score at (see the module docstring), or None."""
    text, starts = _offsets(tokens)
    first = None
    for i, token in enumerate(tokens):
        stripped = token.token.strip()
        if not _DIGITS.fullmatch(stripped):
            continue
        begin = starts[i] + token.token.index(stripped)
        number = _DIGITS.match(text, begin).group()
        if (begin and text[begin - 1].isdigit()) or not 1 <= int(number) <= 10:
            continue  # inside a longer number, or out of range
        before, after = text[:begin], text[begin + len(number):]
        if _SCALE_BEFORE.search(before) or _SCALE_AFTER.match(after):
            continue  # "(1-10)", "out of 10": the scale, not a score
        if _SCORE_LABEL.search(before):
            return i
        if first is None and (_OPENING.fullmatch(before) or _OUT_OF_TEN.match(after)):
            first = i
    return first


def _zero_share(token: TokenLogprob) -> float:
    """After a generated "1": the probability that the number goes on as "10" rather than ending at 1."""
    zero = end = 0.0
    for text, logprob in _alternatives(token).items():
        p = math.exp(logprob)
        if text.startswith("0") and not text[1:2].isdigit():
            zero += p
        elif not text[:1].isdigit():
            end += p
    return zero / (zero + end) if zero + end > 0 else 0.0


def _opening_positions(tokens: Sequence[TokenLogprob]) -> list[int]:
    """The first position of an opened reply, and the second when the first is whitespace alone."""
    if not tokens:
        return []
    return [0, 1][:len(tokens)] if not tokens[0].token.strip() else [0]


def _opened_score(tokens: Sequence[TokenLogprob]) -> float | None:
    """The mean over the score numbers among the alternatives at the opening position (None: none there)."""
    for i in _opening_positions(tokens):
        mass: dict[int, float] = {}
        for text, logprob in _alternatives(tokens[i]).items():
            stripped = text.strip()
            if _DIGITS.fullmatch(stripped) and 1 <= int(stripped) <= 10:
                mass[int(stripped)] = mass.get(int(stripped), 0.0) + math.exp(logprob)
        if not mass:
            continue
        if 1 in mass and not any(t.strip() == "10" for t in _alternatives(tokens[i])):
            one = mass.pop(1)  # "1" may begin 10: split by the next position if "1" was generated, else the
            if tokens[i].token.strip() == "1":  # nearer end of the scale, as in score_from_logprobs
                ten = _zero_share(tokens[i + 1]) if i + 1 < len(tokens) else 0.0
                mass[10], mass[1] = mass.get(10, 0.0) + one * ten, one * (1.0 - ten)
            else:
                others = sum(v * p for v, p in mass.items()) / sum(mass.values()) if mass else 1.0
                end = 10 if others >= 5.5 else 1
                mass[end] = mass.get(end, 0.0) + one
        total = sum(mass.values())
        if total > 0:
            return sum(v * p for v, p in mass.items()) / total
    return None


def score_from_logprobs(tokens: Sequence[TokenLogprob] | None, *, opened: bool = False) -> tuple[float | None, str]:
    """(expected score in [1, 10] or None, note): the probability-weighted mean over the score tokens at the
    score position (see the module docstring); ``opened``: the reply began right after a "Score:" prefill."""
    if opened:
        value = _opened_score(tokens or ())
        if value is not None:
            return value, ""
    i = _score_position(tokens or ())
    if i is None:
        return None, "no score token among the reviewer's tokens"
    text, starts = _offsets(tokens)
    begin = starts[i] + tokens[i].token.index(tokens[i].token.strip())
    generated = int(_DIGITS.match(text, begin).group())
    alternatives = _alternatives(tokens[i])
    ten_token = any(t.strip() == "10" for t in alternatives)
    mass: dict[int, float] = {}
    for token_text, logprob in alternatives.items():
        stripped = token_text.strip()
        if not _DIGITS.fullmatch(stripped) or not 1 <= int(stripped) <= 10:
            continue
        value, p = int(stripped), math.exp(logprob)
        if value == 1 and not ten_token:
            if token_text == tokens[i].token:  # generated: the next position splits 1 from 10
                ten = _zero_share(tokens[i + 1]) if i + 1 < len(tokens) else 0.0
                mass[10] = mass.get(10, 0.0) + p * ten
                p *= 1.0 - ten
            else:
                value = 10 if generated >= 6 else 1
        mass[value] = mass.get(value, 0.0) + p
    total = sum(mass.values())
    if not total > 0:  # every probability underflowed: the generated number is all there is
        return float(generated), ""
    return sum(v * p for v, p in mass.items()) / total, ""


def _verdict_word(token_text: str) -> str:
    return re.sub(r"[^a-z]", "", token_text.lower())


def _verdict_mass(token: TokenLogprob) -> dict[str, float]:
    mass = {"equal": 0.0, "not": 0.0}
    for token_text, logprob in _alternatives(token).items():
        word = _verdict_word(token_text)
        if word in mass:
            mass[word] += math.exp(logprob)
    return mass


def verdict_from_logprobs(tokens: Sequence[TokenLogprob] | None, *, opened: bool = False) -> tuple[bool | None, str]:
    """(True for Not Equal / False for Equal / None, note) from the probabilities of "not" against "equal"
    at the first position that generated one of them (after the last answer label, if any); ``opened``: the
    reply began right after an "Answer:" prefill, and its opening position is read first."""
    tokens = tokens or ()
    if opened:
        for i in _opening_positions(tokens):
            mass = _verdict_mass(tokens[i])
            if mass["not"] + mass["equal"] > 0:
                return mass["not"] > mass["equal"], ""
    text, starts = _offsets(tokens)
    labels = list(ANSWER_LABEL.finditer(text))
    after = labels[-1].end() if labels else 0
    for i, token in enumerate(tokens):
        if starts[i] + len(token.token) <= after or _verdict_word(token.token) not in ("equal", "not"):
            continue
        mass = _verdict_mass(token)
        if mass["not"] == mass["equal"] == 0.0:
            return _verdict_word(token.token) == "not", ""
        return mass["not"] > mass["equal"], ""
    return None, "no Equal / Not token among the reviewer's tokens"
