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
