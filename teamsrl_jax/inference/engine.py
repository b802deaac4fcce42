"""A batched generator over the KV cache with continuous batching, for our Llama-family model.

The engine owns ``batch_slots`` rows of one KV cache. Waiting prompts are prefilled into free rows
(several at once, right-padded to a length bucket; the prefix they share, typically the chat template's opening
and system prompt, is computed once), then every busy row decodes one token per step. When a
row finishes (EOS, a stop string, or ``max_tokens``), the next waiting prompt takes it at the next step, so
one long answer does not hold the batch.

Shapes are bucketed so that a run compiles a handful of programs: the prefill batch (powers of two up to
``batch_slots``), the prompt length (two buckets per octave, 3/4 and 4/4 of a power of two, multiples of
``min_bucket``) and the cache length (the same from 64 on, covering the longest row in use: the cache starts short
and grows with the rows, so a decode step reads little more cache than is filled).

    engine = Engine.from_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = engine.chat_ids("What is the capital of France?")
    [result] = engine.generate([Request(ids, max_tokens=32)])
    print(result.text, result.finish_reason)
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from teamsrl_jax.inference import feature_major
from teamsrl_jax.inference.sampling import next_tokens, token_logprobs
from teamsrl_jax.model.attention import KVCache
from teamsrl_jax.model.config import LlamaConfig
from teamsrl_jax.model.sharding import logical_to_pspec

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class Request:
    """One prompt (token ids) and how to continue it."""

    prompt_ids: tuple[int, ...]
    """The prompt's token ids (already rendered with the chat template where it applies)."""
    max_tokens: int = 256
    """Upper bound on generated tokens (clipped so that prompt + answer fit the model's context)."""
    temperature: float = 0.0
    """0 = greedy."""
    top_p: float = 1.0
    """Nucleus mass in (0, 1]."""
    top_k: int | None = None
    """Keep the k most likely tokens; None = off."""
    stop: tuple[str, ...] = ()
    """Stop strings, matched on the decoded text; the text is cut before the first one."""
    seed: int = 0
    """Sampling seed of this request (its tokens depend on it alone, not on its batch)."""
    logprobs: int | None = None
    """Also return each generated token's logprob and the top-N alternatives."""

    def __post_init__(self):
        object.__setattr__(self, "prompt_ids", tuple(int(t) for t in self.prompt_ids))
        object.__setattr__(self, "stop", tuple(self.stop))
        if not self.prompt_ids:
            raise ValueError("Request.prompt_ids is empty")
        if self.max_tokens < 1:
            raise ValueError(f"Request.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Result:
    """One finished request, reported like an OpenAI-compatible server would."""

    token_ids: list[int]
    """Generated tokens (EOS excluded)."""
    text: str
    """Their decoded text, cut before the first stop string."""
    finish_reason: str
    """"stop" (EOS or a stop string) or "length" (max_tokens, or the context is full)."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens generated, EOS included (what the model computed)."""
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] | None = None
    """Per generated token: (id, logprob, [(id, logprob) of the top alternatives])."""


@dataclass
class EngineStats:
    """Running totals of one engine, for throughput reporting."""

    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    seconds: float = 0.0
    """Wall time inside ``generate``."""
    programs: set = field(default_factory=set)
    """The distinct (program, shapes, variant) keys run so far: each is one compiled program."""

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


def bucket(n: int, minimum: int, maximum: int | None = None) -> int:
    """The smallest power of two >= max(n, minimum), capped at ``maximum``."""
    size = max(int(minimum), 1 << max(int(n) - 1, 0).bit_length())
    return size if maximum is None else min(size, maximum)


