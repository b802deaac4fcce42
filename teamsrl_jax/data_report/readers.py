"""Instruction datasets as ``Example`` lists, whatever the file format.

A file is a JSON list (its text starts with ``[``) or JSONL (one object per line, blank lines skipped),
whatever its suffix. Its format is detected from its first record and every record must then be of it:

- ``alpaca``: ``{instruction, input, output}`` (``input``/``output`` may be missing; extra keys are
  ignored except the generation stage's provenance ``operation`` (str) and ``step`` (int));
- ``self-instruct``: ``{instruction, instances: [{input, output}, ...]}`` (the seed tasks and the
  user-oriented set); the first instance gives ``input`` and ``output``, as for seeds;
- ``wizardlm``: WizardLM's test set ``{idx, Skill, Difficulty, Instruction}``; no output;
- ``chat``: ``{messages: [{role, content}, ...]}``, validated as SFT reads it; the first user turn is the
  instruction, the first assistant turn the output.

Alpaca and Self-Instruct records go through the seed reader's checks (``env.seeds``), chat records
through the SFT reader's (``sft.records``). A bad record raises a one-line ``ValueError`` starting
``file:line:``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the seed reader's record checks and its JSON-list walk (each record's line), so both readers fail alike
from teamsrl_jax.env.seeds import Seed, _json_list_records, _to_seed
from teamsrl_jax.sft.records import parse_record


@dataclass(frozen=True)
class Example(Seed):
    """One record: a seed's fields (``text`` is the instruction plus a blank line and the input, if any)
    and, where the generation stage wrote it, its provenance."""

    operation: str | None = None
    """The operation that produced the instruction (the generation stage's ``operation`` field)."""
    step: int | None = None
    """The chain step at which it was produced (``step``)."""


@dataclass(frozen=True)
class Dataset:
    """The examples of one file (all of them, or a sample: see ``sample``)."""

    name: str
    path: str
    format: str
    examples: tuple[Example, ...]
    records_in_file: int


def _kind(record: dict) -> str | None:
    """The format a record's keys point to, or None."""
    for key, kind in (("messages", "chat"), ("instances", "self-instruct"), ("instruction", "alpaca"),
                      ("Instruction", "wizardlm")):
        if key in record:
            return kind
    return None


def detect_format(record: object, where: str) -> str:
    """The format of a file, from its first record."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    kind = _kind(record)
    if kind is None:
        keys = ", ".join(sorted(map(str, record))[:8]) or "none"
        raise ValueError(f"{where}: unknown record format (keys: {keys}); expected 'instruction', "
                         "'instances', 'Instruction' (WizardLM) or 'messages' (chat)")
    return kind


def _provenance(record: dict, where: str) -> tuple[str | None, int | None]:
    operation, step = record.get("operation"), record.get("step")
    if operation is not None and not isinstance(operation, str):
        raise ValueError(f"{where}: field 'operation' must be a string, got {type(operation).__name__}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError(f"{where}: field 'step' must be an integer, got {type(step).__name__}")
    return operation or None, step


def _chat(record: dict, where: str) -> Example:
    try:
        turns = parse_record(record, 0).messages
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    user = next((c for role, c in turns if role == "user"), None)
    if user is None:
        raise ValueError(f"{where}: 'messages' has no user turn")
    return Example(user.strip(), output=next(c for role, c in turns if role == "assistant").strip(), source=where)


def to_example(record: object, fmt: str, where: str) -> Example:
    """One decoded record of a file in format ``fmt`` as an ``Example``."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    kind = _kind(record)
    if kind is not None and kind != fmt and {kind, fmt} != {"alpaca", "self-instruct"}:
        raise ValueError(f"{where}: a {kind} record, but the file's first record is {fmt}")
    if fmt == "chat":
        if kind is None:
            raise ValueError(f"{where}: missing field 'messages'")
        return _chat(record, where)
    if fmt == "wizardlm":
        text = record.get("Instruction")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: field 'Instruction' must be a non-empty string")
        return Example(text.strip(), source=where)
    seed = _to_seed(record, where)
    operation, step = _provenance(record, where)
    return Example(seed.instruction, seed.input, seed.output, where, operation, step)


def _raw_records(path: Path):
    """(decoded record, "file:line") for each record of a JSON list or JSONL file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if text.lstrip().startswith("["):
        yield from _json_list_records(text, path)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line), f"{path}:{lineno}"
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None


def read_examples(path: str | os.PathLike) -> tuple[str, list[Example]]:
    """(format, every record of the file as an ``Example``, in file order)."""
    path = Path(path)
    fmt, examples = None, []
    for record, where in _raw_records(path):
        fmt = fmt or detect_format(record, where)
        examples.append(to_example(record, fmt, where))
    if not examples:
        raise ValueError(f"{path}: no records")
    return fmt, examples


def sample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random ``limit`` of the examples, kept in file order (all of them when ``limit`` is None or
    not smaller). The draw depends only on (``seed``, number of examples)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
    return [examples[i] for i in keep]


def read_dataset(name: str, path: str | os.PathLike, limit: int | None = None, seed: int = 0) -> Dataset:
    fmt, examples = read_examples(path)
    return Dataset(name, str(path), fmt, tuple(sample(examples, limit, seed)), len(examples))


def parse_dataset_arg(arg: str) -> tuple[str | None, str]:
    """``PATH`` or ``NAME=PATH`` -> (name or None, path). An ``=`` after a ``/`` belongs to the path (so a
    file named ``a=b.jsonl`` is given as ``./a=b.jsonl``)."""
    head, eq, tail = arg.partition("=")
    if not eq or "/" in head or os.sep in head:
        if not arg.strip():
            raise ValueError("empty dataset argument")
        return None, arg
    if not head.strip() or not tail.strip():
        raise ValueError(f"bad dataset argument {arg!r}: expected PATH or NAME=PATH")
    return head.strip(), tail


def dataset_names(args: list[tuple[str | None, str]], names: list[str] | None) -> list[str]:
    """A unique name per dataset: ``--name`` (one per dataset), else NAME=, else the file's stem (with its
    folder where two stems clash, e.g. two ``data.jsonl``)."""
    if names is not None:
        if len(names) != len(args):
            raise ValueError(f"--name gives {len(names)} names for {len(args)} datasets")
        if any(given is not None for given, _ in args):
            raise ValueError("give dataset names either with --name or as NAME=PATH, not both")
        out = list(names)
    else:
        stems = [given or Path(path).stem for given, path in args]
        folders = [Path(path).parent.name for _, path in args]
        out = [s if given or stems.count(s) == 1 or not folder else f"{folder}/{s}"
               for s, folder, (given, _) in zip(stems, folders, args)]
    for name in out:
        if not name.strip():
            raise ValueError("empty dataset name")
        if out.count(name) > 1:
            raise ValueError(f"two datasets named {name!r}; name them with --name or NAME=PATH")
    return out
