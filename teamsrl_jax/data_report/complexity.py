"""Complexity proxies of one instruction: deterministic surface rules, counted on the lower-cased text.

Each proxy is a count per instruction (the instruction text, with its input after a blank line when it has
one). The cue tables below are the whole definition; the report lists them in its settings.

- ``constraints``: the number of matches of every pattern in ``CONSTRAINT_CUES`` (non-overlapping matches
  per pattern, summed over the patterns, so "while ensuring" counts two): modal, limiting and requiring
  words, and quantities (a number, or a range such as ``700-1000``, followed by a unit of text length, time,
  money, mass, ...: ``300 words``, ``2048-word``, ``5 minutes``, ``$20``, ``10%``).
- ``reasoning``: the matches of every pattern in ``REASONING_CUES``, plus 1 when the text holds a numbered
  list (item markers ``1.`` / ``1)`` / ``(1)`` and then ``2.`` / ``2)`` / ``(2)``, each at the start of a line
  or after a space).
- ``structured``: 1 when the text carries structured input, else 0: a markdown table, a fenced code block or
  JSON (``env.text.has_structured_input``); code (two lines that start like code, e.g. ``def``, ``import``,
  ``return``, ``for (``, or end in ``;`` or ``{``); delimited rows (two consecutive lines that split on ``,``,
  ``|`` or a tab into the same number, 2 or more, of fields of 1-3 words, neither ending in ``.!?:``: CSV,
  TSV, triples); a bracketed
  list of three or more numbers (``{3, 12, 7}``); XML/HTML (an element with its closing tag).
- ``questions``: the number of runs of ``?``.
"""

from __future__ import annotations

import re

from teamsrl_jax.env.text import has_structured_input

_UNITS = (r"%|percent|words?|characters?|chars|letters?|sentences?|paragraphs?|lines?|pages?|bullet points?"
          r"|points?|items?|examples?|tokens?|seconds?|minutes?|hours?|days?|weeks?|months?|years?|ms|mph"
          r"|km/h|mm|cm|km|meters?|metres?|miles?|feet|foot|ft|inches|inch|kg|mg|grams?|lbs?|pounds?|ounces?"
          r"|oz|liters?|litres?|ml|calories|kcal|dollars?|euros?|usd|degrees?|gb|mb|kb")
_NUMBER = r"\d+(?:[.,]\d+)?"

CONSTRAINT_CUES: dict[str, str] = {
    "must / should": r"\b(?:must|should)\b",
    "at least / at most": r"\bat (?:least|most)\b",
    "no more / less / fewer than": r"\bno (?:more|less|fewer|longer|shorter) than\b",
    "exactly / only": r"\b(?:exactly|only)\b",
    "without / do not / avoid / exclude": r"\b(?:without|do not|don't|avoid|exclud(?:e|es|ing))\b",
    "include / incorporate": r"\b(?:includ|incorporat)(?:e|es|ing)\b",
    "ensure / make sure": r"\b(?:ensur(?:e|es|ing)|(?:make|making) (?:sure|certain))\b",
    "while": r"\bwhile\b",
    "considering / taking into account": r"\b(?:consider(?:ing)?|tak(?:e|ing) into (?:account|consideration))\b",
    "adhere to / comply with": r"\b(?:adher(?:e|es|ing) to|compl(?:y|ies|ying) with)\b",
    "constraint / requirement": r"\b(?:constraints?|requirements?|required|requires|requiring)\b",
    "limit / maximum / minimum": r"\b(?:limit(?:s|ed|ations?)?|maximum|minimum)\b",
    "quantity with a unit": rf"(?:[$€£]\s?{_NUMBER}"
                            rf"|\b{_NUMBER}(?:\s*(?:-|–|to)\s*{_NUMBER})?[\s-]*(?:{_UNITS})(?![a-z]))",
}
"""Constraint cues: name -> regular expression on the lower-cased text."""

