"""The reward: reviewer prompts, robust parsers for the reviewer's reply, elimination gates, novelty.

Two kinds:

``paper``: the reviewer is asked whether the previous and the new instruction are "Equal" or
"Not Equal" in their constraints/requirements and in the depth/breadth of the inquiry; reward 1 for
Not Equal, else 0. The original code compared the whole reply with one exact string, so a reviewer
answering "Not Equal." (with a full stop) or "**Not equal**" scored 0: a bug. ``parse_verdict`` reads
the verdict robustly and reports why when it cannot (ambiguous replies score 0).

``default`` (ours): the reviewer grades the added difficulty and quality from 1 to 10, normalised to
[0, 1]. Before any reviewer call, elimination gates (no reviewer needed) drop rewrites. Three are format
failures, applied under every config because what they hold is not an instruction: the reply failed to
parse (``parse_failure``), holds only stop words/punctuation (``empty``), or is a fragment (``fragment``:
fewer than ``min_words`` words, a lone word such as "tags." left from an echoed answer format, or a
sign-off such as "I hope this helps!"). The WizardLM-style gates follow when ``eliminate`` is on: refusals,
copies of the prompt template, and rewrites that add no information (ROUGE-L overlap with the previous
instruction at or above ``max_overlap`` while not longer; an echo of the previous instruction between the
prompt's markers parses to that instruction and lands here). A kept rewrite may earn a small novelty bonus:
``novelty_weight · (1 − max Jaccard similarity)`` against a bounded memory of recent kept rewrites
(word 1-2-gram sets, hashed). Eliminated chains get reward 0 and are not sent to the reviewer.

reward = quality + novelty_weight · novelty (kept and scored), else 0.

Reading the reviewer: with ``score_from="logprobs"`` (the default) and a reviewer completion that carries
token log-probabilities (``EnvConfig.reviewer.logprobs`` asks for them), the score is the probability-weighted
mean over the score tokens and the verdict the likelier of "Equal" and "Not" (``env.logprob_scores``);
otherwise, or where the tokens hold no score position, the text is parsed. Each chain's component
``from_logprobs`` says which way its score was obtained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from teamsrl_jax.backends.base import Completion
from teamsrl_jax.env.logprob_scores import ANSWER_LABEL, score_from_logprobs, verdict_from_logprobs
from teamsrl_jax.env.operations import CLOSE_TAG, OPEN_TAG, PLACEHOLDER
from teamsrl_jax.env.text import batch_word_ngram_hashes, content_words, fill_template, rouge_l, word_tuple

REWARD_KINDS = ("paper", "default")
SCORE_SOURCES = ("logprobs", "text")
ELIMINATION_REASONS = ("parse_failure", "empty", "fragment", "refusal", "copies_template", "no_information_gain")
"""Every reason ``elimination_reason`` can give, in the order the gates are tried."""

PAPER_REVIEW = """Two instructions are shown below. Decide whether they are equally demanding, judging two things:
1. the constraints and requirements each one sets, and
2. the depth and breadth of the inquiry each one asks for.

First instruction:
<<<
{old}
>>>

Second instruction:
<<<
{new}
>>>

If they are the same on both counts, answer "Equal". If they differ on either count, answer "Not Equal".
Answer with one of these two phrases only."""

DEFAULT_REVIEW = """You are reviewing an automatically evolved instruction meant for training a language model.

Previous instruction:
<<<
{old}
>>>

Evolved instruction:
<<<
{new}
>>>

Rate the evolved instruction from 1 to 10 for how much it adds in difficulty and quality compared with the previous
one: more requirements, a deeper or more specific inquiry, more reasoning steps, a richer input, or a fresh and less
common task. It must stay clear, self-contained and answerable by a capable person; a broken, vague, unanswerable or
merely reworded instruction gets 1 to 3.
Start your reply with "Score:" and your score as one integer from 1 to 10, then give at most one sentence of
justification."""

REVIEW_TEMPLATES = {"paper": PAPER_REVIEW, "default": DEFAULT_REVIEW}
REVIEW_PREFILLS = {"paper": "Answer:", "default": "Score:"}
"""The start of the reviewer's reply with ``RewardConfig.prefill``: the label its template asks it to answer after."""


