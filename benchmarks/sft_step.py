"""One SFT optimizer step, ours (jitted JAX) against Hugging Face ``LlamaForCausalLM`` + ``torch.optim.AdamW``.

Same model (4 layers, width 256, 4 query / 2 kv heads, MLP 688, vocabulary 8000, untied head), same
batch (8 rows x 256 tokens, every position learned), same update (loss, backward, global-norm clip at
1.0, AdamW), fp32, in one process on the CPU. PyTorch gets as many threads as JAX has cores (stated
in the output). Figures are the median tokens/s over the timed steps after warm-up steps.

On the CPU it then times the step's matrix products alone (every forward and backward product, each jitted on
its own, and the same products in PyTorch), alternating: a lower bound on any step built on XLA's products, and
so an upper bound on the speedup over the PyTorch step (``speedup_bound``; ``--no-floor`` skips it).

With ``--accelerator`` (a GPU or TPU backend) it measures instead our step on a ~1B Llama
(``LlamaConfig.preset("1b")``) at sequence 2048 in bf16 with fp32 master weights, sharded FSDP over every local
device, and reports tokens/s and MFU against the devices' bf16 peak (``teamsrl_jax.sft.metrics.PEAK_FLOPS``).
Where that step does not fit in device memory (4 rows per device, no rematerialisation, by default) it retries
with more rematerialisation, then fewer rows, and reports what it ran and what did not fit.
The comparison is meant for the CPU, where the peer runs: on a machine with an accelerator run it with
``JAX_PLATFORMS=cpu``, as ``run_all.py`` does.

    python benchmarks/sft_step.py              # table
    python benchmarks/sft_step.py --quick --json   # < 60 s; the last line is one JSON object
    python benchmarks/sft_step.py --accelerator    # on a GPU/TPU: the ~1B step's tokens/s and MFU
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import statistics
import sys
import time

import jax
import numpy as np

from teamsrl_jax.model import LlamaConfig, init_model
from teamsrl_jax.model.config import REMAT_POLICIES
from teamsrl_jax.model.sharding import MeshConfig, host_local_batch_to_global, make_mesh
from teamsrl_jax.sft.config import SFTConfig
from teamsrl_jax.sft.metrics import mfu, peak_flops
from teamsrl_jax.sft.optim import make_optimizer
from teamsrl_jax.sft.trainer import BATCH_SPEC, compile_steps

CPU_MODEL = dict(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                 rms_norm_eps=1e-5, tie_word_embeddings=False)
OPTIM = SFTConfig(learning_rate=1e-4, warmup_steps=0, lr_schedule="constant", max_grad_norm=1.0)


def make_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    tokens = np.random.default_rng(seed).integers(0, vocab, (batch, seq + 1), dtype=np.int32)
    ones = np.ones((batch, seq), np.int32)
    return {"input_ids": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": ones, "segment_ids": ones,
            "positions": np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy()}


def interleaved_times(steps: dict, warmup: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall seconds, process CPU seconds) per call of each ``steps[name]()`` (which must block until its
    work is done). After ``warmup`` calls each, the contenders alternate call by call, so that a machine
    busy with other work slows them alike; CPU seconds show the work done, whatever the contention."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def jax_step(config: LlamaConfig, batch: dict, mesh=None):
    """A blocking call of our jitted train step (compiled on first call), on one device unless ``mesh`` is given
    (the batch is then split over its data x fsdp axes and the weights placed by their logical axes)."""
    mesh = mesh or make_mesh(MeshConfig(data=1), devices=jax.devices()[:1])
    _, _, params, opt_state, train_step, _ = compile_steps(init_model(config), make_optimizer(OPTIM, 1000), mesh)
    with jax.set_mesh(mesh):
        device_batch = host_local_batch_to_global(batch, mesh, BATCH_SPEC)
        state = [params, opt_state]

    def step():
        with jax.set_mesh(mesh):
            state[0], state[1], metrics = train_step(state[0], state[1], device_batch)
        jax.block_until_ready(metrics["loss"])

    return step


def torch_step(config: LlamaConfig, batch: dict, threads: int):
    """A call of one transformers + torch.optim.AdamW training step on the same model and batch."""
    import torch
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM(HFConfig(**config.to_hf_dict())).train()
    opt = torch.optim.AdamW(model.parameters(), lr=OPTIM.learning_rate, betas=(OPTIM.adam_b1, OPTIM.adam_b2),
                            eps=OPTIM.adam_eps, weight_decay=0.0)
    input_ids = torch.from_numpy(batch["input_ids"]).long()
    targets = torch.from_numpy(batch["targets"]).long()

    def step():
        logits = model(input_ids=input_ids).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM.max_grad_norm)
        opt.step()

    return step


def step_matmuls(config: LlamaConfig, batch: int, seq: int) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """Every matrix product of one forward + backward pass: ``(kind, a_shape, b_shape)`` with ``kind`` 'nn'
    (a @ b), 'nt' (a @ b.T) or 'tn' (a.T @ b). Each projection x @ W contributes its forward product and the two
    of its backward pass (dX = dY @ W.T, dW = X.T @ dY); attention contributes Q K^T and P V per layer and their
    gradients (all positions, as both implementations compute them)."""
    t, d, hd = batch * seq, config.hidden_size, config.head_size
    q, kv, f = config.num_attention_heads * hd, config.num_key_value_heads * hd, config.intermediate_size
    projections = [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)] * config.num_hidden_layers
    out = []
    for k, n in projections + [(d, config.vocab_size)]:
        out += [("nn", (t, k), (k, n)), ("nt", (t, n), (k, n)), ("tn", (t, k), (t, n))]
    heads = (batch, config.num_attention_heads)
    for _ in range(config.num_hidden_layers):  # scores = Q K^T, out = P V; dQ, dK, dP, dV
        out += [("nt", (*heads, seq, hd), (*heads, seq, hd)), ("nn", (*heads, seq, seq), (*heads, seq, hd)),
                ("nn", (*heads, seq, seq), (*heads, seq, hd)), ("tn", (*heads, seq, seq), (*heads, seq, hd)),
                ("nt", (*heads, seq, hd), (*heads, seq, hd)), ("tn", (*heads, seq, seq), (*heads, seq, hd))]
    return out


def matmul_floor(config: LlamaConfig, batch: int, seq: int, repeats: int) -> dict:
    """CPU seconds that the matrix products of one step take alone, in XLA (each product jitted on its own) and
    in PyTorch, alternating, best of ``repeats``: no step can take less than its products."""
    import torch

    rng = np.random.default_rng(0)
    products = step_matmuls(config, batch, seq)
    arrays = [tuple(rng.standard_normal(s, np.float32) for s in shapes) for _, *shapes in products]
    forms = {"nn": lambda a, b: a @ b, "nt": lambda a, b: a @ b.swapaxes(-1, -2),
             "tn": lambda a, b: a.swapaxes(-1, -2) @ b}  # both libraries spell these the same
    pairs = [(k, a, b) for (k, *_), (a, b) in zip(products, arrays)]
    fns = {"jax": [(jax.jit(forms[k]), jax.device_put(a), jax.device_put(b)) for k, a, b in pairs],
           "torch": [(forms[k], torch.from_numpy(a), torch.from_numpy(b)) for k, a, b in pairs]}

    def run(name):
        outs = [fn(a, b) for fn, a, b in fns[name]]
        jax.block_until_ready(outs) if name == "jax" else None

    times = interleaved_times({name: functools.partial(run, name) for name in fns}, 1, repeats)
    macs = sum(math.prod(a.shape[:-1]) * a.shape[-1] * (b.shape[-1] if k != "nt" else b.shape[-2])
               if k != "tn" else math.prod(a.shape[:-2]) * a.shape[-2] * a.shape[-1] * b.shape[-1]
               for (k, *_), (a, b) in zip(products, arrays))
    return {"matmul_gflop": 2 * macs / 1e9, **{f"{k}_matmul_cpu_s": min(c for _, c in times[k]) for k in times}}


def accelerator_mfu(warmup: int, steps: int, *, preset: str = "1b", rows_per_device: int = 4, seq: int = 2048,
                    remat: str = "none", devices=None) -> dict:
    """Our step on a Llama preset (default ~1B) in bf16 with fp32 master weights at ``seq`` tokens, sharded FSDP
    over ``devices`` (default: every device, on a pod every host's), ``rows_per_device`` rows each: tokens/s and
    MFU against the devices' bf16 peak (None where the peak is unknown, as on a CPU).
    ``jax.nn.dot_product_attention`` lets XLA/cuDNN pick a fused attention kernel. Smaller arguments check this
    code on the CPU."""
    devices = list(devices or jax.devices())
    config = LlamaConfig.preset(preset, dtype="bfloat16", param_dtype="float32", attention_impl="jax", remat=remat)
    mesh = make_mesh(MeshConfig(data=1, fsdp=len(devices)), devices=devices)
    rows = rows_per_device * len(devices)
    local_rows = rows_per_device * sum(d.process_index == jax.process_index() for d in devices)  # this host's share
    batch = make_batch(local_rows, seq, config.vocab_size, seed=jax.process_index())
    times = interleaved_times({"jax": jax_step(config, batch, mesh)}, warmup, steps)
    tokens_per_s = rows * seq / statistics.median(w for w, _ in times["jax"])
    return {"accelerator_model": preset, "accelerator_params": config.num_params(), "accelerator_seq_len": seq,
            "accelerator_batch": rows, "accelerator_devices": len(devices), "accelerator_remat": remat,
            "accelerator_device": devices[0].device_kind, "accelerator_tokens_per_s": tokens_per_s,
            "accelerator_mfu": mfu(config.flops_per_token(seq), tokens_per_s, len(devices), peak_flops(devices[0]))}


def out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def fitting(rows: int, remat: str) -> list[tuple[int, str]]:
    """The (rows per device, remat) to try in turn: as asked, then more rematerialisation, then fewer rows."""
    order = ("none", "dots", "full")  # least recomputation first
    tries = [(rows, r) for r in order[order.index(remat):]]
    while rows > 1:
        rows //= 2
        tries.append((rows, "full"))
    return tries


def accelerator_main(args: argparse.Namespace, warmup: int, steps: int, measure=accelerator_mfu) -> dict:
    """The ~1B case at the first (rows, remat) of :func:`fitting` whose step fits in device memory; the ones that
    did not are listed in ``accelerator_out_of_memory``."""
    if jax.default_backend() == "cpu":
        raise SystemExit("error: --accelerator needs a GPU or TPU backend; JAX found only the CPU")
    too_big = []
    for rows, remat in fitting(args.accelerator_rows, args.accelerator_remat):
        try:
            result = measure(warmup, steps, rows_per_device=rows, remat=remat)
            break
        except Exception as e:  # noqa: BLE001 - only out-of-memory errors are retried
            if not out_of_memory(e):
                raise
            too_big.append(f"{rows} rows/device, remat {remat}")
            print(f"out of device memory at {too_big[-1]}; trying a smaller step", file=sys.stderr)
            gc.collect()
    else:
        raise SystemExit(f"error: the ~1B step does not fit in device memory even at {too_big[-1]}")
    result["accelerator_out_of_memory"] = too_big
    mfu_text = "n/a" if result["accelerator_mfu"] is None else f"{100 * result['accelerator_mfu']:.1f}%"
    print(f"SFT step on {result['accelerator_devices']} x {result['accelerator_device']}: "
          f"{result['accelerator_model']} ({result['accelerator_params'] / 1e9:.2f}B) @ "
          f"{result['accelerator_seq_len']} bf16, batch {result['accelerator_batch']}, remat "
          f"{result['accelerator_remat']}: {result['accelerator_tokens_per_s']:,.0f} tokens/s, "
          f"MFU {mfu_text}")
    if args.json:
        print(json.dumps(result))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 60 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--no-floor", action="store_true", help="skip timing the step's matrix products alone")
    parser.add_argument("--accelerator", action="store_true",
                        help="only the GPU/TPU case: the ~1B step sharded over every device, tokens/s and MFU")
    parser.add_argument("--accelerator-rows", type=int, default=4,
                        help="on a GPU/TPU: rows of 2048 tokens per device in the ~1B step")
    parser.add_argument("--accelerator-remat", default="none", choices=REMAT_POLICIES,
                        help="on a GPU/TPU: rematerialisation of the ~1B step (for devices with little memory)")
    args = parser.parse_args(argv)
    warmup, steps = (1, 3) if args.quick else (3, 15)
    if args.accelerator:
        return accelerator_main(args, warmup, steps)

    config = LlamaConfig(**CPU_MODEL)
    batch = make_batch(args.batch, args.seq, config.vocab_size)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tokens = args.batch * args.seq
    times = interleaved_times({"jax": jax_step(config, batch), "torch": torch_step(config, batch, threads)},
                              warmup, steps)
    jax_tps, torch_tps = (tokens / statistics.median(w for w, _ in times[k]) for k in ("jax", "torch"))
    result = {"jax_tokens_per_s": jax_tps, "torch_tokens_per_s": torch_tps, "speedup": jax_tps / torch_tps,
              **{f"{k}_best_tokens_per_s": tokens / min(w for w, _ in times[k]) for k in times},
              **{f"{k}_cpu_s_per_step": statistics.median(c for _, c in times[k]) for k in times},
              "load_avg_1min": os.getloadavg()[0],
              "batch": args.batch, "seq_len": args.seq, "torch_threads": threads,
              "jax_backend": jax.default_backend(), "params": config.num_params()}
    if jax.default_backend() == "cpu" and not args.no_floor:
        result |= matmul_floor(config, args.batch, args.seq, repeats=3 if args.quick else 5)
        result["speedup_bound"] = result["torch_cpu_s_per_step"] / result["jax_matmul_cpu_s"]

    print(f"SFT step, {config.num_params() / 1e6:.1f}M-param Llama, batch {args.batch} x {args.seq}, fp32, "
          f"torch threads = JAX cores = {threads}")
    print(f"{'':30s} {'median tok/s':>13s} {'best tok/s':>11s} {'CPU s/step':>11s}")
    for k, name in (("jax", f"ours (jax.jit, {jax.default_backend()})"), ("torch", "transformers + torch AdamW")):
        print(f"{name:30s} {result[k + '_tokens_per_s']:13,.0f} {result[k + '_best_tokens_per_s']:11,.0f} "
              f"{result[k + '_cpu_s_per_step']:11.2f}")
    print(f"speedup (median): {result['speedup']:.2f}x   (1-min load average {result['load_avg_1min']:.1f} "
          f"on {os.cpu_count()} CPUs)")
    if "jax_matmul_cpu_s" in result:
        print(f"the step's matrix products alone ({result['matmul_gflop']:.1f} GFLOP): XLA "
              f"{result['jax_matmul_cpu_s']:.2f} CPU s, PyTorch {result['torch_matmul_cpu_s']:.2f} CPU s; so no step "
              f"with XLA's products beats the PyTorch step by more than {result['speedup_bound']:.2f}x in CPU time")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
