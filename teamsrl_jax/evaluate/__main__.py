"""``python -m teamsrl_jax.evaluate``: ARC and HellaSwag exactly as lm-evaluation-harness scores them.

    python -m teamsrl_jax.evaluate --model SmolLM2-135M-Instruct.Q4_1.gguf --tasks arc_easy \\
        --data-dir ../shared/data/eval --limit 200 --out runs/eval/results.json
    python -m teamsrl_jax.evaluate --model runs/sft/export --tasks arc_challenge --num-fewshot 25 \\
        --data-dir ../shared/data/eval --out runs/eval/arc_c_25.json --log-samples
    python -m teamsrl_jax.evaluate --model ckpt --tasks hellaswag --num-fewshot 10 --out hs.json  # TFDS data

Writes ``--out`` in lm-eval's results layout and, with ``--log-samples``, ``samples_<task>.jsonl`` beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from teamsrl_jax.cli import main_guard
from teamsrl_jax.evaluate.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a Hugging Face checkpoint folder or a .gguf file")
    p.add_argument("--tasks", default="arc_easy,arc_challenge,hellaswag",
                   help=f"comma-separated, from: {', '.join(TASKS)}")
    p.add_argument("--num-fewshot", type=int, default=0, help="few-shot examples per item (all tasks)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each task")
    p.add_argument("--data-dir", default=None,
                   help="folder with the original files (arc/ARC-Easy-Test.jsonl, hellaswag/hellaswag_val.jsonl, "
                        "...); without it, TensorFlow Datasets (ai2_arc, hellaswag) where prepared or downloadable")
    p.add_argument("--tfds-data-dir", default=None, help="TensorFlow Datasets folder (default: TFDS's own)")
    p.add_argument("--batch-size", type=int, default=16, help="rows of 256 tokens per batch (items with all their choices, packed)")
    p.add_argument("--max-length", type=int, default=None,
                   help="longest input in tokens (default: the model's max_position_embeddings)")
    p.add_argument("--dtype", default="float32", help="compute and parameter dtype (float32, bfloat16)")
    p.add_argument("--mesh", default="", help='device mesh "data=..,fsdp=..,tensor=.." (-1 fills the rest)')
    p.add_argument("--out", required=True, help="results JSON path")
    p.add_argument("--log-samples", action="store_true", help="also write samples_<task>.jsonl beside --out")
    return p


def run(args: argparse.Namespace) -> dict:
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    return evaluate_model(args.model, names, num_fewshot=args.num_fewshot, limit=args.limit, data_dir=args.data_dir,
                          tfds_data_dir=args.tfds_data_dir, batch_size=args.batch_size, max_length=args.max_length,
                          dtype=args.dtype, mesh=args.mesh, out=args.out, log_samples=args.log_samples)


def evaluate_model(model: str, tasks: list[str], *, out: str, num_fewshot: int = 0, limit: int | None = None,
                   data_dir: str | None = None, tfds_data_dir: str | None = None, batch_size: int = 16,
                   max_length: int | None = None, dtype: str = "float32", mesh: str = "", log_samples: bool = False,
                   progress: bool = True, quiet: bool = False) -> dict:
    """The whole command as a function: load, score every task, write ``out`` (and the samples); returns the
    results dict (lm-eval's layout)."""
    from tqdm.auto import tqdm

    from teamsrl_jax.evaluate.harness import evaluate_task, results_json, write_samples
    from teamsrl_jax.evaluate.scorer import Scorer, Tokenization
    from teamsrl_jax.evaluate.tasks import load_task
    from teamsrl_jax.fileio import atomic_write_json
    from teamsrl_jax.model import load_pretrained
    from teamsrl_jax.model.sharding import MeshConfig, make_mesh

    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"--tasks: unknown task {name!r}; choose from {', '.join(TASKS)}")
    if not tasks:
        raise ValueError("--tasks: no task given")
    for flag, value, low in (("num_fewshot", num_fewshot, 0), ("limit", limit, 1), ("batch_size", batch_size, 1),
                             ("max_length", max_length, 1)):
        if value is not None and value < low:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
    loaded = {name: load_task(name, data_dir, tfds_data_dir=tfds_data_dir) for name in tasks}
    path = Path(model)
    if not path.exists():
        raise ValueError(f"--model {model}: no such file or folder")
    device_mesh = make_mesh(MeshConfig.parse(mesh)) if mesh else None
    net, config, tokenizer = load_pretrained(path, mesh=device_mesh, dtype=dtype, param_dtype=dtype)
    if tokenizer is None:
        raise ValueError(f"--model {model}: the checkpoint has no tokenizer")
    max_length = max_length or config.max_position_embeddings
    scorer = Scorer(net, batch_tokens=256 * batch_size, mesh=device_mesh)
    tokenization = Tokenization(tokenizer, max_length)
    total = sum(len(t.docs) if limit is None else min(limit, len(t.docs)) for t in loaded.values())
    start = time.perf_counter()
    per_task = {}
    with tqdm(total=total, desc="evaluate", unit="item", dynamic_ncols=True, disable=not progress) as bar:
        for name, task in loaded.items():
            bar.set_postfix(task=name)
            items = evaluate_task(scorer, tokenization, task, num_fewshot, limit=limit, progress=bar.update)
            per_task[name] = (task, num_fewshot, items)
    seconds = time.perf_counter() - start
    out_path = Path(out)
    results = results_json(per_task, model="teamsrl_jax", model_args=f"pretrained={model},dtype={dtype}",
                           batch_size=batch_size, limit=limit, seconds=seconds,
                           extra_config={"max_length": max_length, "mesh": mesh,
                                         "items_per_second": round(total / max(seconds, 1e-9), 3)})
    atomic_write_json(out_path, results)
    if log_samples:
        for name, (_, _, items) in per_task.items():
            write_samples(out_path.parent / f"samples_{name}.jsonl", items)
    if not quiet:
        print(format_table(results))
        print(f"{total} items in {seconds:.1f} s ({total / max(seconds, 1e-9):.2f} items/s) -> {out_path}")
    return results


def format_table(results: dict) -> str:
    lines = [f"{'task':<16}{'n-shot':>7}{'metric':>10}{'value':>10}{'stderr':>10}"]
    for name, r in results["results"].items():
        for metric in ("acc", "acc_norm"):
            err = r[f"{metric}_stderr,none"]
            err = f"{err:.4f}" if isinstance(err, float) else err
            lines.append(f"{name:<16}{results['n-shot'][name]:>7}{metric:>10}{r[f'{metric},none']:>10.4f}{err:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_guard(lambda: run(args) and None)


if __name__ == "__main__":
    sys.exit(main())
