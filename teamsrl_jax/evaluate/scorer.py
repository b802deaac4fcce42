"""Log-likelihoods of continuations, as lm-evaluation-harness's Hugging Face backend computes them, on our
sharded JAX model: all choices of an item scored together, the shared context computed once.

Tokenisation follows lm-eval's ``TemplateLM._encode_pair`` and ``HFLM.tok_encode``: trailing spaces of the
context move to the continuation; the context and the whole text are encoded with the tokenizer's default
special tokens (none where the string already starts with BOS); the continuation is the whole text's tokens
after the context's count; an empty context becomes the prefix token (BOS, else EOS). The model reads
``context + continuation`` (left-truncated to ``max_length + 1`` tokens, the last one not read), and the
answer is (sum of the continuation tokens' log-probabilities, whether each was the argmax).

The computation: each item is its context followed by all its choices' continuations (each without its last
token, which is predicted but never read), packed with other items into rows; a continuation is positioned right after the context and sees only the context and itself,
so the context is computed once per item and no row holds padding beyond its end. Only the positions that
predict continuation tokens go through the vocabulary projection. Shapes are bucketed (rows per batch, row
length, scored tokens), so a run compiles a handful of programs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teamsrl_jax.inference.engine import bucket, prompt_bucket


@dataclasses.dataclass(frozen=True)
class Request:
    """One (context, continuation) pair, tokenised."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


class Tokenization:
    """lm-eval's HF-backend encoding of (context, continuation) pairs with a Hugging Face tokenizer."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.prefix_token_id = bos if bos is not None else eos
        self._bos_text = tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        kwargs = {}
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        elif self._bos_text and text.startswith(self._bos_text):
            kwargs["add_special_tokens"] = False
        return list(self.tokenizer.encode(text, **kwargs))

    def pair(self, context: str, continuation: str) -> Request:
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            ctx, cont = ([self.prefix_token_id], cont) if self.prefix_token_id != cont[0] else (cont[:1], cont[1:])
        else:
            spaces = len(context) - len(context.rstrip())
            if spaces:
                continuation, context = context[-spaces:] + continuation, context[:-spaces]
            whole, ctx = self.encode(context + continuation), self.encode(context)
            cont = whole[len(ctx):]
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens after its context")
        total = len(ctx) + len(cont)
        if total > self.max_length + 1:  # what the model reads: (ctx + cont)[-(max_length + 1):][:-1]
            ctx = ctx[total - self.max_length - 1:]
        return Request(tuple(ctx), tuple(cont))


def _score(graphdef, state, tokens_BxR, positions_BxR, segments_BxR, branches_BxR, row_N, slot_N, target_N):
    """Per scored token: (log-probability of ``target_N`` at hidden state (row, slot), whether it was the argmax)."""
    model = nnx.merge(graphdef, state)
    hidden_BxRxD = model(tokens_BxR, positions_BxL=positions_BxR, segment_ids_BxL=segments_BxR,
                         branch_ids_BxL=branches_BxR, return_hidden=True)
    logits_NxV = model.head(hidden_BxRxD[row_N, slot_N]).astype(jnp.float32)
    chosen_N = jnp.take_along_axis(logits_NxV, target_N[:, None], axis=-1)[:, 0]
    return chosen_N - jax.nn.logsumexp(logits_NxV, axis=-1), jnp.argmax(logits_NxV, axis=-1) == target_N


_PROGRAMS: dict = {}


def _program(graphdef):
    if graphdef not in _PROGRAMS:
        _PROGRAMS[graphdef] = jax.jit(partial(_score, graphdef))
    return _PROGRAMS[graphdef]


@dataclasses.dataclass
class ScorerStats:
    batches: int = 0
    shapes: set = dataclasses.field(default_factory=set)
    tokens: int = 0
    """Real tokens read by the model (contexts once per item, every continuation but its last token)."""
    padded_tokens: int = 0
    seconds: float = 0.0


Group = tuple[tuple[int, ...], Sequence[tuple[int, ...]]]
"""A context's tokens and the continuations scored after it."""