@dataclass(frozen=True)
class RewardConfig:
    """How rewrites are judged."""

    kind: str = "default"
    """``default`` (graded 1-10 score, gates, novelty) or ``paper`` (Equal / Not Equal)."""
    eliminate: bool = True
    """Apply the WizardLM-style gates (refusal, copies_template, no_information_gain). The format failures
    (parse_failure, empty, fragment) are always eliminated: what they hold is not an instruction."""
    min_words: int = 3
    """A rewrite of fewer words is a fragment (also a single content word or a sign-off), never kept."""
    max_overlap: float = 0.85
    """No-information-gain gate: ROUGE-L F1 with the previous instruction at or above this, and not longer."""
    refusal_max_words: int = 80
    """A refusal phrase ("I'm sorry", "as an AI") eliminates a rewrite shorter than this many words."""
    novelty_weight: float = 0.1
    """Weight of the novelty bonus (0 disables it and its memory)."""
    novelty_memory: int = 1024
    """How many recent kept rewrites the novelty bonus compares against."""
    score_from: str = "logprobs"
    """``logprobs``: read the score/verdict from the reviewer's token probabilities where its completion carries
    them (ask with ``EnvConfig.reviewer.logprobs``), else from its text; ``text``: always parse the text."""
    prefill: bool = False
    """Open the reviewer's reply with its answer label ("Score:", or "Answer:" for ``paper``), so that the reply
    starts with the score or verdict even from a model that would not follow the format (assistant prefill:
    the ``jax`` backend, and servers that continue a final assistant message)."""

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"reward.kind must be one of {', '.join(REWARD_KINDS)}, got {self.kind!r}")
        if not 0 < self.max_overlap <= 1:
            raise ValueError(f"reward.max_overlap must be in (0, 1], got {self.max_overlap!r}")
        if self.refusal_max_words < 0:
            raise ValueError(f"reward.refusal_max_words must be >= 0, got {self.refusal_max_words!r}")
        if not self.novelty_weight >= 0:
            raise ValueError(f"reward.novelty_weight must be >= 0, got {self.novelty_weight!r}")
        if self.novelty_memory < 1:
            raise ValueError(f"reward.novelty_memory must be >= 1, got {self.novelty_memory!r}")
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, int) or self.min_words < 1:
            raise ValueError(f"reward.min_words must be an integer >= 1, got {self.min_words!r}")
        if self.score_from not in SCORE_SOURCES:
            raise ValueError(f"reward.score_from must be one of {', '.join(SCORE_SOURCES)}, got {self.score_from!r}")


# ---------------------------------------------------------------------------------------------------
# Parsing the reviewer
# ---------------------------------------------------------------------------------------------------

_VERDICT = re.compile(r"\b(not\s+unequal|not\s+different|no\s+different|(?:do|does|did)\s*(?:not|n't)\s+differ|"
                      r"not\s+equal|(?:is|are)n't\s+equal|unequal|not\s+the\s+same|different|differs?|"
                      r"equal|the\s+same|identical)\b", re.I)
_SAME = re.compile(r"^(?:not\s+un|not\s+diff|no\s+diff|do|does|did|equal$|the\s+same$|identical$)", re.I)
_MARKUP = re.compile(r"[*_`#>\"“”]")


