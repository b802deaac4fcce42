"""The textual operations (the MDP's actions): prompt templates for the instructor LLM and a parser
for its reply.

The six built-in operations follow the paper's action order (index 0..5): ``add_constraints``,
``deepening``, ``concretizing``, ``increase_reasoning_steps``, ``complicate_input`` (the five *depth*
rewrites, each asked to add only about 10-20 words, keep any table/code/input and stay answerable by
people) and ``breadth`` (a new, rarer instruction in the same domain). The wording is ours.

Every template asks for the answer between ``<new_instruction>`` and ``</new_instruction>``;
``parse_rewrite`` also copes with replies that ignore this (labels, chatter, quotes, fences, notes, the
prompt's own ``<<<`` / ``>>>`` markers used as answer delimiters) and returns None for a reply that holds no
instruction at all, only remnants of the format (``<new_instruction> tags.``, ``>>``).

Users can add or replace operations with a YAML or JSON file holding a list of
``{name, template, kind}`` (kind: depth|breadth; the template must contain ``{instruction}``)::

    - name: add_constraints            # replaces the built-in one, same action index
      kind: depth
      template: "Make this harder by adding one rule: {instruction} ..."
    - name: counterfactual             # a new action, appended after the built-ins
      kind: depth
      template: "..."
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from teamsrl_jax.env.text import fill_template

PLACEHOLDER = "{instruction}"
OPEN_TAG, CLOSE_TAG = "<new_instruction>", "</new_instruction>"
KINDS = ("depth", "breadth")

_ANSWER_FORMAT = f"Reply with the new instruction only, enclosed in {OPEN_TAG}{CLOSE_TAG} tags."

_DEPTH_FRAME = f"""You are helping to build a set of more demanding instructions for training a language model.
Turn the instruction between the <<< and >>> markers into a harder version of itself by making this change:
{{change}}

Ground rules:
- Lengthen it by roughly 10 to 20 words at most{{length_note}}; do not pad it.
- Keep any table, code, data or quoted input of the original exactly as it is.
- A capable person must still be able to understand it and answer it.
- Do not answer it, and do not mention these rules.

<<<
{PLACEHOLDER}
>>>

{_ANSWER_FORMAT}"""

_BREADTH = f"""You are helping to build a varied set of instructions for training a language model.
Read the instruction between the <<< and >>> markers only to learn its subject area and the kind of task it sets.
Then invent a brand-new instruction in the same subject area about a less common, more specialised topic.
It should be about as long and as hard as the original, and a capable person must be able to understand it and
answer it. Do not answer it, and do not refer to the original.

<<<
{PLACEHOLDER}
>>>