class Scorer:
    """Scores groups of continuations that share a context.

    Groups are packed into rows of ``row_length`` tokens (longer groups get a row of their own, of a bucketed
    length): each group is its context followed by every continuation, the continuations positioned as if
    each came right after the context and seeing only the context and themselves (``Llama(branch_ids_BxL=)``).
    A batch holds about ``batch_tokens`` tokens. Only the positions that predict a continuation token are
    projected onto the vocabulary."""

    def __init__(self, model, *, batch_tokens: int = 4096, row_length: int = 256, mesh=None):
        self.graphdef, self.state = nnx.split(model)
        self.config = model.config
        self.batch_tokens, self.row_length, self.mesh = batch_tokens, row_length, mesh
        self.stats = ScorerStats()

    def score(self, groups: Sequence[Group], *, progress=None) -> list[list[tuple[float, bool]]]:
        """Per group and continuation: (log-likelihood, every token greedy). ``progress(n)`` is called as
        groups finish."""
        size = [len(ctx) + sum(len(c) - 1 for c in conts) for ctx, conts in groups]
        order = sorted(range(len(groups)), key=lambda i: -size[i])
        rows: list[list[int]] = []   # groups per row, longest first
        fill: list[int] = []
        for i in order:                # first fit in decreasing size
            for r, used in enumerate(fill):
                if used + size[i] <= max(self.row_length, size[rows[r][0]]):
                    rows[r].append(i)
                    fill[r] += size[i]
                    break
            else:
                rows.append([i])
                fill.append(size[i])
        out: list[list[tuple[float, bool]] | None] = [None] * len(groups)
        context = jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()
        with context:
            r = 0
            while r < len(rows):
                R = prompt_bucket(max(self.row_length, fill[r]), 16)
                n = 1 << (max(1, self.batch_tokens // R).bit_length() - 1)  # a power of two: no padding rows
                batch = rows[r:r + n]
                self._run(groups, batch, out, R, bucket(len(batch), 1))
                r += len(batch)
                if progress is not None:
                    progress(sum(map(len, batch)))
        return out  # type: ignore[return-value]

    def _run(self, groups: Sequence[Group], batch: list[list[int]], out, R: int, B: int) -> None:
        t0 = time.perf_counter()
        tokens = np.zeros((B, R), np.int32)
        positions = np.zeros((B, R), np.int32)
        segments = np.zeros((B, R), np.int32)
        branches = np.zeros((B, R), np.int32)
        row_n, slot_n, target_n, owner = [], [], [], []   # per scored token: where its hidden state is, its id
        for b, members in enumerate(batch):
            at = 0
            for seg, g in enumerate(members, 1):
                ctx, conts = groups[g]
                n = len(ctx)
                tokens[b, at:at + n] = ctx
                positions[b, at:at + n] = np.arange(n)
                segments[b, at:at + n] = seg
                last_ctx = at + n - 1
                at += n
                for j, cont in enumerate(conts, 1):
                    k = len(cont) - 1  # the last token is predicted, never read (as lm-eval's inp[:-1])
                    tokens[b, at:at + k] = cont[:-1]
                    positions[b, at:at + k] = n + np.arange(k)
                    segments[b, at:at + k] = seg
                    branches[b, at:at + k] = j
                    row_n += [b] * (k + 1)
                    slot_n += [last_ctx, *range(at, at + k)]
                    target_n += list(cont)
                    owner += [(g, j - 1)] * (k + 1)
                    at += k
        N = prompt_bucket(len(target_n), 64)
        pad = N - len(target_n)
        logp, greedy = _program(self.graphdef)(
            self.state, tokens, positions, segments, branches, np.array(row_n + [0] * pad, np.int32),
            np.array(slot_n + [0] * pad, np.int32), np.array(target_n + [0] * pad, np.int32))
        logp, greedy = np.asarray(logp)[:len(target_n)], np.asarray(greedy)[:len(target_n)]
        sums: dict[tuple[int, int], list] = {}
        for (g, j), lp, gr in zip(owner, logp, greedy):
            acc = sums.setdefault((g, j), [np.float32(0.0), True])
            acc[0] = np.float32(acc[0] + lp)  # summed in float32 in token order, as lm-eval's torch sum
            acc[1] = acc[1] and bool(gr)
        for members in batch:
            for g in members:
                out[g] = [(float(sums[(g, j)][0]), sums[(g, j)][1]) for j in range(len(groups[g][1]))]
        self.stats.batches += 1
        self.stats.shapes.add((B, R, N))
        self.stats.tokens += int((segments > 0).sum())
        self.stats.padded_tokens += B * R
        self.stats.seconds += time.perf_counter() - t0


def check_finite(values: Sequence[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise FloatingPointError(f"{what}: non-finite log-likelihoods (check the model and its dtype)")
