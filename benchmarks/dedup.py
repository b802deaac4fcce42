"""ROUGE-L near-duplicate filtering: our indexed filter against rouge_score in a process pool, Self-Instruct's way.

The instructions are real: every distinct instruction in the shared data's seed and reference files (the 175
Self-Instruct seed tasks, the Alpaca sample, the 252 user-oriented Self-Instruct tasks, the instructions the
original TeaMs-RL code generated, WizardLM's test set), shuffled with a fixed seed, each followed with
probability 0.3 (repeatedly) by a near-copy of a recent item (a few words dropped, inserted or substituted, a
word's case or punctuation changed), so that many are dropped.

The reference is Alpaca's filter loop (generate_instruction.py): rouge_score's tokeniser on every instruction
once, then each new one scored against every kept one with
``pool.map(partial(rouge_scorer._score_lcs, new_tokens), kept_tokens)`` and dropped when the highest F-measure
is >= 0.7. One pool of one process per core serves the whole run (Alpaca and Self-Instruct open a new pool for
every instruction, which would only slow the reference). It runs on the stream for about a minute (``--seconds``)
and the prefix it finishes is the comparison set; ours (``NearDuplicateFilter`` with its token order fitted on
the Self-Instruct seed tasks, construction included, the median of 3 runs) runs on the same prefix and must make
the same decisions.

Then ours alone on 20K and 100K instructions: the real ones repeated with seeded random perturbations (0 to 6
edits each; about one in eight is an exact repeat), to show how the cost grows with the kept set.

    python benchmarks/dedup.py                 # table
    python benchmarks/dedup.py --quick --json  # < 90 s; the last line is one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

from teamsrl_jax.generate.dedup import NearDuplicateFilter

DATA = Path(os.environ.get("TEAMSRL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SOURCES = [  # (file, field)
    ("seeds/self_instruct_seed_tasks.jsonl", "instruction"),
    ("seeds/alpaca_sample_999.json", "instruction"),
    ("seeds/self_instruct_user_oriented_252.jsonl", "instruction"),
    ("reference/teams_rl_original_generated_1386.jsonl", "instruction"),
    ("reference/wizardlm_testset_218.jsonl", "Instruction"),
]
FILLERS = ["please", "the", "new", "short", "data", "text", "list", "very", "and", "a", "given", "write"]


def read_instructions(name: str, field: str) -> list[str]:
    path = DATA / name
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmark reads the shared data (set TEAMSRL_SHARED_DATA)")
    text = path.read_text()
    records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line]
    return [r[field] for r in records]


def edit(text: str, rng: random.Random, edits: int) -> str:
    """``edits`` random word edits: drop, insert, substitute, upper-case, or punctuation after a word."""
    words = text.split() or ["empty"]
    for _ in range(edits):
        op, i = rng.randrange(5), rng.randrange(len(words))
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(FILLERS))
        elif op == 2:
            words[i] = rng.choice(FILLERS)
        elif op == 3:
            words[i] = words[i].upper()
        else:
            words[i] += rng.choice(",.;:!?")
    return " ".join(words)


def with_near_copies(real: list[str], rng: random.Random, rate: float = 0.3) -> list[str]:
    out = []
    for text in real:
        out.append(text)
        while rng.random() < rate:
            out.append(edit(rng.choice(out[-20:]), rng, rng.randint(1, 3)))
    return out


def perturbed(real: list[str], n: int, rng: random.Random) -> list[str]:
    return [edit(text, rng, rng.randint(0, 6)) for text in rng.choices(real, k=n)]


def reference(texts: list[str], threshold: float, seconds: float, processes: int) -> tuple[list[bool], float]:
    """Alpaca's loop with one persistent pool, until ``seconds`` have passed: (decisions so far, seconds)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    decisions, kept = [], []
    with Pool(processes) as pool:
        start = time.perf_counter()
        for text in texts:
            tokens = scorer._tokenizer.tokenize(text)
            scores = pool.map(partial(rouge_scorer._score_lcs, tokens), kept) if kept else []
            novel = max((s.fmeasure for s in scores), default=0.0) < threshold
            decisions.append(novel)
            if novel:
                kept.append(tokens)
            if time.perf_counter() - start >= seconds:
                break
        return decisions, time.perf_counter() - start


def ours(texts: list[str], threshold: float, vocabulary: list[str] | None, repeats: int = 1) -> tuple[list[bool], float]:
    """A fresh filter over ``texts``, construction included: (decisions, median seconds of ``repeats`` runs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decisions = NearDuplicateFilter(threshold, vocabulary=vocabulary).filter(texts)
        times.append(time.perf_counter() - start)
    return decisions, statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of reference and 5K instructions at scale (< 90 s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the reference runs")
    parser.add_argument("--threshold", type=float, default=0.7, help="drop at ROUGE-L F >= threshold")
    parser.add_argument("--no-vocabulary", action="store_true", help="ours without a fitted token order")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    seconds, sizes = (10.0, [5000]) if args.quick else (args.seconds, [20000, 100000])
    processes = os.cpu_count() or 1
    rng = random.Random(0)
    real = list(dict.fromkeys(t for name, field in SOURCES for t in read_instructions(name, field)))
    rng.shuffle(real)
    stream = with_near_copies(real, rng)
    vocabulary = None if args.no_vocabulary else read_instructions(*SOURCES[0])

    ref_decisions, ref_seconds = reference(stream, args.threshold, seconds, processes)
    prefix = len(ref_decisions)
    our_decisions, our_seconds = ours(stream[:prefix], args.threshold, vocabulary, repeats=3)
    ref_rate, our_rate = prefix / ref_seconds, prefix / our_seconds
    scale = []
    for n in sizes:
        decisions, took = ours(perturbed(real, n, rng), args.threshold, vocabulary)
        scale.append({"instructions": n, "kept": sum(decisions), "seconds": took, "per_s": n / took})

    result = {"threshold": args.threshold, "real_instructions": len(real), "stream": len(stream), "prefix": prefix,
              "kept": sum(ref_decisions), "processes": processes,
              "vocabulary": "none" if vocabulary is None else "self-instruct seed tasks (175)",
              "reference_seconds": ref_seconds, "reference_per_s": ref_rate,
              "ours_seconds": our_seconds, "ours_per_s": our_rate, "speedup": our_rate / ref_rate,
              "same_decisions": our_decisions == ref_decisions, "scale": scale}
    for row in scale:
        result[f"ours_{row['instructions'] // 1000}k_per_s"] = row["per_s"]
    print(f"{len(real)} distinct real instructions, {len(stream)} with near-copies; drop at ROUGE-L >= "
          f"{args.threshold}; reference: rouge_score _score_lcs over a pool of {processes}; "
          f"ours: vocabulary {result['vocabulary']}")
    print(f"{'':34} {'instructions':>12} {'kept':>7} {'seconds':>8} {'per second':>11}")
    print(f"{'reference (rouge_score, pool)':34} {prefix:12d} {sum(ref_decisions):7d} {ref_seconds:8.2f} "
          f"{ref_rate:11.1f}")
    print(f"{'ours, same prefix':34} {prefix:12d} {sum(our_decisions):7d} {our_seconds:8.3f} {our_rate:11.1f}")
    for row in scale:
        print(f"{'ours, perturbed repeats':34} {row['instructions']:12d} {row['kept']:7d} {row['seconds']:8.2f} "
              f"{row['per_s']:11.1f}")
    print(f"speedup {our_rate / ref_rate:.0f}x; same decisions: {result['same_decisions']}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