{_ANSWER_FORMAT}"""

_DEPTH_CHANGES = {
    "add_constraints": "Add one more requirement or restriction the answer has to satisfy, such as a limit, "
                       "a format, or something it must include or avoid.",
    "deepening": "Where it asks about an issue, make it probe further: ask for the reasons, mechanisms or "
                 "consequences behind it instead of a surface-level answer.",
    "concretizing": "Replace a general or vague notion in it with a specific, concrete one, such as a named "
                    "case, place, group, object or quantity.",
    "increase_reasoning_steps": "If it can be settled with one simple thought, restate it so that it explicitly "
                                "calls for reasoning through several stated steps.",
    "complicate_input": "Make the material it works on richer: add or extend an input in a structured format "
                        "(a small table, a JSON object or a code snippet) and refer to that input in the text.",
}


@dataclass(frozen=True)
class Operation:
    """One action: a named prompt template for the instructor."""

    name: str
    template: str
    """Prompt text with the ``{instruction}`` placeholder (filled in one pass; other braces stay)."""
    kind: str
    """``depth`` (rewrite the instruction into a harder one) or ``breadth`` (create a new one)."""


def _builtin() -> tuple[Operation, ...]:
    ops = [Operation(name, fill_template(_DEPTH_FRAME, change=change,
                                         length_note=" (not counting the structured input you add)"
                                         if name == "complicate_input" else ""), "depth")
           for name, change in _DEPTH_CHANGES.items()]
    return (*ops, Operation("breadth", _BREADTH, "breadth"))


DEFAULT_OPERATIONS: tuple[Operation, ...] = _builtin()
DEFAULT_NAMES: tuple[str, ...] = tuple(op.name for op in DEFAULT_OPERATIONS)


class OperationSet:
    """An ordered set of operations, fixed once made; the order is the action index."""

    def __init__(self, operations: Sequence[Operation] = DEFAULT_OPERATIONS):
        if not operations:
            raise ValueError("an OperationSet needs at least one operation")
        names = [op.name for op in operations]
        if len(set(names)) != len(names):
            raise ValueError(f"operation names must be unique, got {names}")
        self.operations: tuple[Operation, ...] = tuple(operations)
        self.names: tuple[str, ...] = tuple(names)
        """Operation names, by action index."""
        self.templates: tuple[str, ...] = tuple(op.template for op in self.operations)
        """Prompt templates, by action index."""

    @classmethod
    def from_file(cls, path: str | os.PathLike, mode: str = "merge",
                  base: Sequence[Operation] = DEFAULT_OPERATIONS) -> OperationSet:
        """Operations from a YAML/JSON file. ``merge``: an entry named like a built-in replaces it in place,
        other entries are appended; ``replace``: the file's operations only, in file order."""
        if mode not in ("merge", "replace"):
            raise ValueError(f"operations mode must be 'merge' or 'replace', got {mode!r}")
        loaded = load_operations(path)
        if mode == "replace":
            return cls(loaded)
        merged = {op.name: op for op in base}
        merged.update({op.name: op for op in loaded})
        return cls(list(merged.values()))

    def __len__(self) -> int:
        return len(self.operations)

    def index(self, name: str) -> int:
        """Action index of an operation name."""
        return self.names.index(name)

    def render(self, op_index: int, instruction: str) -> str:
        """The instructor prompt applying operation ``op_index`` to ``instruction``."""
        return fill_template(self.operations[op_index].template, instruction=instruction)

    @staticmethod
    def parse(reply: str) -> str | None:
        """The rewritten instruction in an instructor reply, or None (see ``parse_rewrite``)."""
        return parse_rewrite(reply)


# ---------------------------------------------------------------------------------------------------
# Loading user operations
# ---------------------------------------------------------------------------------------------------