def parse_verdict(reply: str) -> tuple[bool | None, str]:
    """(True for Not Equal / False for Equal / None, note). The note explains a None.

    After the last "Answer:"-style label if any, the first sentence that mentions a verdict decides
    when all its mentions agree ("not unequal" and "not different" count as Equal)."""
    text = _MARKUP.sub("", reply or "").strip()
    if not text:
        return None, "empty reviewer reply"
    labels = list(ANSWER_LABEL.finditer(text))
    if labels:
        text = text[labels[-1].end():].strip()
    for sentence in re.split(r"[.!?;\n]+", text):
        found = {not _SAME.match(m.group(1)) for m in _VERDICT.finditer(sentence)}
        if len(found) == 1:
            return found.pop(), ""
        if found:
            return None, "reviewer said both Equal and Not Equal"
    return None, "no Equal / Not Equal verdict in the reviewer reply"


_N = r"(\d+(?:\.\d+)?)"
_OF = r"(?:\s*[*_]*\s*(?:/|out\s+of)\s*(\d+))?"
_LABELLED = re.compile(r"\b(?:score|rating|grade|mark)\b(?:\s*[(\[]\s*\d+\s*(?:-|–|to)\s*\d+\s*[)\]])?"
                       r"[^\w\n]{0,6}?(?:is\s+|of\s+)?[*_\s]*" + _N + _OF, re.I)
_FRACTION = re.compile(r"(?<![\w.])" + _N + r"\s*[*_]*\s*(?:/|out\s+of)\s*(\d+)\b", re.I)
_BOLD = re.compile(r"\*\*\s*" + _N + r"\s*\*\*" + _OF)
_LEADING = re.compile(r"^[\s*_#>\"']*" + _N + _OF + r"(?=$|[\s.,:;)!*-])")


def parse_score(reply: str, low: int = 1, high: int = 10) -> tuple[float | None, str]:
    """(score in [low, high] or None, note). Preference: the last labelled score ("Score: 7",
    "Rating - 6 out of 10", "**Score:** 8"), else the last "N/10" or "N out of 10", else a bold number,
    else a number opening the reply. A stated scale other than /high, or a value out of range, gives None."""
    text = reply or ""
    for pattern in (_LABELLED, _FRACTION, _BOLD, _LEADING):
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        value, scale = matches[-1].group(1), matches[-1].group(2)
        if scale is not None and int(scale) != high:
            return None, f"score {value}/{scale} is not on the 1-{high} scale"
        score = float(value)
        if not low <= score <= high:
            return None, f"score {value} outside {low}-{high}"
        return score, ""
    return None, "no score in the reviewer reply"


# ---------------------------------------------------------------------------------------------------
# Elimination gates (reviewer-free)
# ---------------------------------------------------------------------------------------------------

_REFUSAL = re.compile(r"\b(?:i'?m sorry|i am sorry|sorry,? but|apologi[sz]e|as an ai\b|as a language model|"
                      r"i cannot|i can't|i can not|i am unable|i'm unable|i won't be able|unable to (?:comply|help))",
                      re.I)
_TEMPLATE_MARKERS = ("#rewritten", "#given", "given prompt", "given instruction", "rewritten prompt",
                     "rewritten instruction", "new_instruction", "<<<", ">>>", OPEN_TAG, CLOSE_TAG)
_SHINGLE = 6


def _shingles(tokens: Sequence[str], n: int = _SHINGLE) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def copies_template(parent: str, rewrite: str, template: str) -> bool:
    """True when the rewrite carries prompt-template wording the previous instruction did not have: a
    known marker ("#Rewritten", "Given Prompt", "rewritten instruction", our tags) or any run of six
    words of the template."""
    low_new, low_old = rewrite.lower(), parent.lower()
    if any(m in low_new and m not in low_old for m in _TEMPLATE_MARKERS):
        return True
    copied = _shingles(word_tuple(rewrite)) & _template_shingles(template)
    return bool(copied) and bool(copied - _shingles(word_tuple(parent)))


@lru_cache(maxsize=64)
def _template_shingles(template: str) -> frozenset[tuple[str, ...]]:
    return frozenset(_shingles(word_tuple(template.replace(PLACEHOLDER, " "))))