def prompt_bucket(n: int, minimum: int, maximum: int | None = None) -> int:
    """Lengths in two buckets per octave: n rounded up to a multiple of a quarter of its power of two (and of
    ``minimum``), so 3/4 or 4/4 of it. A prefill computes every padded position and a decode step attends over
    every cache slot, so padding costs as much as content."""
    step = max(int(minimum), bucket(n, 1) // 4)
    size = -(-max(int(n), 1) // step) * step
    return size if maximum is None else min(size, maximum)


def shared_prefix(prompts: Sequence[Sequence[int]], multiple: int) -> int:
    """How many leading tokens a prefill computes once for all ``prompts``: their common prefix (the chat
    template's opening and system prompt, typically), rounded down to a multiple of ``multiple`` (a program per
    distinct length), leaving each prompt at least one token of its own; 0 for fewer than two prompts."""
    if len(prompts) < 2:
        return 0
    first, n = prompts[0], min(map(len, prompts)) - 1
    for other in prompts[1:]:
        n = next((i for i in range(n) if other[i] != first[i]), n)
    n -= n % max(int(multiple), 1)
    return n if n >= 2 * multiple else 0


@dataclass(eq=False)
class _Slot:
    index: int
    """The request's position in the ``generate`` call."""
    request: Request
    key: np.ndarray
    generated: list[int] = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    cut_text: str | None = None
    """The text up to the first stop string, once one appeared."""


class Engine:
    """Batched prefill + decode of one model over a slotted KV cache (see the module docstring).

    The engine runs on its own copy of the model's weights, transposed for ``feature_major.forward``: the model
    passed in is not used afterwards (``from_pretrained`` keeps no other copy)."""

    def __init__(self, model, tokenizer=None, *, batch_slots: int = 16, mesh=None, min_bucket: int = 16,
                 max_context: int | None = None, eos_token_ids: Sequence[int] | None = None):
        config: LlamaConfig = model.config
        if batch_slots < 1:
            raise ValueError(f"batch_slots must be >= 1, got {batch_slots}")
        self.config = config
        self.tokenizer = tokenizer
        self.batch_slots = int(batch_slots)
        self.mesh = mesh
        self.min_bucket = int(min_bucket)
        self.max_context = int(max_context or config.max_position_embeddings)
        self.weights = feature_major.from_model(model)  # the engine's own copy, [out, in]: see feature_major
        self._prefill, self._decode = _programs(config)
        self.eos_token_ids = frozenset(self._eos_ids(eos_token_ids))
        self.stats = EngineStats()

    @classmethod
    def from_pretrained(cls, path, *, dtype: str | None = None, mesh=None, **kwargs) -> Engine:
        """An engine over a checkpoint: a Hugging Face folder or a GGUF file (``load_pretrained``)."""
        from teamsrl_jax.model.hf_io import load_pretrained

        model, _, tokenizer = load_pretrained(path, mesh=mesh, dtype=dtype, param_dtype=dtype)
        if tokenizer is None:
            raise ValueError(f"{path}: the checkpoint has no tokenizer; the engine needs one")
        return cls(model, tokenizer, mesh=mesh, **kwargs)

    def _eos_ids(self, given):
        if given is not None:
            return [int(t) for t in given]
        ids = self.config.eos_token_id
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        if self.tokenizer is not None and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    # -- prompts ----------------------------------------------------------------------------------------
    def chat_ids(self, prompt: str, system: str | None = None, prefix: str | None = None) -> list[int]:
        """The token ids of one user message (after ``system``, when given) rendered with the tokenizer's chat
        template and the assistant's turn opened, as an OpenAI-compatible chat server builds them; ``prefix``
        is the start of the assistant's reply (prefill), which generation continues."""
        if self.tokenizer is None:
            raise ValueError("the engine has no tokenizer")
        messages = ([{"role": "system", "content": system}] if system is not None else [])
        messages.append({"role": "user", "content": prompt})
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(self.tokenizer(text + (prefix or ""), add_special_tokens=False)["input_ids"])
        # no template: the plain text, with the tokenizer's own special tokens (e.g. BOS)
        text = "\n\n".join(m["content"] for m in messages) + ("\n\n" + prefix if prefix else "")
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True) if self.tokenizer is not None else ""

    # -- the jitted programs ----------------------------------------------------------------------------
    # Pure functions of (config, weights, ...). ``_programs`` closes them over one config, once per model
    # structure: engines over equal models share the compiled programs, and no call hashes the config.
    @staticmethod
    def _prefill_fn(config, weights, cache, prefix_1xp, ids_bxP, lengths_b, slots_b, temperature_b, top_k_b, top_p_b,
                    keys_bx2, index_b, *, greedy, n_logprobs):
        """Runs b prompts, given as the p tokens they all start with (p may be 0) and their right-padded rest,
        writes their keys/values into cache rows ``slots_b`` (an index past the last row drops a padding row), and
        samples each prompt's first token. ``lengths_b`` are the whole prompts' lengths. The shared prefix is
        computed once, on one row, and its keys/values copied into every row before the rest runs over them."""
        b, P = ids_bxP.shape
        p = prefix_1xp.shape[1]
        dtype = cache.k[0].dtype
        scratch = KVCache.zeros(config, b, p + P, dtype)
        if p:
            _, shared = feature_major.forward(weights, config, prefix_1xp, jnp.ones((1, p), jnp.int32),
                                              KVCache.zeros(config, 1, p, dtype))
            k_pad, v_pad = ((0, 0), (0, 0), (0, 0), (0, P)), ((0, 0), (0, 0), (0, P), (0, 0))
            scratch = KVCache(k=tuple(jnp.broadcast_to(jnp.pad(k, k_pad), c.shape) for k, c in zip(shared.k, scratch.k)),
                              v=tuple(jnp.broadcast_to(jnp.pad(v, v_pad), c.shape) for v, c in zip(shared.v, scratch.v)),
                              segment_ids=scratch.segment_ids.at[:, :p].set(1), end=jnp.asarray(p, jnp.int32))
        segment_b_P = (jnp.arange(P)[None, :] < (lengths_b - p)[:, None]).astype(jnp.int32)
        hidden, filled = feature_major.forward(weights, config, ids_bxP, segment_b_P, scratch)
        last_bxD = jnp.take_along_axis(hidden, (lengths_b - p - 1)[:, None, None], axis=1)[:, 0]
        tokens_b, logits_bxV = _choose(weights, last_bxD, (temperature_b, top_k_b, top_p_b, keys_bx2, index_b),
                                       greedy=greedy, n_logprobs=n_logprobs)
        S = cache.segment_ids.shape[1]
        new_segments = (jnp.arange(S)[None, :] < lengths_b[:, None]).astype(jnp.int32)

        def put(c, x, axis):  # whole rows: the prompt's slots, then zeros (masked until written)
            pad = [(0, 0)] * 4
            pad[axis] = (0, S - (p + P))  # the scratch rows hold the prefix and the rest
            return c.at[slots_b].set(jnp.pad(x.astype(c.dtype), pad), mode="drop")

        cache = KVCache(k=tuple(put(c, x, 3) for c, x in zip(cache.k, filled.k)),
                        v=tuple(put(c, x, 2) for c, x in zip(cache.v, filled.v)),
                        segment_ids=cache.segment_ids.at[slots_b].set(new_segments, mode="drop"),
                        end=cache.end.at[slots_b].set(lengths_b, mode="drop"))
        return tokens_b, _logprobs(logits_bxV, tokens_b, n_logprobs), cache

    @staticmethod
    def _decode_fn(config, weights, cache, tokens_B, active_B, temperature_B, top_k_B, top_p_B, keys_Bx2, index_B,
                *, greedy, n_logprobs):
        """One token for every busy row (``active_B``); idle rows compute on but write nothing visible
        and do not advance."""
        hidden, new_cache = feature_major.forward(weights, config, tokens_B[:, None],
                                                  active_B[:, None].astype(jnp.int32), cache)
        next_B, logits_BxV = _choose(weights, hidden[:, 0], (temperature_B, top_k_B, top_p_B, keys_Bx2, index_B),
                                     greedy=greedy, n_logprobs=n_logprobs)
        new_cache = dataclasses.replace(new_cache, end=jnp.where(active_B, cache.end + 1, cache.end))
        return next_B, _logprobs(logits_BxV, next_B, n_logprobs), new_cache

    # -- the cache --------------------------------------------------------------------------------------
    def _sharding(self, axes, shape):
        # placed (committed) like the programs' outputs: an uncommitted first cache would compile every program
        # a second time when its own output comes back in
        if self.mesh is None:
            return jax.sharding.SingleDeviceSharding(next(iter(self.weights.embedding.devices())))
        sizes = dict(zip(self.mesh.axis_names, self.mesh.axis_sizes))
        return NamedSharding(self.mesh, logical_to_pspec(axes, shape, sizes))

    def _new_cache(self, length: int) -> KVCache:
        B, c = self.batch_slots, self.config
        k_shape = (B, c.num_key_value_heads, c.head_size, length)
        v_shape = (B, c.num_key_value_heads, length, c.head_size)
        dtype = jnp.dtype(c.dtype)

        def zeros(shape, dtype, axes):
            return jax.device_put(jnp.zeros(shape, dtype), self._sharding(axes, shape))

        layers = range(c.num_hidden_layers)
        return KVCache(k=tuple(zeros(k_shape, dtype, ("batch", "kv_heads", "head_dim", "length")) for _ in layers),
                       v=tuple(zeros(v_shape, dtype, ("batch", "kv_heads", "length", "head_dim")) for _ in layers),
                       segment_ids=zeros((B, length), jnp.int32, ("batch", "length")),
                       end=zeros((B,), jnp.int32, ("batch",)))

    def _grow(self, cache: KVCache, needed: int) -> KVCache:
        """The cache, lengthened to the bucket of ``needed`` slots when it is shorter."""
        S = cache.segment_ids.shape[1]
        if needed <= S:
            return cache
        return self._pad(cache, min(max(64, prompt_bucket(needed, 32)), self.max_context) - S)

    @staticmethod
    @partial(jax.jit, static_argnames=("extra",))
    def _pad(cache: KVCache, extra: int) -> KVCache:
        k_pad, v_pad = ((0, 0), (0, 0), (0, 0), (0, extra)), ((0, 0), (0, 0), (0, extra), (0, 0))
        return KVCache(k=tuple(jnp.pad(c, k_pad) for c in cache.k), v=tuple(jnp.pad(c, v_pad) for c in cache.v),
                       segment_ids=jnp.pad(cache.segment_ids, ((0, 0), (0, extra))), end=cache.end)

    # -- the loop ---------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request], *, on_result: Callable[[int, Result], None] | None = None,
                 progress: bool = False) -> list[Result]:
        """Every request's result, in order. ``on_result(i, result)`` is called as each one finishes."""
        requests = list(requests)
        if not requests:
            return []
        for i, r in enumerate(requests):
            if len(r.prompt_ids) >= self.max_context:
                raise ValueError(f"request {i}: the prompt has {len(r.prompt_ids)} tokens, the model's context "
                                 f"is {self.max_context}")
            if max(r.prompt_ids) >= self.config.vocab_size or min(r.prompt_ids) < 0:
                raise ValueError(f"request {i}: token ids outside the vocabulary [0, {self.config.vocab_size})")
        start = time.perf_counter()
        results: list[Result | None] = [None] * len(requests)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(requests), desc="generate", unit="req", leave=False)
        try:
            with jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext():
                self._run(requests, results, on_result, bar)
        finally:
            if bar is not None:
                bar.close()
            self.stats.seconds += time.perf_counter() - start
        return results  # type: ignore[return-value]

    def _run(self, requests, results, on_result, bar):
        cache = self._new_cache(bucket(64, 64, self.max_context))
        pending = deque(range(len(requests)))
        slots: list[_Slot | None] = [None] * self.batch_slots
        # one logprobs width for the call (each result keeps its own request's number); None: none asked
        n_logprobs = max((r.logprobs for r in requests if r.logprobs is not None), default=None)
        started = time.perf_counter()

        def finish(slot: _Slot, reason: str):
            r = slot.request
            kept = [t for t in slot.generated if t not in self.eos_token_ids]
            text = slot.cut_text if slot.cut_text is not None else self.decode(kept)
            logprobs = None
            if r.logprobs is not None:
                logprobs = [(t, lp, top[:r.logprobs]) for t, lp, top in slot.logprobs if t not in self.eos_token_ids]
            result = Result(kept, text, reason, len(r.prompt_ids), len(slot.generated), logprobs)
            results[slot.index] = result
            slots[next(i for i, s in enumerate(slots) if s is slot)] = None
            self.stats.requests += 1
            self.stats.prompt_tokens += len(r.prompt_ids)
            self.stats.generated_tokens += len(slot.generated)
            if bar is not None:
                bar.update(1)
                generated = sum(len(x.token_ids) for x in results if x is not None)
                bar.set_postfix(tok_s=f"{generated / max(time.perf_counter() - started, 1e-9):.0f}")
            if on_result is not None:
                on_result(slot.index, result)

        def accept(slot: _Slot, token: int, logprob_row) -> None:
            slot.generated.append(token)
            if logprob_row is not None:
                slot.logprobs.append((token, *logprob_row))
            r = slot.request
            if token in self.eos_token_ids:
                return finish(slot, "stop")
            if r.stop:
                text = self.decode([t for t in slot.generated if t not in self.eos_token_ids])
                cut = min((i for i in (text.find(s) for s in r.stop if s) if i >= 0), default=-1)
                if cut >= 0:
                    slot.cut_text = text[:cut]
                    return finish(slot, "stop")
            if len(slot.generated) >= min(r.max_tokens, self.max_context - len(r.prompt_ids)):
                return finish(slot, "length")
            return None

        while pending or any(slots):
            # admit waiting prompts into free rows (a prompt finished at its first token frees its row again)
            while pending and None in slots:
                free = [i for i, s in enumerate(slots) if s is None][:len(pending)]
                admitted = [pending.popleft() for _ in free]
                new = [_Slot(i, requests[i], _request_key(requests[i].seed)) for i in admitted]
                for row, slot in zip(free, new):
                    slots[row] = slot
                cache, firsts = self._prefill_rows(cache, free, new, n_logprobs)
                for slot, (token, row) in zip(new, firsts):
                    accept(slot, token, row)
            busy = [s for s in slots if s is not None]
            if not busy:
                continue
            cache, outs = self._decode_step(cache, slots, n_logprobs)
            for slot, (token, row) in zip(busy, outs):
                accept(slot, token, row)

    def _sampling_arrays(self, chosen: list[_Slot | None], size: int):
        temperature = np.zeros(size, np.float32)
        top_k = np.zeros(size, np.int32)
        top_p = np.ones(size, np.float32)
        keys = np.zeros((size, 2), np.uint32)
        index = np.zeros(size, np.int32)
        for i, slot in enumerate(chosen):
            if slot is None:
                continue
            r = slot.request
            temperature[i], top_k[i], top_p[i] = r.temperature, r.top_k or 0, r.top_p
            keys[i], index[i] = slot.key, len(slot.generated)
        greedy = not temperature.any()
        return (temperature, top_k, top_p, keys, index), greedy

    def _prefill_rows(self, cache, rows: list[int], new: list[_Slot], n_logprobs):
        b = bucket(len(new), 1, self.batch_slots)
        prompts = [s.request.prompt_ids for s in new]
        p = shared_prefix(prompts, self.min_bucket // 2)
        P = prompt_bucket(max(map(len, prompts)) - p, self.min_bucket, self.max_context - p)
        cache = self._grow(cache, p + P)
        ids = np.zeros((b, P), np.int32)
        lengths = np.full(b, p + 1, np.int32)
        slots_b = np.full(b, self.batch_slots, np.int32)  # out of range: dropped
        for j, (row, prompt) in enumerate(zip(rows, prompts)):
            ids[j, :len(prompt) - p], lengths[j], slots_b[j] = prompt[p:], len(prompt), row
        prefix = np.asarray([prompts[0][:p]], np.int32).reshape(1, p)
        sampling, greedy = self._sampling_arrays(new + [None] * (b - len(new)), b)
        self.stats.programs.add(("prefill", b, p, P, cache.segment_ids.shape[1], greedy, n_logprobs))
        tokens, logprobs, cache = self._prefill(self.weights, cache, prefix, ids, lengths, slots_b, *sampling,
                                                greedy=greedy, n_logprobs=n_logprobs)
        return cache, list(zip(np.asarray(tokens)[:len(new)].tolist(), self._rows(logprobs, len(new))))

    def _decode_step(self, cache, slots: list[_Slot | None], n_logprobs):
        B = self.batch_slots
        tokens = np.zeros(B, np.int32)
        active = np.zeros(B, bool)
        longest = 0
        for i, slot in enumerate(slots):
            if slot is not None:
                tokens[i], active[i] = slot.generated[-1], True
                longest = max(longest, len(slot.request.prompt_ids) + len(slot.generated))
        cache = self._grow(cache, longest)  # this step writes at slot longest - 1
        sampling, greedy = self._sampling_arrays(slots, B)
        self.stats.programs.add(("decode", B, cache.segment_ids.shape[1], greedy, n_logprobs))
        out, logprobs, cache = self._decode(self.weights, cache, tokens, active, *sampling,
                                            greedy=greedy, n_logprobs=n_logprobs)
        self.stats.decode_steps += 1
        out = np.asarray(out).tolist()
        rows = self._rows(logprobs, B)
        return cache, [(out[i], rows[i]) for i in range(B) if active[i]]

    @staticmethod
    def _rows(logprobs, n: int):
        """Per row: (logprob of the chosen token, [(id, logprob) of the top alternatives]), or None."""
        if logprobs is None:
            return [None] * n
        chosen, top_lp, top_ids = (np.asarray(x) for x in logprobs)
        return [(float(chosen[i]), list(zip(top_ids[i].tolist(), top_lp[i].tolist()))) for i in range(n)]


_PROGRAMS: dict = {}


def _programs(config: LlamaConfig):
    """(prefill, decode) jitted for one model configuration (shared by every engine over an equal one)."""
    if config not in _PROGRAMS:
        statics = dict(static_argnames=("greedy", "n_logprobs"), donate_argnames=("cache",))
        _PROGRAMS[config] = (jax.jit(partial(Engine._prefill_fn, config), **statics),
                             jax.jit(partial(Engine._decode_fn, config), **statics))
    return _PROGRAMS[config]


def _choose(weights: feature_major.Weights, hidden_BxD, sampling, *, greedy: bool, n_logprobs):
    """(next tokens [B], logits [B, V] or None): the rows' next tokens from their final hidden states.

    Greedy without logprobs needs no [B, V] logits: the argmax runs down the columns of head·hiddenᵀ [V, B],
    the product with the large operand first, which XLA's CPU kernels compute about a third faster at decode
    batch sizes than hidden·headᵀ (the head is a fifth of a decode step's FLOPs)."""
    if greedy and n_logprobs is None:
        logits_VxB = jnp.einsum("VD,BD->VB", weights.output, hidden_BxD, preferred_element_type=jnp.float32)
        # argmax down the columns as the first row that reaches the column's max: two plain reductions, which
        # XLA's CPU code runs 3x faster than argmax's paired one over a non-minor axis (1.9 -> 0.6 ms here)
        V = logits_VxB.shape[0]
        rows_Vx1 = jnp.arange(V, dtype=jnp.int32)[:, None]
        first = jnp.min(jnp.where(logits_VxB == logits_VxB.max(axis=0), rows_Vx1, V), axis=0)
        return jnp.minimum(first, V - 1), None  # (no row matches only where the column holds a NaN)
    logits_BxV = jnp.einsum("BD,VD->BV", hidden_BxD, weights.output, preferred_element_type=jnp.float32)
    return next_tokens(logits_BxV, *sampling, greedy=greedy), logits_BxV


def _logprobs(logits, tokens, n):
    return token_logprobs(logits, tokens, n) if n is not None else None


def _request_key(seed: int) -> np.ndarray:
    """A raw uint32[2] PRNG key for a request seed (any Python int; folded into 32-bit words)."""
    seed = int(seed) % (1 << 64)
    return np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32)