def load_operations(path: str | os.PathLike) -> list[Operation]:
    """Read and validate a list of ``{name, template, kind}`` from YAML (.yaml/.yml) or JSON.

    Errors are one-line ValueErrors naming the file and the offending field."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read operations file ({e.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(raw)
        else:
            data = json.loads(raw)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError, both with positions in str(e)
        raise ValueError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: "
                         f"{' '.join(str(e).split())}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of {{name, template, kind}} entries")
    ops, seen = [], set()
    for i, entry in enumerate(data):
        where = f"{path}: operations[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with name, template, kind")
        unknown = set(entry) - {"name", "template", "kind"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: name, template, kind")
        for key in ("name", "template", "kind"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ValueError(f"{where}.{key}: missing or not a non-empty string")
        name = entry["name"].strip()
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ValueError(f"{where}.name: {name!r} must be letters, digits, '_', '-' or '.' only")
        if name in seen:
            raise ValueError(f"{where}.name: duplicate operation name {name!r}")
        if PLACEHOLDER not in entry["template"]:
            raise ValueError(f"{where}.template: must contain the {PLACEHOLDER} placeholder")
        if entry["kind"] not in KINDS:
            raise ValueError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {entry['kind']!r}")
        seen.add(name)
        ops.append(Operation(name, entry["template"], entry["kind"]))
    return ops


# ---------------------------------------------------------------------------------------------------
# Parsing the instructor's reply
# ---------------------------------------------------------------------------------------------------

_TAGGED = re.compile(r"<\s*new_instruction\s*>(.*?)(?:<\s*/\s*new_instruction\s*>|$)", re.I | re.S)
_STRAY_TAG = re.compile(r"<\s*/?\s*new_instruction\s*>", re.I)
_LABEL_WORDS = (r"(?:the\s+)?(?:final\s+)?(?:#?\s*)(?:rewritten|new|revised|evolved|created|modified|updated|"
                r"improved|harder|resulting|given)\s+(?:version\s+of\s+the\s+)?"
                r"(?:prompt|instruction|question|task|version)")
# A label at the start of a line: "#Rewritten Instruction#:", "**New prompt:**", "Revised version -".
_LABEL = re.compile(r"^[ \t>*_#`\"']*" + _LABEL_WORDS + r"[ \t*_#`]*(?::|\s[-–—]|\s+is\s*:)[ \t*_#`]*",
                    re.I | re.M)
# Chatter before the instruction: "Sure! Here's the rewritten instruction:", "Okay, here is my version:".
# A "here is ..." lead-in counts only when it names the rewrite ("Here is a list of numbers: ..." is
# content); an interjection only with such a lead-in, or as a short first line of its own
# ("Alright, here is a question for you. Which movie ...?" is content).
_INTERJECTION = r"(?:sure|certainly|of course|okay|ok|absolutely|alright|great)\s*[!,.]"
_CHATTER = re.compile(r"^(?:" + _INTERJECTION + r"\s*)?(?:here\s+is|here's|below\s+is)\s+(?:the|my|a|an|your)\s+"
                      r"[^\n:]{0,60}?\b(?:instruction|prompt|version|rewrite)\b[^\n:]{0,40}:\s*", re.I)
_INTERJECTION_START = re.compile(r"^" + _INTERJECTION, re.I)
_ABOUT_HELPING = re.compile(r"\b(?:help|happy|glad|rewrit\w*|version|instruction|prompt|here you go)\b", re.I)
_FENCE = re.compile(r"^```[ \t]*(?:text|markdown|md|plaintext|txt)?[ \t]*\n(.*)\n```[ \t]*$", re.S | re.I)
_LONE_FENCE = re.compile(r"^```[ \t]*(?:text|markdown|md|plaintext|txt)?[ \t]*\n|\n```[ \t]*$", re.I)
_I_CHANGED = r"(?-i:I)(?:'ve|\s+have)?\s+(?:added|made|changed|replaced|introduced|included|kept|modified|rewr\w*)"
_ABOUT_REWRITE = r"(?=[^\n]{0,80}?\b(?:" + _I_CHANGED + r"|added|rewrit\w*|instruction|prompt|version|constraint)\b)"
# Trailing notes about the rewrite. A note that belongs to the task ("Note: values are in kg.",
# "Explanation: Mary is the tallest" in a worked example) stays.
_NOTE = re.compile(r"\n\s*\(?\s*(?:\*\*)?(?:(?:notes?|explanation|rationale|changes?(?: made)?)\s*(?:\*\*)?\s*:"
                   + _ABOUT_REWRITE + r"|(?:this|the above|in this|my) (?:rewritten|new|revised|updated|evolved) "
                   r"(?:instruction|prompt|version)\b|" + _I_CHANGED + r"\b).*$", re.I | re.S)
_INLINE_NOTE = re.compile(r"\s*\((?:note\s*:\s*)?(?:i (?:have )?(?:added|replaced|changed|introduced|made)|"
                          r"(?:this|the) (?:rewritten|new|revised) (?:instruction|prompt|version))\b[^)]*\)\s*$", re.I)
# The prompt's <<< >>> markers (or a truncated << >>) around the whole answer: a weak model's delimiters.
_MARKER_EDGES = re.compile(r"^\s*<{2,3}(?!<)[ \t]*\n?|\n?[ \t]*(?<!>)>{2,3}\s*$")
# A reply opening with a marker-framed segment, as in "<<< Explain ... >>" followed by chatter or an answer.
_FRAMED = re.compile(r"^\s*<{2,3}(?!<)(.*?)(?:(?<!>)>{2,3}(?!>)|$)", re.S)
# What is left when a reply names the format instead of using it: "tags.", ">>", "<new_instruction> tags".
_REMNANT = re.compile(r"^[\W_]*(?:(?:the|new_instruction|new|instruction|tags?|markers?)\b[\W_]*)*$", re.I)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("`", "`"), ("**", "**"), ("__", "__"))


def _strip_wrappers(text: str) -> str:
    """Remove matching surrounding quotes / bold markers, repeatedly."""
    changed = True
    while changed and text:
        changed = False
        for left, right in _QUOTES:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                inner = text[len(left):-len(right)].strip()
                # Leave '"a" and "b"' or '**A** and **B**' alone: the inner part must not hold the marks.
                if left in inner or right in inner:
                    continue
                text, changed = inner, True
    return text


def _drop_chatter_line(text: str) -> str:
    """Drop a first line like "Okay." / "Sure, I can help with that." / "Certainly! Here it is:" when
    more text follows; a first line that asks something or says more stays."""
    first, newline, rest = text.partition("\n")
    start = _INTERJECTION_START.match(first)
    if not (start and newline and rest.strip()):
        return text
    tail = first[start.end():].strip()
    if not tail or ("?" not in tail and len(tail.split()) <= 12
                    and (tail.endswith(":") or _ABOUT_HELPING.search(tail))):
        return rest.strip()
    return text


def _clean(text: str) -> str:
    prev = None
    text = _STRAY_TAG.sub("", text).strip()
    while text != prev:
        prev = text
        text = _MARKER_EDGES.sub("", text).strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1).strip()
        elif text.count("```") % 2:  # a lone fence left over from cutting at a label inside a fenced reply
            text = _LONE_FENCE.sub("", text).strip()
        text = _CHATTER.sub("", text, count=1).strip()
        text = _drop_chatter_line(text)
        label = _LABEL.match(text)
        if label:
            text = text[label.end():].strip()
        text = _NOTE.sub("", text).strip()
        text = _INLINE_NOTE.sub("", text).strip()
        text = _strip_wrappers(text)
    return text


def is_remnant(text: str) -> bool:
    """True when ``text`` holds no words but the format's own ("tags.", ">>", "new_instruction"): what is left
    of a reply that named the answer format instead of using it."""
    return bool(_REMNANT.match(_STRAY_TAG.sub(" ", text)))


def parse_rewrite(reply: str) -> str | None:
    """Extract the rewritten instruction from an instructor reply; None when nothing usable remains.

    Preference order: the last ``<new_instruction>`` segment that holds more than remnants of the format (an
    echoed template contributes an empty pair of tags; "enclosed in <new_instruction> tags." a lone "tags."),
    else a segment framed by the prompt's markers at the start of the reply ("<<< ... >>", what follows it is
    taken as chatter or an answer), else the text after the last line-leading label such as ``Rewritten
    Prompt:``, else the whole reply. The chosen text is then stripped of chatter ("Sure, here is..."),
    labels, markers or a markdown fence wrapping everything, trailing notes ("Note: I added...") and
    surrounding quotes. A result that is only remnants of the format (``is_remnant``) gives None.

    A weak model often echoes the instruction it was given between the markers ("<<< Explain X. >>"): that
    parses to the instruction itself, which the reward's gates then drop as ``no_information_gain`` (the
    model added nothing; it copied no wording of the template).
    """
    if not reply or not reply.strip():
        return None
    reply = reply.replace("\r\n", "\n").strip()
    segments = [_clean(s) for s in _TAGGED.findall(reply)]
    segments = [s for s in segments if not is_remnant(s)]
    framed = _FRAMED.match(reply)
    if segments:
        text = segments[-1]
    elif framed and not is_remnant(framed.group(1)):
        text = _clean(framed.group(1))
    else:
        labels = list(_LABEL.finditer(reply))
        text = _clean(reply[labels[-1].end():] if labels else reply)
    return None if is_remnant(text) else text