REASONING_CUES: dict[str, str] = {
    "step by step": r"\bstep[\s-]+by[\s-]+step\b",
    "steps": r"\bsteps\b",
    "multi-step": r"\bmulti(?:ple)?-?step\b",
    "reasoning / rationale / justify": r"\b(?:reasoning|rationale|justif(?:y|ies|ication))\b",
    "explain why / how": r"\bexplain(?:ing)? (?:why|how)\b",
    "show your work": r"\bshow (?:your|the|all) work\b",
    "first ... then": r"\bfirst\b[^.?!]*\bthen\b",
}
"""Reasoning-step cues: name -> regular expression on the lower-cased text (a numbered list adds one more)."""

_CONSTRAINTS = [re.compile(p) for p in CONSTRAINT_CUES.values()]
_REASONING = [re.compile(p) for p in REASONING_CUES.values()]
_LIST_ITEM = re.compile(r"(?:^|(?<=\s))\(?(\d{1,2})[.)](?=\s)", re.M)
_CODE_LINE = re.compile(r"^\s*(?:def |class \w|import \w|from [\w.]+ import |#include|function\b|return\b|public |"
                        r"private |(?:var|let|const) \w|(?:for|while|if)\s*\(|print\(|console\.log|select .* from |"
                        r"[}\]])|[;{]\s*$")
_NUMBER_LIST = re.compile(rf"[\[{{]\s*-?{_NUMBER}(?:e\d+)?(?:\s*,\s*-?{_NUMBER}(?:e\d+)?){{2,}}\s*[\]}}]")
_XML = re.compile(r"<([a-z][\w:-]*)(?:\s[^<>]*)?>.*?</\1\s*>", re.S)
_QUESTION = re.compile(r"\?+")

PROXIES = ("constraints", "reasoning", "structured", "questions")


def constraint_count(text: str) -> int:
    low = text.lower()
    return sum(len(p.findall(low)) for p in _CONSTRAINTS)


def has_numbered_list(text: str) -> bool:
    """Item markers 1 and 2 (``1.``, ``1)``, ``(1)``) at a line start or after a space, 1 before 2."""
    numbers = [int(m.group(1)) for m in _LIST_ITEM.finditer(text)]
    return 1 in numbers and 2 in numbers[numbers.index(1) + 1:]


def reasoning_count(text: str) -> int:
    low = text.lower()
    return sum(len(p.findall(low)) for p in _REASONING) + has_numbered_list(low)


def _row_fields(line: str, sep: str) -> int:
    """Number of fields when ``line`` reads as a delimited row (2+ non-empty fields of 1-3 words, not ending
    like a sentence in ``.``, ``!``, ``?`` or ``:``), else 0."""
    line = line.strip()
    if line.endswith((".", "!", "?", ":")):
        return 0
    fields = [f.strip() for f in line.strip(sep).split(sep)]
    if len(fields) < 2 or any(not f or len(f.split()) > 3 for f in fields):
        return 0
    return len(fields)


def has_delimited_rows(text: str) -> bool:
    """Two consecutive non-blank lines that split on ``,``, ``|`` or a tab into the same number of fields."""
    lines = [line for line in text.splitlines() if line.strip()]
    for sep in (",", "|", "\t"):
        counts = [_row_fields(line, sep) for line in lines]
        if any(a and a == b for a, b in zip(counts, counts[1:])):
            return True
    return False


def is_structured(text: str) -> bool:
    low = text.lower()
    code_lines = sum(bool(_CODE_LINE.search(line)) for line in low.splitlines())
    return (has_structured_input(text) or code_lines >= 2 or has_delimited_rows(text)
            or bool(_NUMBER_LIST.search(low)) or bool(_XML.search(low)))


def question_count(text: str) -> int:
    return len(_QUESTION.findall(text))


def proxies(text: str) -> dict[str, int]:
    """Every proxy of one instruction text."""
    return {"constraints": constraint_count(text), "reasoning": reasoning_count(text),
            "structured": int(is_structured(text)), "questions": question_count(text)}
