"""The ``jax`` backend: our own Llama-family model, served by the inference engine, for any role.

One loaded model serves every role (instructor, reviewer, responder). Each prompt is sent as one user
message (after ``SamplingParams.system``) rendered with the checkpoint's chat template, exactly as an
OpenAI-compatible chat server renders it (``SamplingParams.prefix`` opens the assistant's reply); the reply's token counts and finish reason are reported as such
a server reports them. ``SamplingParams.logprobs`` returns each generated token's log-probability and its
most likely alternatives, which lets a reviewer be scored from its probabilities over the score tokens.

Sampling is reproducible: each request's seed is derived from the backend seed (or ``params.seed``), the
prompt and its sample index, so a request draws the same tokens whatever batch it is part of.

    backend = JaxBackend("SmolLM2-135M-Instruct.Q4_1.gguf")      # or a Hugging Face folder
    [reply] = backend.generate(["What is the capital of France?"], SamplingParams(temperature=0), "responder")
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import (BackendRequestError, Completion, IncrementalBackend, OnResult, Role,
                                       SamplingParams, TokenLogprob, check_role, resolve_sample_indices)


class JaxBackend(IncrementalBackend):
    """A local model behind the batched backend interface (see the module docstring)."""

    name = "jax"

    def __init__(self, model: str, *, dtype: str = "float32", mesh: str = "", batch_slots: int = 16, seed: int = 0,
                 progress: bool = False):
        """``model``: a .gguf file, a folder holding one, or a Hugging Face checkpoint folder. ``dtype``: compute
        and weight dtype ("float32" or "bfloat16"). ``mesh``: a mesh spec such as "data=2,tensor=4" ("" = one
        device). ``batch_slots``: rows decoded together (continuous batching)."""
        from teamsrl_jax.inference import Engine
        from teamsrl_jax.model.sharding import MeshConfig, make_mesh

        path = Path(model)
        if not path.exists():
            raise ValueError(f"jax backend: model {model!r} does not exist (a .gguf file or a checkpoint folder)")
        mesh_obj = make_mesh(MeshConfig.parse(mesh)) if mesh else None
        self.engine = Engine.from_pretrained(path, dtype=dtype, mesh=mesh_obj, batch_slots=batch_slots)
        self.model = path.name
        self.seed = int(seed)
        self.progress = progress
        self.accounting = QueryAccounting()
        # one engine, one batch at a time: callers on several threads (a pipelined rollout) take turns
        self._lock = threading.Lock()

    def _request_seed(self, prompt: str, sample_index: int, params: SamplingParams) -> int:
        base = self.seed if params.seed is None else params.seed
        digest = hashlib.blake2b(f"{base}\0{sample_index}\0{prompt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def generate_incremental(self, prompts: Sequence[str], params: SamplingParams, role: Role,
                             sample_indices: Sequence[int] | None = None, *,
                             on_result: OnResult | None = None) -> list[Completion]:
        from teamsrl_jax.inference import Request

        check_role(role)
        indices = resolve_sample_indices(prompts, sample_indices)
        requests = []
        for i, (prompt, k) in enumerate(zip(prompts, indices)):
            ids = self.engine.chat_ids(prompt, params.system, params.prefix)
            if len(ids) >= self.engine.max_context:
                self.accounting.record(role, errors=1)
                raise BackendRequestError(f"jax backend: prompt {i} has {len(ids)} tokens; the model's context is "
                                          f"{self.engine.max_context}")
            requests.append(Request(ids, max_tokens=params.max_tokens, temperature=params.temperature,
                                    top_p=params.top_p, top_k=params.top_k, stop=params.stop,
                                    seed=self._request_seed(prompt, k, params), logprobs=params.logprobs))
        completions: list[Completion | None] = [None] * len(requests)

        def finished(i, result):
            completion = self._completion(result)
            completions[i] = completion
            self.accounting.record(role, queries=1, prompt_tokens=result.prompt_tokens,
                                   completion_tokens=result.completion_tokens)
            if on_result is not None:
                on_result(i, completion)

        with self._lock:  # throughput: self.engine.stats
            self.engine.generate(requests, on_result=finished, progress=self.progress)
        return completions  # type: ignore[return-value]

    def _completion(self, result) -> Completion:
        logprobs = None
        if result.logprobs is not None:
            text = self._token_text
            logprobs = [TokenLogprob(text(t), lp, tuple((text(a), alp) for a, alp in top))
                        for t, lp, top in result.logprobs]
        return Completion(result.text, prompt_tokens=result.prompt_tokens,
                          completion_tokens=result.completion_tokens, finish_reason=result.finish_reason,
                          logprobs=logprobs)

    def _token_text(self, token_id: int) -> str:
        return self.engine.tokenizer.decode([token_id])
