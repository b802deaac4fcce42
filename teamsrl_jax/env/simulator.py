"""An offline, deterministic stand-in for the instructor and reviewer LLMs (demo, tests, CI).

Every reply depends only on (backend seed, prompt, sample index). Nothing here calls a network.
Outputs are marked as simulated by the backend itself (``name == "simulated"``, ``simulated = True``;
dataset records carry the backend name); instructions carry no marker, so they parse like real ones.
Responder replies start with ``[simulated response]``.

Instructor: the prompt is matched against the operation templates (the built-in six, or the
``OperationSet`` given at construction) to recover the operation and the instruction; the operation is
then carried out as a text transformation drawn from seeded phrase banks:
- add_constraints: append one requirement ("Use at least two concrete examples.");
- deepening: append a why/how probe;
- concretizing: replace a general noun phrase ("a city") by a specific one, else name a specific case;
- increase_reasoning_steps: ask for explicit step-by-step reasoning;
- complicate_input: append a small markdown table, JSON object or code block;
- breadth: a new, rarer instruction in the same domain (keyword-detected) from templates;
- a user operation passed in ``operations`` is treated like add_constraints (kind depth) or breadth;
  a prompt from a template it was not given is treated as add_constraints on the text between the
  last ``<<<`` / ``>>>`` markers (or on the whole prompt).
Depth changes go to the end of the instruction's first paragraph, so an attached input stays intact.
The reply wraps the result in the requested tags, sometimes with chatter, quotes, a fence, a label
instead of tags, or a trailing note; with small seeded probabilities it is a refusal or copies words
of the template instead, so that the parser and the elimination gates are exercised.

Reviewer: ``heuristic_score(old, new)`` grades the rewrite from 1 to 10 with transparent rules that make
the best operation depend on the state of the chain:
- each dimension (constraints, depth cues, specific names, reasoning cues) has diminishing returns:
  the gain is G[count_new] - G[count_old] on a concave table, so repeating an operation pays less;
- reasoning cues pay three times more once the instruction has a constraint;
- a first structured input pays well, a second one costs;
- prose beyond 70 words is penalised;
- a rewrite that keeps under half of the old content words is judged as breadth: it scores by how
  long the old instruction had grown (breadth is good for long chains, poor for fresh seeds);
- a refusal scores 1; a small seeded noise is added and the score rounded.
``paper`` review prompts get "Not Equal" when that score is at least 4, else "Equal".

Token log-probabilities (when ``SamplingParams.logprobs`` asks for them, so that scoring from probabilities is
exercised offline): the reply is cut into tokens (words, single digits as in Llama 2 or SmolLM2, punctuation,
with the whitespace before each), every token certain, except in a review: at the score's first digit a
normal distribution of spread ``SCORE_SPREAD`` around the unrounded judgement (heuristic plus noise) over
1..10, where "10" is "1" then "0" (the "1" alternative carries 1 and 10; the position after a generated "1"
splits them); at the first "Not"/"Equal" token P(Not) = sigmoid(2 (judgement - 3.5)). The written score is
the likeliest one, so text and probabilities agree.

Latency (timing experiments): with ``latency_s`` > 0 each request holds one of ``concurrency`` slots for
``latency_s`` seconds; the slots are one pool shared by every caller (``SlotPool``), as on a real server, so
two batches in flight at once from two threads do not get twice the capacity.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import (Backend, BackendRequestError, Completion, Role, SamplingParams, TokenLogprob,
                                       check_role, resolve_sample_indices)
from teamsrl_jax.env.operations import CLOSE_TAG, OPEN_TAG, Operation, OperationSet
from teamsrl_jax.env.reward import REVIEW_TEMPLATES
from teamsrl_jax.env.text import STOP_WORDS, has_structured_input, template_matcher, word_tuple

# ---------------------------------------------------------------------------------------------------
# Phrase banks (ours). Each bank's sentences carry the cue the reviewer counts for that dimension.
# ---------------------------------------------------------------------------------------------------

CONSTRAINTS = (
    "Keep the answer to no more than {n} words.", "Use at least {k} concrete examples.",
    "Do not use bullet points or headings.", "Avoid technical jargon throughout.",
    "The answer must end with a one-sentence summary.", "Cite exactly {k} sources by name.",
    "Write only for readers aged twelve to fourteen.", "Address at least one common objection.",
)
DEEPENERS = (
    "Explain why each point holds, not just what it is.", "Discuss the underlying mechanism that makes this work.",
    "Analyse the trade-offs involved and their long-term consequences.",
    "Describe how the answer would change if the main assumption failed.",
    "Identify the root causes behind the situation.",
)
REASONING = (
    "Work through it step by step, showing each intermediate result.",
    "First list the relevant facts, then reason from them to a conclusion.",
    "Break the solution into numbered stages and justify each one.",
    "Show your work before giving the final answer.",
)
# (general noun phrase, specific replacements): the first one found in the instruction is replaced.
GENERAL_TO_SPECIFIC = (
    (r"\b(?:a|an|the)\s+(?:(?:small|big|large|busy|historic|local)\s+)?(?:city|town)\b",
     ("Kyoto", "Valparaíso", "Ghent", "Porto")),
    (r"\b(?:a|the)\s+company\b",
     ("Nordwind Bikes, a mid-sized bicycle maker", "Kestrel Foods, a family-run bakery chain")),
    (r"\b(?:a|the)\s+colleague\b", ("Priya, the team's data analyst", "Marcus from the finance office")),
    (r"\bsomeone\b", ("Tomás, a retired welder from Bilbao", "Aiko, a nurse moving to Toronto")),
    (r"\b(?:a|the)\s+(?:beginner|student)\b", ("Lena, a first-year engineering student in Graz",)),
    (r"\b(?:a|the)\s+(?:small\s+)?(?:household|family)\b", ("the Okafor family of four in Lagos",)),
    (r"\b(?:a|the)\s+customer\b", ("Mrs Haddad, a regular at a Beirut hardware shop",)),
    (r"\bchildren\b", ("eight-year-olds at a primary school in Nairobi",)),
    (r"\b(?:a|the)\s+(?:product|device)\b", ("the Solis X2 solar phone charger",)),
    (r"\b(?:a|the)\s+(?:story|book)\b", ("a story set on the Trans-Siberian Railway",)),
)
_GENERAL_TO_SPECIFIC = tuple((re.compile(p, re.I), c) for p, c in GENERAL_TO_SPECIFIC)
SPECIFIC_CASES = ("the Port of Rotterdam", "the geothermal plants of Iceland", "the Apollo 13 mission",
                  "the M-Pesa service in Kenya", "the 2011 floods in Thailand", "the Oslo public library",
                  "the Toyota production system")

DOMAINS: dict[str, tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]] = {
    # name: (keywords, templates with {x}, rarer topics)
    "cooking": (frozenset("recipe cook cooking food soup bake baking breakfast meal kitchen eat dish ingredient "
                          "vegetable crepes".split()),
                ("Explain how to {x} at home and what can go wrong.", "Give a beginner's guide to {x}."),
                ("ferment a small batch of hot sauce", "cure egg yolks in salt", "make fresh paneer from milk",
                 "keep a sourdough starter alive while travelling")),
    "programming": (frozenset("python function code program string list tuple bug algorithm software sql "
                              "javascript array".split()),
                    ("Write a function that {x}.", "Explain how you would implement a routine that {x}."),
                    ("merges overlapping time intervals", "detects a cycle in a linked list",
                     "computes a rolling median over a stream", "validates an international bank account number")),
    "science": (frozenset("science physics chemistry biology cell energy photosynthesis vaccine vaccines immune sky "
                          "solar climate weather planet atom butterfly bees electricity refrigerator".split()),
                ("Explain {x}.", "Describe for a curious adult {x}."),
                ("how bioluminescence works in deep-sea fish", "how tardigrades survive complete dehydration",
                 "why superconductors carry current without loss", "how bacteria coordinate through quorum sensing")),
    "history": (frozenset("history war empire roman ancient century revolution law bill parliament government "
                          "historic".split()),
                ("Summarise {x}.", "Describe the main causes and effects of {x}."),
                ("the role of the Hanseatic League in medieval trade", "the decline of the Library of Alexandria",
                 "the industrial reforms of the Meiji era", "the founding of the first public libraries")),
    "business": (frozenset("business company customer budget inflation interest savings money market price "
                           "product sales job interview".split()),
                 ("Explain {x}.", "Advise a small business owner on {x}."),
                 ("how invoice factoring works for small suppliers", "the pricing of seasonal goods at a ski resort",
                  "how a cooperative shares its profits", "hedging currency risk for a small exporter")),
    "health": (frozenset("health exercise sleep diet healthy fitness stress medical routine".split()),
               ("Explain {x}.", "Give practical advice on {x}."),
               ("recovering from a sprained ankle without a physiotherapist", "how shift work affects sleep",
                "training for a first half-marathon at forty", "the nutrition needs of vegetarian teenagers")),
    "writing": (frozenset("write poem story email letter note sentence essay haiku dialogue translate french "
                          "grammar title paragraph formal".split()),
                ("Write {x}.", "Compose {x}."),
                ("a villanelle about a lighthouse that has lost its light",
                 "a letter from a museum curator apologising for a mislabelled fossil",
                 "a dialogue between two chess pieces after a long game",
                 "a eulogy for a beloved neighbourhood bookshop")),
    "general": (frozenset(),
                ("Describe {x}.", "Give an overview of {x}."),
                ("how a small town could run a tool library", "the etiquette of queuing in different countries",
                 "how lost-and-found offices at airports operate", "the life of a lighthouse keeper today")),
}

CHATTER = ("Sure! Here is the rewritten instruction:", "Certainly. Here's a harder version of the prompt:",
           "Okay, here is my version of the instruction:")
NOTES = ("Note: I added one requirement to the original instruction.",
         "Note: the rewritten instruction keeps the original input unchanged.")
REFUSALS = ("I'm sorry, but I can't help with rewriting this instruction.",
            "As an AI language model, I am unable to complete this request.")

# ---------------------------------------------------------------------------------------------------
# Profiles and the reviewer heuristic
# ---------------------------------------------------------------------------------------------------

_CONSTRAINT_CUES = re.compile(r"\b(?:must|at least|at most|no more than|fewer than|do not|don't|avoid|exactly|only)\b",
                              re.I)
_DEPTH_CUES = re.compile(r"\b(?:why|how|underlying|trade-offs?|consequences?|mechanisms?|root causes?)\b", re.I)
_REASONING_CUES = re.compile(r"step by step|step-by-step|intermediate|\bfirst\b[^.]{0,60}\bthen\b|show your work|"
                             r"numbered stages|justify each", re.I)
_PROPER = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+|de\s+)?[A-Z][\w'-]*)*")
_STRUCTURED_LINE = re.compile(r"^\s*(?:\||[{}\[\]\"]|\s{2,}\S)")
_FENCED = re.compile(r"```.*?(?:```|$)", re.S)
_TABLE = re.compile(r"(?:^[ \t]*\|.*\|[ \t]*$\n?){2,}", re.M)
_OBJECT_START = re.compile(r"^\s*[{\[]", re.M)
_REFUSAL = re.compile(r"\b(?:i'm sorry|i am sorry|as an ai|i can't help|i am unable)\b", re.I)

G_CONSTRAINT = (0.0, 3.0, 4.5, 5.0, 5.2)
G_DEPTH = (0.0, 2.5, 3.5, 3.8, 3.9)
G_SPECIFIC = (0.0, 2.5, 3.5, 3.8, 3.9)
G_REASONING = (0.0, 2.0, 2.5, 2.6, 2.6)
FIRST_STRUCTURE_GAIN, EXTRA_STRUCTURE_COST = 4.0, 1.0
LONG_PROSE_WORDS, LONG_PROSE_COST = 70, 0.08
NOT_EQUAL_FROM = 4
SCORE_SPREAD = 0.75
"""Standard deviation, in score points, of the reviewer's distribution over the scores it might write."""


