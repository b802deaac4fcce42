"""Seed instructions: readers for Alpaca and Self-Instruct files, and a deterministic ``SeedPool``.

Formats (detected per record):
- Alpaca ``{instruction, input, output}``: a JSON list (``.json``) or one object per line (``.jsonl``);
  ``input`` and ``output`` may be missing (read as "").
- Self-Instruct ``{instruction, instances: [{input, output}, ...]}`` (JSONL): the first instance's
  ``input`` and ``output`` are used.

Convention: an instruction that comes with an input is presented to the environment as
``instruction + "\\n\\n" + input`` (``Seed.text``); the blank line keeps the input visibly separate, and
the depth rewrites are told to keep it unchanged.

Bad records fail with a one-line ValueError starting ``file:line:`` (for a JSON list, the line where
the record starts, and its index).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEED_FILE = Path(__file__).with_name("data") / "default_seeds.jsonl"


@dataclass(frozen=True)
class Seed:
    """One seed instruction."""

    instruction: str
    input: str = ""
    output: str = ""
    source: str = ""
    """Where it came from, ``file:line``."""

    @property
    def text(self) -> str:
        """What the environment starts from: the instruction, plus a blank line and the input if any."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def _string_field(record: dict, key: str, where: str, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}: missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return value.strip()


def _to_seed(record: object, where: str) -> Seed:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    instruction = _string_field(record, "instruction", where, required=True)
    if "instances" in record:  # Self-Instruct
        instances = record["instances"]
        if not isinstance(instances, list) or any(not isinstance(i, dict) for i in instances):
            raise ValueError(f"{where}: field 'instances' must be a list of objects")
        first = instances[0] if instances else {}
        return Seed(instruction, _string_field(first, "input", f"{where}: instances[0]", False),
                    _string_field(first, "output", f"{where}: instances[0]", False), where)
    return Seed(instruction, _string_field(record, "input", where, False),
                _string_field(record, "output", where, False), where)


def _json_list_records(text: str, path: Path) -> Iterable[tuple[object, str]]:
    """Yield (record, "file:line: record i") for a JSON list, locating each record's first line."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def skip(i: int) -> int:
        while i < len(text) and text[i] in ws:
            i += 1
        return i

    def fail(pos: int, msg: str) -> ValueError:
        return ValueError(f"{path}:{text.count(chr(10), 0, pos) + 1}: {msg}")

    i = skip(0)
    if i >= len(text) or text[i] != "[":
        raise fail(i, "expected a JSON list of records (or use .jsonl, one object per line)")
    i, index = skip(i + 1), 0
    if i < len(text) and text[i] == "]":
        return
    line, counted = 1, 0  # text[counted] is on line `line`: newlines are counted once each, not from the start
    while True:
        try:
            record, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise fail(e.pos, f"record {index}: invalid JSON ({e.msg})") from None
        line, counted = line + text.count("\n", counted, i), i
        yield record, f"{path}:{line}: record {index}"
        i, index = skip(end), index + 1
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i < len(text) and text[i] == "]":
            if skip(i + 1) != len(text):
                raise fail(i + 1, "unexpected text after the JSON list")
            return
        else:
            raise fail(i, f"record {index}: expected ',' or ']' in the JSON list")


def read_seeds(path: str | os.PathLike) -> list[Seed]:
    """All seeds in an Alpaca (.json list or .jsonl) or Self-Instruct (.jsonl) file, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read seed file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if text.lstrip().startswith("["):
        seeds = [_to_seed(record, where) for record, where in _json_list_records(text, path)]
    else:
        seeds = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            seeds.append(_to_seed(record, where))
    if not seeds:
        raise ValueError(f"{path}: no seed records")
    return seeds


class SeedPool:
    """Seeds drawn without replacement in a seeded random order; reshuffled when exhausted.

    The whole sequence of draws depends only on the seeds and ``seed``. Duplicate texts are dropped
    (first occurrence kept) so that "without replacement" means distinct instructions.
    """

    def __init__(self, seeds: Sequence[Seed | str], seed: int = 0):
        unique: dict[str, Seed] = {}
        for s in seeds:
            s = Seed(s) if isinstance(s, str) else s
            if not s.text.strip():
                raise ValueError(f"{s.source or 'seed'}: empty instruction")
            unique.setdefault(s.text, s)
        if not unique:
            raise ValueError("a SeedPool needs at least one seed")
        self.seeds: tuple[Seed, ...] = tuple(unique.values())
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(self.seeds))
        self._cursor = 0

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None, seed: int = 0) -> SeedPool:
        """A pool over a seed file; None means the small bundled default set."""
        return cls(read_seeds(DEFAULT_SEED_FILE if path is None else path), seed)

    def __len__(self) -> int:
        return len(self.seeds)

    def draw(self, n: int) -> list[Seed]:
        """The next ``n`` seeds. Within one pass over the pool no seed repeats; a new pass reshuffles."""
        out = []
        for _ in range(n):
            if self._cursor == len(self._order):
                self._order, self._cursor = self._rng.permutation(len(self.seeds)), 0
            out.append(self.seeds[self._order[self._cursor]])
            self._cursor += 1
        return out

    def state_dict(self) -> dict:
        """Where the draw sequence stands (JSON-able except ``order``, a NumPy array)."""
        return {"order": self._order.copy(), "cursor": self._cursor, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Continue the draw sequence saved by ``state_dict`` (the pool must hold the same seeds)."""
        order = np.asarray(state["order"], np.int64)
        if order.shape != (len(self.seeds),) or set(order.tolist()) != set(range(len(self.seeds))):
            raise ValueError(f"seed pool state is for {len(order)} seeds, this pool has {len(self.seeds)}")
        self._order, self._cursor = order, int(state["cursor"])
        self._rng.bit_generator.state = state["rng"]

    def split(self, held_out_fraction: float, seed: int = 0) -> tuple[SeedPool, SeedPool]:
        """(train, held_out) pools: a seeded random ``held_out_fraction`` of the seeds is held out.

        Each part keeps file order and draws with its own generator seeded by ``seed``."""
        if not 0 < held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction!r}")
        k = int(round(held_out_fraction * len(self.seeds)))
        if not 0 < k < len(self.seeds):
            raise ValueError(f"held_out_fraction={held_out_fraction} leaves an empty part of {len(self.seeds)} seeds")
        held = np.zeros(len(self.seeds), bool)
        held[np.random.default_rng(seed).permutation(len(self.seeds))[:k]] = True
        return (SeedPool([s for s, h in zip(self.seeds, held) if not h], seed),
                SeedPool([s for s, h in zip(self.seeds, held) if h], seed))
