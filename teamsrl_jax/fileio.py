"""Crash-safe file writing shared by the stages: atomic replace, and JSONL logs that resume cleanly.

``atomic_write_*`` write a temporary file beside the target, fsync it, and ``os.replace`` it: a reader (or a
kill -9) sees the old file or the new one, never half of one. ``JsonlLog`` appends one JSON object per line
and flushes each; on resume, ``truncate(key, below)`` keeps only the rows of finished work (dropping a torn
last line left by a kill), so a resumed run appends exactly where its checkpoint stands.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

_UMASK = os.umask(0o022)  # read once (setting it is the only way), then put back
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file owner-only: give it the mode of the file it replaces, or the umask's default
        os.fchmod(fd, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):  # numpy / jax scalars and arrays
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a malformed line raises ``ValueError`` naming ``file:line``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    return rows


class JsonlLog:
    """Append-only JSONL file, one flushed line per row."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, rows: Iterable[dict[str, Any]] | dict[str, Any]) -> None:
        rows = [rows] if isinstance(rows, dict) else list(rows)
        if not rows:
            return
        text = "".join(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in rows)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()

    def truncate(self, key: str, below: int) -> int:
        """Keep the rows whose ``key`` is < ``below`` (atomically); a torn final line is dropped, a malformed
        line elsewhere is an error. Returns the number of rows kept."""
        if not self.path.exists():
            return 0
        lines = self.path.read_text(encoding="utf-8").split("\n")  # not splitlines(): rows may hold U+2028 etc.
        kept = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if i == len(lines):
                    break  # the write a kill interrupted
                raise ValueError(f"{self.path}:{i}: invalid JSON ({e.msg})") from None
            if row.get(key, below) < below:
                kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))
        return len(kept)

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path) if self.path.exists() else []