@dataclass(frozen=True)
class Profile:
    """What the reviewer heuristic counts in an instruction."""

    constraints: int
    depth: int
    specific: int
    reasoning: int
    blocks: int
    """Structured inputs (fenced blocks, tables, JSON objects)."""
    prose_words: int
    content: frozenset[str]


def _blocks(text: str) -> int:
    fenced = len(_FENCED.findall(text))
    rest = _FENCED.sub("", text)
    tables = len(_TABLE.findall(rest))
    objects = len(_OBJECT_START.findall(rest)) if has_structured_input(rest) else 0
    return fenced + tables + objects


@lru_cache(maxsize=8192)
def profile(text: str) -> Profile:
    """Cue counts of an instruction; structured input lines are not prose. Cached: each rewrite is judged
    as the new text once and as the old text at the next step."""
    prose = "\n".join(line for line in _FENCED.sub("", text).splitlines() if not _STRUCTURED_LINE.match(line))
    specific = 0
    for m in _PROPER.finditer(prose):
        i = m.start() - 1  # the last non-space character before the match
        while i >= 0 and prose[i].isspace():
            i -= 1
        specific += i >= 0 and prose[i] not in ".!?:\"'(" and m.group() != "I"
    tokens = word_tuple(prose)
    return Profile(len(_CONSTRAINT_CUES.findall(prose)), len(_DEPTH_CUES.findall(prose)), specific,
                   len(_REASONING_CUES.findall(prose)), _blocks(text), len(tokens),
                   frozenset(w for w in tokens if w not in STOP_WORDS))


