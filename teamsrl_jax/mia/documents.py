"""What a membership score reads per example: its SFT text and exactly the tokens the SFT trains on.

The tokens come from ``teamsrl_jax.sft.data.encode`` itself: for Alpaca, the prompt (with the tokenizer's
special tokens, e.g. BOS), the response and the EOS, truncated to ``max_length`` as the SFT truncates; for
chat records, the chat-template rendering, truncated to its first ``max_length`` tokens. Every token after
the first is scored (the prompt too, as MIMIR scores whole documents), not only the SFT's loss tokens.

The text (what zlib compresses, and what ``scores.jsonl`` hashes) is the untruncated SFT text: the Alpaca
prompt followed by the response (the EOS token has no text), or the rendered chat, as MIMIR compresses the
whole document even when its tokens are cut at the model's length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from teamsrl_jax.sft import data as sft_data
from teamsrl_jax.sft.records import Record

_NO_LIMIT = 1 << 62


@dataclasses.dataclass(frozen=True)
class Document:
    """One example as the attack sees it."""

    text: str
    tokens: np.ndarray  # [n] int32, n >= 2
    full_length: int  # tokens before truncation to max_length


def sft_text(tokenizer, record: Record) -> str:
    """The text of a record as the SFT renders it (before tokenisation)."""
    if record.is_chat:
        return sft_data.assistant_spans(tokenizer, record)[0]
    return sft_data.alpaca_prompt(record) + record.output


def sft_documents(tokenizer, records: Sequence[Record], max_length: int) -> list[Document]:
    """One ``Document`` per record, in order; a record that leaves fewer than two tokens is a ValueError."""
    examples = sft_data.encode(tokenizer, records, max_length)
    full = sft_data.encode(tokenizer, records, _NO_LIMIT)
    docs = []
    for record, ex, whole in zip(records, examples, full):
        if len(ex.tokens) < 2:
            raise ValueError(f"line {record.line}: {len(ex.tokens)} token(s) at max_length {max_length}; "
                             f"a score needs at least one predicted token")
        docs.append(Document(sft_text(tokenizer, record), ex.tokens, len(whole.tokens)))
    return docs
