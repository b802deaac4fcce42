"""SFT input pipeline: prompt template -> tokens with a loss mask -> packed rows -> batches.

* **Template** (Alpaca, REFERENCE §4): ``PROMPT_WITH_INPUT`` / ``PROMPT_NO_INPUT``. Chat records go
  through the tokenizer's own chat template.
* **Loss mask**: only the response and the EOS that closes it are learned (prompt tokens masked);
  for chat, only the tokens of assistant turns (including the template's end-of-turn marker).
* **Truncation** to ``max_length`` tokens: the response (with its EOS) is cut first and the prompt
  kept whole while it leaves room for ``min(len(response), max_length // 4)`` response tokens;
  a longer prompt keeps its head and the response that quarter. Chat token streams keep their
  first ``max_length`` tokens.
* **Packing** (sequential, "next-fit"): examples are taken in the epoch's shuffled order and appended
  to the current row until the next one does not fit, which then opens a new row. Every example
  gets its own segment id (1, 2, ...) and positions restarting at 0; padding is segment 0, so
  attention never crosses examples and padding carries no loss. An example of ``n`` tokens fills
  ``n - 1`` positions (inputs ``x[:-1]``, targets ``x[1:]``).
* **Order**: epoch ``e`` uses the permutation ``default_rng([seed, e])``; batches are
  ``global_batch`` consecutive rows; the last batch of an epoch is filled with empty rows. The
  loader's position ``(epoch, index)`` is all that exact resume needs.
* **Multi-host**: process ``p`` of ``P`` yields rows ``[p*B/P, (p+1)*B/P)`` of each global batch;
  ``teamsrl_jax.model.sharding.host_local_batch_to_global`` assembles them into global arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from teamsrl_jax.sft.records import Record

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
BATCH_KEYS = ("input_ids", "targets", "loss_mask", "segment_ids", "positions")


def alpaca_prompt(record: Record) -> str:
    """The Alpaca prompt of a record (the with-input variant only when ``input`` is non-empty)."""
    if record.input.strip():
        return PROMPT_WITH_INPUT.format(instruction=record.instruction, input=record.input)
    return PROMPT_NO_INPUT.format(instruction=record.instruction)


@dataclasses.dataclass(frozen=True)
class Example:
    """A tokenised example: ``tokens[i]`` is learned (predicted from ``tokens[:i]``) where ``mask[i]``."""

    tokens: np.ndarray  # [n] int32
    mask: np.ndarray  # [n] bool

    @property
    def num_loss_tokens(self) -> int:
        return int(self.mask[1:].sum())


# --------------------------------------------------------------------------- tokenisation


def _truncate(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    response_budget = max(max_length - len(prompt), min(len(response), max_length // 4))
    return prompt[: max_length - response_budget], response[:response_budget]


def _encode_alpaca(tokenizer, records: Sequence[Record], max_length: int) -> list[Example]:
    if not records:
        return []
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token_id: Alpaca SFT learns the EOS after each response")
    prompts = tokenizer([alpaca_prompt(r) for r in records], add_special_tokens=True)["input_ids"]
    responses = tokenizer([r.output for r in records], add_special_tokens=False)["input_ids"]
    out = []
    for p, r in zip(prompts, responses):
        p, r = _truncate(list(p), list(r) + [tokenizer.eos_token_id], max_length)
        out.append(Example(np.asarray(p + r, np.int32), np.asarray([0] * len(p) + [1] * len(r), bool)))
    return out


def _render_chat(tokenizer, turns, **kw) -> str:
    messages = [{"role": role, "content": content} for role, content in turns]
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def assistant_spans(tokenizer, record: Record) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat text and the character spans of its assistant turns.

    A turn's span runs from the end of the prefix rendered with the generation prompt to the end of
    the prefix that includes the turn (trailing whitespace dropped), so it covers the reply and the
    template's end-of-turn marker.
    """
    text = _render_chat(tokenizer, record.messages)
    spans = []
    for i, (role, _) in enumerate(record.messages):
        if role != "assistant":
            continue
        before = _render_chat(tokenizer, record.messages[:i], add_generation_prompt=True) if i else ""
        upto = _render_chat(tokenizer, record.messages[: i + 1])
        if not (upto.startswith(before) and text.startswith(upto)):
            raise ValueError(f"line {record.line}: the chat template does not render prefixes as prefixes")
        spans.append((len(before), len(upto.rstrip())))  # whitespace after the end-of-turn is not learned
    return text, spans


def _encode_chat(tokenizer, record: Record, max_length: int) -> Example:
    text, spans = assistant_spans(tokenizer, record)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.asarray([s for s, _ in enc["offset_mapping"]], np.int64)
    mask = np.zeros(len(starts), bool)
    for lo, hi in spans:
        mask |= (starts >= lo) & (starts < hi)
    return Example(np.asarray(enc["input_ids"][:max_length], np.int32), mask[:max_length])