def _gain(table: Sequence[float], old: int, new: int) -> float:
    return table[min(new, len(table) - 1)] - table[min(old, len(table) - 1)]


def heuristic_score(old: str, new: str) -> float:
    """The simulated reviewer's judgement of ``old -> new`` before noise, in [1, 10] (rules above)."""
    if _REFUSAL.search(new):
        return 1.0
    a, b = profile(old), profile(new)
    kept = len(a.content & b.content) / max(1, len(a.content))
    if kept < 0.5:  # a new instruction rather than a rewrite: breadth pays off once the chain is long
        return min(8.5, max(1.5, 1.5 + 7.0 * (a.prose_words - 20) / 50))
    gain = (_gain(G_CONSTRAINT, a.constraints, b.constraints) + _gain(G_DEPTH, a.depth, b.depth)
            + _gain(G_SPECIFIC, a.specific, b.specific)
            + _gain(G_REASONING, a.reasoning, b.reasoning) * (2.0 if a.constraints else 0.6))
    if b.blocks > a.blocks:
        gain += FIRST_STRUCTURE_GAIN if a.blocks == 0 else -EXTRA_STRUCTURE_COST
    gain -= LONG_PROSE_COST * max(0, b.prose_words - LONG_PROSE_WORDS)
    return min(10.0, max(1.0, 1.0 + gain))