# Replies about the exchange rather than an instruction: "I hope this helps!", "Let me know if ...".
_SIGN_OFF = re.compile(r"^\W*(?:i hope (?:this|that|it) helps|hope (?:this|that|it) helps|let me know if|feel free to|"
                       r"is there anything else|happy to help|glad (?:to|i could) help|thank you|thanks)\b", re.I)


def is_fragment(text: str, min_words: int = 3) -> bool:
    """True when ``text`` cannot be an instruction: fewer than ``min_words`` words, a single content word
    ("the tags."), or a sign-off ("I hope this helps!")."""
    return (len(word_tuple(text)) < min_words or len(set(content_words(text))) < 2
            or bool(_SIGN_OFF.match(text) and len(word_tuple(text)) < 25))


def elimination_reason(parent: str, rewrite: str | None, template: str, config: RewardConfig) -> str:
    """Why a rewrite is dropped before review ("" when kept); one of ``ELIMINATION_REASONS``. The format
    failures (parse_failure, empty, fragment) apply under every config, the rest only with ``eliminate``."""
    if rewrite is None:
        return "parse_failure"
    if not content_words(rewrite):
        return "empty"
    if is_fragment(rewrite, config.min_words):
        return "fragment"
    if not config.eliminate:
        return ""
    n_new = len(word_tuple(rewrite))
    if n_new < config.refusal_max_words and _REFUSAL.search(rewrite) and not _REFUSAL.search(parent):
        return "refusal"
    if copies_template(parent, rewrite, template):
        return "copies_template"
    # ROUGE-L only where the length condition already holds.
    if n_new <= len(word_tuple(parent)) and rouge_l(parent, rewrite) >= config.max_overlap:
        return "no_information_gain"
    return ""


