"""Instruction records: read JSON / JSONL files and validate every record, failing at ``file:line``.

Two record kinds are accepted (extra keys such as ``_run`` or ``id`` are ignored):

* Alpaca: ``{"instruction": str, "input": str (optional), "output": str}``;
* chat:   ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` with at least one
  assistant turn.

A ``.json`` file holds one JSON array of records; any other suffix is read as JSONL (one record per
line, blank lines skipped). Each record is normalised to ``Record`` so that the JSONL path and the
TFDS path (``tfds_builder``) hand the tokeniser identical values.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterator

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A bad data file or record; the message is one line, starting with ``file:line:``."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One validated example. Exactly one of (``instruction``, ``output``) or ``messages`` is set."""

    instruction: str = ""
    input: str = ""
    output: str = ""
    messages: tuple[tuple[str, str], ...] = ()  # ((role, content), ...); empty for Alpaca records
    line: int = 0  # 1-based line of the record in its source file (for messages and debugging)

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)


def _check_str(value, what: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def parse_record(obj, line: int) -> Record:
    """Validate one decoded JSON value; raises ``ValueError`` with a short reason (no location)."""
    if not isinstance(obj, dict):
        raise ValueError(f"record must be a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("'messages' must be a non-empty list")
        turns = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
            if m["role"] not in ROLES:
                raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}")
            turns.append((m["role"], _check_str(m["content"], f"messages[{i}].content", allow_empty=False)))
        if not any(role == "assistant" for role, _ in turns):
            raise ValueError("'messages' has no assistant turn (nothing to learn)")
        return Record(messages=tuple(turns), line=line)
    for key in ("instruction", "output"):
        if key not in obj:
            raise ValueError(f"missing '{key}'")
    return Record(
        instruction=_check_str(obj["instruction"], "'instruction'", allow_empty=False),
        input=_check_str(obj.get("input") or "", "'input'", allow_empty=True),
        output=_check_str(obj["output"], "'output'", allow_empty=False),
        line=line,
    )


def _json_array_items(text: str, path: str) -> Iterator[tuple[object, int]]:
    """Yield (value, line) for each element of a top-level JSON array, keeping each element's line."""
    decoder = json.JSONDecoder()

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip_ws(0)
    if not text.startswith("[", i):
        raise DataError(f"{path}:{line_of(i)}: a .json file must hold a JSON array of records")
    i = skip_ws(i + 1)
    if text.startswith("]", i):
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
        yield value, line_of(i)
        i = skip_ws(end)
        if text.startswith("]", i):
            return
        if not text.startswith(",", i):
            raise DataError(f"{path}:{line_of(i)}: malformed JSON: expected ',' or ']' between records")
        i = skip_ws(i + 1)


def _raw_items(path: pathlib.Path) -> Iterator[tuple[object, int]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        yield from _json_array_items(text, str(path))
        return
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw), n
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: malformed JSON: {e.msg} (column {e.colno})") from None


def read_records(path: str | pathlib.Path) -> list[Record]:
    """All records of a JSON or JSONL file, validated; the first bad one raises ``DataError`` (file:line)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path}:0: no such data file")
    records = []
    for obj, line in _raw_items(path):
        try:
            records.append(parse_record(obj, line))
        except ValueError as e:
            raise DataError(f"{path}:{line}: {e}") from None
    if not records:
        raise DataError(f"{path}:1: no records in file")
    return records
