"""Atomic writes of teamsrl_jax.fileio: exact content, replacement, and nothing left behind on failure."""

from __future__ import annotations

import pytest

from teamsrl_jax.fileio import atomic_write_bytes, atomic_write_text


def test_atomic_write_bytes_writes_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "sub" / "blob.bin"
    data = bytes(range(256)) * 3 + b"\r\n\x00"
    atomic_write_bytes(path, data)                      # creates the missing parent folder
    assert path.read_bytes() == data
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")           # fails inside the write: the old file stays whole
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["blob.bin"]   # no temporary file left


def test_atomic_write_text_is_utf8_without_newline_translation(tmp_path):
    path = tmp_path / "t.txt"
    atomic_write_text(path, "héllo\nwörld\r\n")
    assert path.read_bytes() == "héllo\nwörld\r\n".encode("utf-8")


def test_new_files_follow_the_umask_and_replacements_keep_the_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "s.json"
    atomic_write_text(path, "{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600
    path.chmod(0o640)
    atomic_write_text(path, "[]")
    assert path.stat().st_mode & 0o777 == 0o640


def test_truncate_keeps_rows_holding_unicode_line_separators(tmp_path):
    from teamsrl_jax.fileio import JsonlLog

    log = JsonlLog(tmp_path / "m.jsonl")
    rows = [{"step": i, "text": f"a\u2028b\u2029c\x85d {i}"} for i in range(4)]
    log.append(rows)
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"step": 4, "te')  # torn by a kill
    assert log.truncate("step", 3) == 3
    assert log.rows() == rows[:3]