# ---------------------------------------------------------------------------------------------------
# Novelty memory
# ---------------------------------------------------------------------------------------------------

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount(bits: np.ndarray) -> np.ndarray:
    """Set bits per row of the last axis (uint64 words)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(bits).sum(-1, dtype=np.int32)
    return _POPCOUNT8[bits.view(np.uint8)].sum(-1, dtype=np.int32)


class NoveltyMemory:
    """A ring buffer of recent texts as hashed word 1-2-gram sets, packed into bits; Jaccard by popcount.

    ``encode`` a batch once, then ``max_similarity_encoded`` / ``add_encoded`` the rows: a caller that
    steps groups of chains out of phase reads the memory for a whole step before adding that step's rows."""

    def __init__(self, capacity: int, dim: int = 2048):
        if dim % 64:
            raise ValueError(f"NoveltyMemory dim must be a multiple of 64, got {dim}")
        self.dim = dim
        self._bits = np.zeros((capacity, dim // 64), np.uint64)
        self._sizes = np.zeros(capacity, np.int32)
        self._count = 0
        self._next = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim/64] uint64: the set of hashed word unigrams and bigrams of each text (whole batch at once)."""
        unigrams, uni_rows, bigrams, bi_rows = batch_word_ngram_hashes([word_tuple(t) for t in texts])
        out = np.zeros((len(texts), self.dim), bool)
        out[np.concatenate([uni_rows, bi_rows]),
            (np.concatenate([unigrams, bigrams]) % np.uint64(self.dim)).astype(np.int64)] = True
        return np.packbits(out, axis=1).view(np.uint64).reshape(len(texts), self.dim // 64)

    def max_similarity(self, texts: Sequence[str]) -> np.ndarray:
        """[N] largest Jaccard similarity of each text to the remembered ones (0 when empty)."""
        return self.max_similarity_encoded(self.encode(texts))

    def max_similarity_encoded(self, x: np.ndarray, chunk: int = 8) -> np.ndarray:
        """``max_similarity`` of rows from ``encode``."""
        if not self._count or not len(x):
            return np.zeros(len(x), np.float32)
        sizes, memory = _popcount(x), self._bits[:self._count]
        out = np.empty(len(x), np.float32)
        for start in range(0, len(x), chunk):  # bounds the [chunk, memory, words] temporary
            inter = _popcount(x[start:start + chunk, None, :] & memory[None])
            union = sizes[start:start + chunk, None] + self._sizes[None, :self._count] - inter
            out[start:start + chunk] = (inter / np.maximum(union, 1)).max(axis=1)
        return out

    def add(self, texts: Sequence[str]) -> None:
        self.add_encoded(self.encode(texts))

    def add_encoded(self, x: np.ndarray) -> None:
        """Remember rows from ``encode``, in order (the oldest are overwritten when full)."""
        capacity, k = len(self._bits), len(x)
        slots = (self._next + np.arange(max(0, k - capacity), k)) % capacity  # rows beyond capacity: the last ones
        self._bits[slots], self._sizes[slots] = x[k - len(slots):], _popcount(x[k - len(slots):])
        self._next, self._count = (self._next + k) % capacity, min(self._count + k, capacity)

    def state_dict(self) -> dict:
        return {"bits": self._bits.copy(), "sizes": self._sizes.copy(), "count": self._count, "next": self._next}

    def load_state_dict(self, state: dict) -> None:
        bits = np.asarray(state["bits"], np.uint64)
        if bits.shape != self._bits.shape:
            raise ValueError(f"novelty memory state has shape {bits.shape}, expected {self._bits.shape}")
        self._bits, self._sizes = bits.copy(), np.asarray(state["sizes"], np.int32).copy()
        self._count, self._next = int(state["count"]), int(state["next"])


# ---------------------------------------------------------------------------------------------------
# The reward function: gates, one batched reviewer call, parsing, bonus
# ---------------------------------------------------------------------------------------------------

@dataclass
class RewardResult:
    """Per-chain results of one step."""

    rewards: np.ndarray
    """[N] float32."""
    components: dict[str, np.ndarray]
    """Per-chain arrays [N] for logging (see ``Reward.score``)."""
    eliminated: list[str]
    """Elimination reason per chain ("" when kept)."""
    notes: list[str]
    """Why the reviewer's reply gave no verdict/score ("" otherwise)."""
    reviewer_replies: list[str | None] = field(default_factory=list)
    """The reviewer's raw reply per chain (None where it was not asked)."""
    score_sources: list[str] = field(default_factory=list)
    """How each chain's score/verdict was obtained: "logprobs", "text", or "" (not reviewed, or no score)."""
    novelty_rows: np.ndarray | None = None
    """The kept rewrites encoded for the novelty memory (None when it is off). ``Reward.score`` does not add
    them to the memory; the caller does (``NoveltyMemory.add_encoded``), as ``InstructionEnv`` does once every
    chain has made the step."""


class Reward:
    """Scores a batch of rewrites; holds the novelty memory across steps and episodes.

    Scoring a step is three phases, which the caller runs around its one batched reviewer call
    (``InstructionEnv.step_chains``): ``gates`` (reviewer-free), ``review_prompts`` (for the kept rewrites;
    none when nothing is kept), and ``score`` (parse the replies, novelty against the memory, rewards)."""

    def __init__(self, config: RewardConfig):
        self.config = config
        uses_novelty = config.kind == "default" and config.novelty_weight > 0  # the paper reward has no bonus
        self.memory = NoveltyMemory(config.novelty_memory) if uses_novelty else None

    def review_prompt(self, old: str, new: str) -> str:
        return fill_template(REVIEW_TEMPLATES[self.config.kind], old=old, new=new)

    def gates(self, parents: Sequence[str], rewrites: Sequence[str | None], templates: Sequence[str]) -> list[str]:
        """Elimination reason per chain ("" when kept)."""
        return [elimination_reason(p, r, t, self.config) for p, r, t in zip(parents, rewrites, templates)]

    def review_prompts(self, parents: Sequence[str], rewrites: Sequence[str | None],
                       eliminated: Sequence[str]) -> list[str]:
        """Reviewer prompts of the kept chains, in chain order."""
        return [self.review_prompt(p, r) for p, r, why in zip(parents, rewrites, eliminated) if not why]

    def read(self, reply: Completion) -> tuple[float | bool | None, str, str]:
        """(score for ``default`` / Not Equal for ``paper`` / None, note, source): from the reply's token
        probabilities where ``score_from`` allows and they hold a score position, else from its text."""
        from_tokens, from_text = ((score_from_logprobs, parse_score) if self.config.kind == "default"
                                  else (verdict_from_logprobs, parse_verdict))
        if self.config.score_from == "logprobs" and reply.logprobs:
            value, _ = from_tokens(reply.logprobs, opened=self.config.prefill)
            if value is not None:
                return value, "", "logprobs"
        value, note = from_text(reply.text)
        return value, note, "" if value is None else "text"

    def unscored(self, eliminated: Sequence[str]) -> RewardResult:
        """The result of a step with no reviewer call: rewards 0, only the ``kept`` component."""
        n = len(eliminated)
        kept = np.array([not why for why in eliminated], np.float32)
        return RewardResult(np.zeros(n, np.float32), {"kept": kept}, list(eliminated), [""] * n, [None] * n, [""] * n)

    def score(self, rewrites: Sequence[str | None], eliminated: Sequence[str],
              replies: Sequence[Completion]) -> RewardResult:
        """Rewards from the reviewer's ``replies`` to ``review_prompts`` (one per kept chain, in order; see
        ``read``). Reads the novelty memory but does not add to it (see ``RewardResult.novelty_rows``).

        Components, each [N] float32: ``kept`` (1 when the rewrite passed the gates), ``from_logprobs`` (1 when
        the score/verdict came from the token probabilities, 0 from the text or none), and for ``paper``
        ``not_equal`` (1/0) and ``verdict_parsed``; for ``default`` ``score`` (1-10, a probability-weighted
        mean when from the probabilities, NaN when absent), ``quality`` ((score-1)/9, 0 when absent) and
        ``novelty`` (1 - max similarity, 0 when not kept)."""
        n = len(rewrites)
        kept = [i for i in range(n) if not eliminated[i]]
        if len(replies) != len(kept):
            raise ValueError(f"{len(replies)} reviewer replies for {len(kept)} kept rewrites")
        all_replies: list[str | None] = [None] * n
        values: list[float | bool | None] = [None] * n
        notes, sources = [""] * n, [""] * n
        for i, reply in zip(kept, replies):
            all_replies[i] = reply.text
            values[i], notes[i], sources[i] = self.read(reply)
        kept_mask = np.zeros(n, np.float32)
        kept_mask[kept] = 1.0
        from_logprobs = np.array([s == "logprobs" for s in sources], np.float32)
        if self.config.kind == "paper":
            verdicts = np.array([v is True for v in values], np.float32)
            parsed = np.array([v is not None for v in values], np.float32)
            components = {"kept": kept_mask, "not_equal": verdicts, "verdict_parsed": parsed,
                          "from_logprobs": from_logprobs}
            return RewardResult(verdicts.copy(), components, list(eliminated), notes, all_replies, sources)
        score = np.array([math.nan if v is None else v for v in values], np.float32)
        scored = ~np.isnan(score)
        quality = np.where(scored, (score - 1.0) / 9.0, 0.0).astype(np.float32)
        novelty = np.zeros(n, np.float32)
        rows = None
        if self.memory is not None:
            rows = self.memory.encode([rewrites[i] for i in kept])
            novelty[kept] = 1.0 - self.memory.max_similarity_encoded(rows)
        rewards = np.where(scored, quality + self.config.novelty_weight * novelty, 0.0).astype(np.float32)
        components = {"kept": kept_mask, "score": score, "quality": quality, "novelty": novelty,
                      "from_logprobs": from_logprobs}
        return RewardResult(rewards, components, list(eliminated), notes, all_replies, sources, rows)