def encode(tokenizer, records: Sequence[Record], max_length: int) -> list[Example]:
    """Tokenise records (Alpaca in one batched call, chat one by one) in their given order."""
    alpaca_idx = [i for i, r in enumerate(records) if not r.is_chat]
    out: list[Example | None] = [None] * len(records)
    for i, ex in zip(alpaca_idx, _encode_alpaca(tokenizer, [records[i] for i in alpaca_idx], max_length)):
        out[i] = ex
    for i, r in enumerate(records):
        if r.is_chat:
            out[i] = _encode_chat(tokenizer, r, max_length)
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- splitting and packing


def split_eval(n: int, *, eval_fraction: float = 0.0, eval_count: int = 0, seed: int = 0):
    """Deterministic (train_indices, eval_indices) of ``n`` examples; ``eval_count`` wins when set."""
    k = eval_count if eval_count else int(round(n * eval_fraction))
    if not 0 <= k < n:
        raise ValueError(f"eval split of {k} examples leaves no training data out of {n}")
    perm = np.random.default_rng([seed, 0xE7A1]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def pack_order(lengths: Sequence[int], order: Sequence[int], seq_len: int, packing: bool) -> list[list[int]]:
    """Rows of example indices, filled sequentially in ``order`` (each example takes ``length-1`` positions)."""
    rows: list[list[int]] = []
    used = seq_len + 1  # forces a new row for the first example
    for i in order:
        need = lengths[i] - 1
        if need > seq_len:
            raise ValueError(f"example {i} has {lengths[i]} tokens, more than seq_len + 1 = {seq_len + 1}")
        if not packing or used + need > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(int(i))
        used += need
    return rows


def make_rows(examples: Sequence[Example], rows: Sequence[Sequence[int]], seq_len: int, pad_id: int = 0):
    """Numpy arrays ``[len(rows), seq_len]`` for ``BATCH_KEYS``; an empty row is all padding."""
    shape = (len(rows), seq_len)
    out = {k: np.zeros(shape, np.int32) for k in BATCH_KEYS}
    out["input_ids"][:] = pad_id
    for r, idxs in enumerate(rows):
        off = 0
        for seg, i in enumerate(idxs, start=1):
            x, m = examples[i].tokens, examples[i].mask
            n = len(x) - 1
            sl = slice(off, off + n)
            out["input_ids"][r, sl] = x[:-1]
            out["targets"][r, sl] = x[1:]
            out["loss_mask"][r, sl] = m[1:]
            out["segment_ids"][r, sl] = seg
            out["positions"][r, sl] = np.arange(n)
            off += n
    return out


# --------------------------------------------------------------------------- the loader


class PackedLoader:
    """An endless iterator of packed batches over epochs; ``position`` gives (epoch, index) for resume.

    Each ``next()`` returns this process's slice of the next global batch as numpy arrays
    ``[global_batch // process_count, seq_len]``.
    """

    def __init__(self, examples: Sequence[Example], *, seq_len: int, global_batch: int, seed: int = 0,
                 shuffle: bool = True, packing: bool = True, pad_id: int = 0,
                 process_index: int = 0, process_count: int = 1):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by {process_count} processes")
        self.examples, self.seq_len, self.global_batch = list(examples), seq_len, global_batch
        self.seed, self.shuffle, self.packing, self.pad_id = seed, shuffle, packing, pad_id
        self.local_batch = global_batch // process_count
        self.process_index = process_index
        self._lengths = [len(e.tokens) for e in self.examples]
        self._rows_cache: tuple[int, list[list[int]]] | None = None
        self.epoch, self.index = 0, 0

    def rows(self, epoch: int) -> list[list[int]]:
        """The packed rows of ``epoch`` (computed once per epoch)."""
        if self._rows_cache is None or self._rows_cache[0] != epoch:
            n = len(self.examples)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._rows_cache = (epoch, pack_order(self._lengths, order, self.seq_len, self.packing))
        return self._rows_cache[1]

    def batches_in_epoch(self, epoch: int) -> int:
        """Global batches in ``epoch`` (with packing the row count varies a little between epochs)."""
        return -(-len(self.rows(epoch)) // self.global_batch)

    @property
    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def set_position(self, position: dict) -> None:
        self.epoch, self.index = int(position["epoch"]), int(position["index"])

    def batch(self, epoch: int, index: int) -> dict[str, np.ndarray]:
        """This process's slice of global batch ``index`` of ``epoch``."""
        rows = self.rows(epoch)[index * self.global_batch:(index + 1) * self.global_batch]
        rows = rows + [[]] * (self.global_batch - len(rows))
        lo = self.process_index * self.local_batch
        return make_rows(self.examples, rows[lo:lo + self.local_batch], self.seq_len, self.pad_id)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.index >= self.batches_in_epoch(self.epoch):
            self.epoch, self.index = self.epoch + 1, 0
        out = self.batch(self.epoch, self.index)
        self.index += 1
        return out

    def epoch_batches(self, epoch: int = 0):
        """All batches of one epoch, in order (for evaluation)."""
        for index in range(self.batches_in_epoch(epoch)):
            yield self.batch(epoch, index)