# ---------------------------------------------------------------------------------------------------
# Operations as text transformations
# ---------------------------------------------------------------------------------------------------

def _append_to_first_paragraph(text: str, sentence: str) -> str:
    head, sep, tail = text.partition("\n\n")
    head = head.rstrip()
    if head and head[-1] not in ".!?:":
        head += "."
    return f"{head} {sentence}{sep}{tail}"


def _pick_new(rng: np.random.Generator, bank: Sequence[str], text: str) -> str:
    fresh = [s for s in bank if s.split("{")[0] not in text] or list(bank)
    sentence = fresh[rng.integers(len(fresh))]
    return sentence.format(n=int(rng.choice([100, 150, 200, 250])), k=str(rng.choice(["two", "three"])))


def _concretize(text: str, rng: np.random.Generator) -> str:
    head, sep, tail = text.partition("\n\n")
    for pattern, choices in _GENERAL_TO_SPECIFIC:
        m = pattern.search(head)
        if m:
            return head[:m.start()] + choices[rng.integers(len(choices))] + head[m.end():] + sep + tail
    return _append_to_first_paragraph(text, f"Focus on the specific case of {rng.choice(SPECIFIC_CASES)}.")


def _structured_block(rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    values = rng.integers(5, 95, size=6)
    if kind == 0:
        rows = "\n".join(f"| Option {c} | {values[i]} | {values[i + 3] - 50:+d}% |" for i, c in enumerate("ABC"))
        return f"| item | value | change |\n|---|---|---|\n{rows}"
    if kind == 1:
        return ('```json\n{"region": "north", "quarters": [' + ", ".join(map(str, values[:4]))
                + f'], "target": {values[4] * 10}}}\n```')
    return (f"```python\ndef score(items):\n    total = 0\n    for x in items:\n        total += x * {values[0]}\n"
            f"    return total / {values[1]}\n```")


def _breadth(text: str, rng: np.random.Generator) -> str:
    vocab = set(word_tuple(text))
    name = max(DOMAINS, key=lambda d: (len(DOMAINS[d][0] & vocab), d == "general"))
    _, templates, topics = DOMAINS[name]
    return templates[rng.integers(len(templates))].format(x=topics[rng.integers(len(topics))])


def transform(op_name: str, kind: str, text: str, rng: np.random.Generator) -> str:
    """Carry out one operation on ``text`` (see the module docstring)."""
    if op_name == "breadth" or (op_name not in _DEPTH_OPS and kind == "breadth"):
        return _breadth(text, rng)
    if op_name == "deepening":
        return _append_to_first_paragraph(text, _pick_new(rng, DEEPENERS, text))
    if op_name == "concretizing":
        return _concretize(text, rng)
    if op_name == "increase_reasoning_steps":
        return _append_to_first_paragraph(text, _pick_new(rng, REASONING, text))
    if op_name == "complicate_input":
        return f"{_append_to_first_paragraph(text, 'Base the answer on the data below.')}\n\n{_structured_block(rng)}"
    return _append_to_first_paragraph(text, _pick_new(rng, CONSTRAINTS, text))


_DEPTH_OPS = ("add_constraints", "deepening", "concretizing", "increase_reasoning_steps", "complicate_input")


# ---------------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------------

class SlotPool:
    """A server's ``slots`` request slots shared by every caller: each request holds the first slot to come
    free for ``latency_s``, first come first served, and a batch is done when its last request is. Two
    batches of 64 on 64 slots therefore take two latencies, whether they arrive together or one by one."""

    def __init__(self, slots: int, latency_s: float):
        self.latency_s = latency_s
        self._free_at = [0.0] * slots  # a heap of the times (time.monotonic) each slot comes free
        self._lock = threading.Lock()

    def reserve(self, requests: int) -> float:
        """Book ``requests`` requests arriving now; returns the monotonic time the last one completes."""
        now = done = time.monotonic()
        with self._lock:
            for _ in range(requests):
                end = max(now, self._free_at[0]) + self.latency_s
                heapq.heapreplace(self._free_at, end)
                done = max(done, end)
        return done


class SimulatedBackend(Backend):
    """Deterministic offline instructor/reviewer/responder with per-role accounting."""

    name = "simulated"
    simulated = True

    def __init__(self, seed: int = 0, *, model: str = "simulated-v1", operations: OperationSet | None = None,
                 refusal_rate: float = 0.03, echo_rate: float = 0.03, latency_s: float = 0.0, concurrency: int = 8):
        """``operations``: the templates to recognise (default: the built-in six). ``refusal_rate`` /
        ``echo_rate``: probability that an instructor reply is a refusal / copies template words.
        ``latency_s``: simulated seconds per request, served by ``concurrency`` slots shared by all callers
        (``SlotPool``): alone, a batch of N takes ceil(N/concurrency)·latency_s. The replies are computed
        while the batch waits, so their CPU time is hidden in the latency where it fits. Thread-safe."""
        if not (0 <= refusal_rate and 0 <= echo_rate and refusal_rate + echo_rate <= 1):
            raise ValueError(f"refusal_rate and echo_rate must be >= 0 with sum <= 1, got {refusal_rate}, {echo_rate}")
        if latency_s < 0 or concurrency < 1:
            raise ValueError(f"latency_s must be >= 0 and concurrency >= 1, got {latency_s}, {concurrency}")
        self.seed, self.model = seed, model
        self.refusal_rate, self.echo_rate = refusal_rate, echo_rate
        self.latency_s, self.concurrency = latency_s, concurrency
        self.slots = SlotPool(concurrency, latency_s)
        self.accounting = QueryAccounting()
        ops = (operations or OperationSet()).operations
        self._operations: list[tuple[Operation, re.Pattern[str]]] = [
            (op, template_matcher(op.template, ["instruction"])) for op in ops]
        self._reviews = {kind: template_matcher(t, ["old", "new"]) for kind, t in REVIEW_TEMPLATES.items()}

    def _rng(self, prompt: str, index: int) -> np.random.Generator:
        digest = hashlib.blake2b(f"{self.seed}\0{index}\0{prompt}".encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(digest, "little"))

    def generate(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                 sample_indices: Sequence[int] | None = None) -> list[Completion]:
        """One reply per prompt. Of ``params`` only ``logprobs`` and ``prefix`` count (the simulation is the same at
        any temperature): with ``logprobs`` each completion carries ``token_logprobs``; a reviewer's reply opened
        with a ``prefix`` starts with its score or verdict."""
        check_role(role)
        indices = resolve_sample_indices(prompts, sample_indices)
        done = self.slots.reserve(len(prompts)) if self.latency_s else 0.0
        reply = {"instructor": lambda p, rng: (self._instruct(p, rng), None),
                 "reviewer": lambda p, rng: self._review(p, rng, params.prefix),
                 "responder": lambda p, rng: (self._respond(p, rng), None)}[role]
        try:
            replies = [reply(p, self._rng(p, i)) for p, i in zip(prompts, indices)]
        except BackendRequestError:
            self.accounting.record(role, errors=1)
            raise
        finally:
            time.sleep(max(0.0, done - time.monotonic()))
        out = [Completion(t, prompt_tokens=_approx_tokens(p), completion_tokens=_approx_tokens(t), finish_reason="stop",
                          logprobs=None if params.logprobs is None else token_logprobs(t, judged, params.logprobs))
               for p, (t, judged) in zip(prompts, replies)]
        self.accounting.record(role, queries=len(out), prompt_tokens=sum(c.prompt_tokens for c in out),
                               completion_tokens=sum(c.completion_tokens for c in out))
        return out

    def _find_operation(self, prompt: str) -> tuple[Operation | None, str]:
        for op, matcher in self._operations:
            m = matcher.fullmatch(prompt)
            if m:
                return op, m.group("instruction")
        inner = re.findall(r"<<<\n(.*?)\n>>>", prompt, re.S)  # an unknown template in our style
        return None, inner[-1] if inner else prompt

    def _instruct(self, prompt: str, rng: np.random.Generator) -> str:
        op, instruction = self._find_operation(prompt)
        u = rng.random()
        if u < self.refusal_rate:
            return REFUSALS[rng.integers(len(REFUSALS))]
        if u < self.refusal_rate + self.echo_rate:  # copies a line of the template into the instruction
            template = op.template if op else prompt.replace(instruction, "{instruction}")
            lines = [ln.strip("- ").strip() for ln in template.splitlines()
                     if len(ln.split()) >= 8 and "{instruction}" not in ln]
            return f"{OPEN_TAG}{instruction} {lines[rng.integers(len(lines))] if lines else template}{CLOSE_TAG}"
        new = transform(op.name if op else "add_constraints", op.kind if op else "depth", instruction, rng)
        style = rng.random()
        if style < 0.5:
            return f"{OPEN_TAG}{new}{CLOSE_TAG}"
        if style < 0.7:
            return f"{CHATTER[rng.integers(len(CHATTER))]}\n\n{OPEN_TAG}\n{new}\n{CLOSE_TAG}\n\n{rng.choice(NOTES)}"
        if style < 0.85:
            return f"#Rewritten Instruction#:\n{new}\n\n{rng.choice(NOTES)}"
        if style < 0.95:
            return f'{OPEN_TAG}"{new}"{CLOSE_TAG}' if '"' not in new else f"{OPEN_TAG}{new}{CLOSE_TAG}"
        return f"```text\n{new}\n```"

    def _review(self, prompt: str, rng: np.random.Generator, prefix: str | None = None) -> tuple[str, tuple[str, float]]:
        """The reply and (review kind, unrounded judgement in [1, 10]). With a ``prefix`` (the reply was opened
        with "Score:" or "Answer:"), the reply is what follows it: the score or verdict first."""
        for kind, matcher in self._reviews.items():
            m = matcher.fullmatch(prompt)
            if m:
                break
        else:
            raise BackendRequestError("simulated reviewer: the prompt matches no review template")
        judgement = min(10.0, max(1.0, heuristic_score(m.group("old"), m.group("new")) + rng.uniform(-0.5, 0.5)))
        score = round(judgement)
        if prefix is not None:
            verdict = "Not Equal" if score >= NOT_EQUAL_FROM else "Equal"
            return (f" {verdict}" if kind == "paper" else f" {score}\nJudged on added requirements and depth."), \
                (kind, judgement)
        if kind == "paper":
            verdicts = (("Not Equal", "Not Equal.", "**Not equal**", "They are not equal.", "Answer: Not Equal")
                        if score >= NOT_EQUAL_FROM else ("Equal", "Equal.", "equal", "They are equal."))
            return verdicts[rng.integers(len(verdicts))], (kind, judgement)
        formats = ("Score: {s}\nThe rewrite changes the difficulty accordingly.", "Rating: {s}/10",
                   "**Score:** {s}\nJudged on added requirements and depth.", "{s}/10. Reasonable rewrite.",
                   "Score: {s} out of 10")
        return formats[rng.integers(len(formats))].format(s=score), (kind, judgement)

    def _respond(self, prompt: str, rng: np.random.Generator) -> str:
        topic = " ".join(prompt.split()[:12])
        return (f"[simulated response] An offline placeholder answer to: {topic} ... "
                f"(variant {rng.integers(1000)}). Replace the simulated backend with a real model for real data.")


# ---------------------------------------------------------------------------------------------------
# Token log-probabilities
# ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:[0-9]|[^\W\d_]+|\S)|\s+$")


def tokenize(text: str) -> list[str]:
    """Words, single digits and single other characters, each with the whitespace before it; they join
    back to ``text``."""
    return _TOKEN.findall(text)


def _log_softmax(logits: dict[str, float]) -> dict[str, float]:
    top = max(logits.values())
    norm = top + math.log(sum(math.exp(v - top) for v in logits.values()))
    return {k: v - norm for k, v in logits.items()}


def _score_alternatives(tokens: list[str], alternatives: list[dict[str, float]], judgement: float) -> None:
    i = next(k for k, t in enumerate(tokens) if t.strip().isdigit())
    space = tokens[i][:len(tokens[i]) - len(tokens[i].lstrip())]
    logit = {v: -(v - judgement) ** 2 / (2 * SCORE_SPREAD ** 2) for v in range(1, 11)}
    one_or_ten = max(logit[1], logit[10]) + math.log1p(math.exp(-abs(logit[1] - logit[10])))
    alternatives[i] = _log_softmax({**{space + str(v): logit[v] for v in range(2, 10)}, space + "1": one_or_ten})
    if tokens[i].strip() == "1":  # the next position tells 10 ("0" follows) from 1 (the number ends)
        j = i + 1
        ends = tokens[j + 1] if tokens[j:j + 1] == ["0"] else tokens[j] if j < len(tokens) else ""
        if j < len(tokens):
            alternatives[j] = _log_softmax({"0": logit[10], ends: logit[1]})


def _verdict_alternatives(tokens: list[str], alternatives: list[dict[str, float]], judgement: float) -> None:
    i = next(k for k, t in enumerate(tokens) if t.strip().lower() in ("not", "equal"))
    token = tokens[i]
    space, word = token[:len(token) - len(token.lstrip())], token.strip()
    other = {"not": "equal", "equal": "not"}[word.lower()]
    other = space + (other.capitalize() if word[0].isupper() else other)
    not_logit = 2.0 * (judgement - (NOT_EQUAL_FROM - 0.5))
    logits = {token: not_logit, other: 0.0} if word.lower() == "not" else {token: 0.0, other: not_logit}
    alternatives[i] = _log_softmax(logits)


def token_logprobs(text: str, judged: tuple[str, float] | None, top: int) -> list[TokenLogprob]:
    """The simulated per-token log-probabilities of ``text`` (see the module docstring), each position with its
    ``top`` likeliest alternatives. ``judged``: (review kind, unrounded judgement) for a review, else None."""
    tokens = tokenize(text)
    alternatives = [{t: 0.0} for t in tokens]
    if judged is not None:
        kind, judgement = judged
        (_verdict_alternatives if kind == "paper" else _score_alternatives)(tokens, alternatives, judgement)
    return [TokenLogprob(t, alts[t], tuple(sorted(alts.items(), key=lambda kv: -kv[1])[:top]))
            for t, alts in zip(tokens, alternatives)]


def _approx_tokens(text: str) -> int:
    """About four characters per token: enough for accounting in a simulation."""
    return max(1, math.ceil(len(text) / 4))
