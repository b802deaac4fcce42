"""Shared fixtures of the SFT tests: a tokenizer trained here, a tiny Llama, small data files."""

import json

import pytest

from .. import records
from ..records import make_records


@pytest.fixture(scope="session")
def tokenizer():
    return records.tiny_tokenizer()


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_records(64)))
    return path
