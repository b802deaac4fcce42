"""``python -m teamsrl_jax.train_policy``: learn which textual operation to apply, with TRPO.

    python -m teamsrl_jax.train_policy --out runs/policy                       # offline simulator, bundled seeds
    python -m teamsrl_jax.train_policy --preset paper --out runs/paper
    python -m teamsrl_jax.train_policy --backend openai --base-url http://127.0.0.1:8000/v1 \\
        --model meta-llama/Llama-3.1-8B-Instruct --seeds alpaca.json --iterations 200 --out runs/vllm
    python -m teamsrl_jax.train_policy --backend jax --model SmolLM2-135M-Instruct.Q4_1.gguf --out runs/local
    python -m teamsrl_jax.train_policy --out runs/vllm ... --resume           # after a crash or kill

The API key of an ``openai`` endpoint is read from the environment variable named by ``--api-key-env``
(default OPENAI_API_KEY) and is never written anywhere. See :mod:`teamsrl_jax.train_policy.loop` for the
files a run writes; the final ``summary.json`` compares the trained policy with uniform random choice and
with each fixed operation on held-out seeds, and ``training.png`` shows the reward curve and operation shares.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from teamsrl_jax.llm import KINDS, BackendConfig
from teamsrl_jax.cli import field_docs, main_guard
from teamsrl_jax.fileio import atomic_write_json
from teamsrl_jax.train_policy.config import TRAIN_PRESETS, TrainConfig
from teamsrl_jax.train_policy.evaluate import compare_policies
from teamsrl_jax.train_policy.loop import Trainer
from teamsrl_jax.train_policy.report import format_comparison, format_rewrites, plot_training, rewrite_summary


def _logprobs_arg(value: str) -> int | str:
    if value.lower() == "none":
        return "none"
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 20:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 20 or 'none', got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    doc, bdoc = field_docs(TrainConfig), field_docs(BackendConfig)
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.train_policy", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (metrics, checkpoints, cache, summary, plot)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), default="default", help=doc["preset"])
    for name, typ in (("iterations", int), ("episodes_per_update", int), ("num_chains", int), ("horizon", int),
                      ("held_out_fraction", float), ("seed", int), ("checkpoint_every", int),
                      ("keep_checkpoints", int), ("eval_episodes", int), ("eval_chains", int),
                      ("rollout_groups", int), ("instructor_max_tokens", int), ("reviewer_max_tokens", int)):
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, help=doc[name])
    p.add_argument("--seeds", default=None, help=doc["seeds"])
    p.add_argument("--no-eval-fixed", dest="eval_fixed", action="store_false", help="skip the fixed-operation baselines")
    p.add_argument("--reviewer-logprobs", type=_logprobs_arg, default=None, metavar="N|none",
                   help=doc["reviewer_logprobs"] + " Default: 20 with --backend jax, else none.")
    p.add_argument("--reviewer-prefill", action=argparse.BooleanOptionalAction, default=None,
                   help=doc["reviewer_prefill"] + " Default: on with --backend jax, else off.")
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=KINDS, default="simulated", help=bdoc["kind"])
    g.add_argument("--base-url", default=BackendConfig.base_url, help=bdoc["base_url"])
    g.add_argument("--model", default="", help=bdoc["model"])
    g.add_argument("--dtype", default=BackendConfig.dtype, help=bdoc["dtype"])
    g.add_argument("--mesh", default=BackendConfig.mesh, help=bdoc["mesh"])
    g.add_argument("--batch-slots", type=int, default=BackendConfig.batch_slots, help=bdoc["batch_slots"])
    g.add_argument("--api-key-env", default=BackendConfig.api_key_env, help=bdoc["api_key_env"])
    g.add_argument("--concurrency", type=int, default=BackendConfig.concurrency, help=bdoc["concurrency"])
    g.add_argument("--timeout", type=float, default=BackendConfig.timeout_s, help=bdoc["timeout_s"])
    g.add_argument("--max-retries", type=int, default=BackendConfig.max_retries, help=bdoc["max_retries"])
    g.add_argument("--cache", default=None, help="SQLite completion cache (default: OUT/cache.sqlite)")
    g.add_argument("--sim-latency", type=float, default=0.0,
                   help="simulated backend only: seconds per request (for timing experiments)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = dict(TRAIN_PRESETS[args.preset])
    values.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    # Scores from the reviewer's token probabilities where the backend surely returns them (our own model).
    asked = args.reviewer_logprobs
    values["reviewer_logprobs"] = (20 if args.backend == "jax" else None) if asked is None else \
        (None if asked == "none" else asked)
    values["reviewer_prefill"] = args.backend == "jax" if args.reviewer_prefill is None else args.reviewer_prefill
    extra = {"latency_s": args.sim_latency} if args.backend == "simulated" else {}
    values["backend"] = BackendConfig(
        kind=args.backend, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
        concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.max_retries, dtype=args.dtype,
        mesh=args.mesh, batch_slots=args.batch_slots, cache_path=args.cache or str(Path(args.out) / "cache.sqlite"),
        extra=extra)
    return TrainConfig(**values)


def train_and_report(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """The whole command: train (or resume), compare on held-out seeds, write summary.json and the plot."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = cfg.backend.build()
    start = time.perf_counter()
    try:
        trainer = Trainer(cfg, out, backend, resume=resume)
        try:
            trainer.run(progress=progress)
            rows = trainer.metrics.rows()
            comparison = {}
            if cfg.eval_episodes and trainer.env.held_out_seeds is not None:
                comparison = compare_policies(trainer.agent, backend, trainer.env.config, trainer.env.held_out_seeds,
                                              episodes=cfg.eval_episodes, chains=cfg.eval_chains,
                                              include_fixed=cfg.eval_fixed, seed=trainer.env.config.seed,
                                              operations=trainer.env.operations)
        finally:
            trainer.close()
        plot_training(rows, out / "training.png", title=f"train_policy ({cfg.preset}, {backend.name})")
        summary = {
            "preset": cfg.preset, "iterations": cfg.iterations, "backend": backend.name, "model": backend.model,
            "chains": trainer.env.config.num_chains, "horizon": trainer.env.config.horizon,
            "final_episode_return": rows[-1]["episode_return"] if rows else None,
            "held_out": comparison, "queries": backend.accounting.to_dict(),
            "training_queries": sum(r["queries"] for r in rows),
            "training_cache_hits": sum(r["cache_hits"] for r in rows),
            "training_rewrites": rewrite_summary(rows),
            "wall_time_s": round(time.perf_counter() - start, 2),
        }
        atomic_write_json(out / "summary.json", summary)
        backend.accounting.write_json(out / "queries.json")
        print(format_rewrites(rows))
        if comparison:
            print(format_comparison(comparison))
        print(backend.accounting.format_table())
        print(f"run folder: {out} (summary.json, metrics.jsonl, instructions.jsonl, training.png)")
        return summary
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        train_and_report(config_from_args(args), args.out, resume=args.resume)

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
