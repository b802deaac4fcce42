"""``python -m teamsrl_jax.generate``: a trained policy evolves seed instructions into an SFT dataset.

    python -m teamsrl_jax.generate --policy runs/demo --out runs/data               # offline simulator
    python -m teamsrl_jax.generate --policy runs/demo --seeds alpaca_data.json --out runs/data \\
        --backend openai --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \\
        --responder-backend openai --responder-base-url https://api.openai.com/v1 --responder-model gpt-4o
    python -m teamsrl_jax.generate --policy runs/demo --out runs/data --backend simulated \\
        --responder-backend jax --responder-model SmolLM2-135M-Instruct.Q4_1.gguf
    python -m teamsrl_jax.generate --policy runs/paper --schedule paper --out runs/paper-data   # the original's
    python -m teamsrl_jax.generate ... --out runs/data --resume                      # after a crash or kill

Writes ``OUT/data.jsonl`` (Alpaca records with provenance, read as is by ``python -m teamsrl_jax.sft``),
``OUT/report.json``, ``OUT/operations.png``, ``OUT/lengths.png``, ``OUT/config.json`` and the completion cache
``OUT/cache.sqlite``. API keys are read from the environment variables named by ``--api-key-env`` /
``--responder-api-key-env`` and are never written anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from teamsrl_jax.cli import field_docs, main_guard
from teamsrl_jax.generate.config import SCHEDULES, GenerateConfig
from teamsrl_jax.llm import KINDS, BackendConfig


def _threshold(value: str) -> float | str:
    if value.lower() == "none":
        return "none"
    try:
        t = float(value)
    except ValueError:
        t = -1.0
    if not 0 < t <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'none', got {value!r}")
    return t


def build_parser() -> argparse.ArgumentParser:
    doc, bdoc = field_docs(GenerateConfig), field_docs(BackendConfig)
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.generate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--policy", required=True, help=doc["policy"])
    p.add_argument("--out", required=True, help="run folder (data.jsonl, report.json, plots, cache)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (after a crash or kill)")
    p.add_argument("--seeds", default=None, help=doc["seeds"])
    p.add_argument("--schedule", choices=SCHEDULES, default="policy", help=doc["schedule"])
    p.add_argument("--greedy", action="store_true", help=doc["greedy"])
    for name, typ in (("steps", int), ("max_examples", int), ("chains", int), ("seed", int), ("min_words", int),
                      ("max_words", int), ("instructor_temperature", float), ("instructor_max_tokens", int),
                      ("responder_temperature", float), ("responder_top_p", float), ("responder_max_tokens", int)):
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, help=doc[name])
    p.add_argument("--responder-system", default=None, help=doc["responder_system"])
    p.add_argument("--dedup-threshold", type=_threshold, default=None, metavar="T|none",
                   help=doc["dedup_threshold"] + " Default: 0.7.")
    p.add_argument("--no-eliminate", dest="eliminate", action="store_false", default=None,
                   help="skip the WizardLM elimination checks (the format checks stay)")
    p.add_argument("--keep-truncated", action="store_true", default=None, help=doc["keep_truncated"])
    g = p.add_argument_group("instructor backend")
    g.add_argument("--backend", choices=KINDS, default="simulated", help=bdoc["kind"])
    g.add_argument("--base-url", default=BackendConfig.base_url, help=bdoc["base_url"])
    g.add_argument("--model", default="", help=bdoc["model"])
    g.add_argument("--api-key-env", default=BackendConfig.api_key_env, help=bdoc["api_key_env"])
    g.add_argument("--dtype", default=BackendConfig.dtype, help=bdoc["dtype"])
    g.add_argument("--mesh", default=BackendConfig.mesh, help=bdoc["mesh"])
    g.add_argument("--batch-slots", type=int, default=BackendConfig.batch_slots, help=bdoc["batch_slots"])
    g.add_argument("--concurrency", type=int, default=BackendConfig.concurrency, help=bdoc["concurrency"])
    g.add_argument("--timeout", type=float, default=BackendConfig.timeout_s, help=bdoc["timeout_s"])
    g.add_argument("--max-retries", type=int, default=BackendConfig.max_retries, help=bdoc["max_retries"])
    g.add_argument("--cache", default=None, help="SQLite completion cache of both roles (default: OUT/cache.sqlite)")
    g.add_argument("--sim-latency", type=float, default=0.0,
                   help="simulated backend only: seconds per request (for timing experiments)")
    r = p.add_argument_group("responder backend (default: the instructor's)")
    r.add_argument("--responder-backend", choices=KINDS, default=None, help=bdoc["kind"])
    r.add_argument("--responder-base-url", default=None, help=bdoc["base_url"])
    r.add_argument("--responder-model", default=None, help=bdoc["model"])
    r.add_argument("--responder-api-key-env", default=None, help=bdoc["api_key_env"])
    return p


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    fields = {f.name for f in dataclasses.fields(GenerateConfig)} - {"backend", "responder"}
    values: dict[str, Any] = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if values.get("dedup_threshold") == "none":
        values["dedup_threshold"] = None
    cache = args.cache or str(Path(args.out) / "cache.sqlite")
    common = dict(concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.max_retries,
                  dtype=args.dtype, mesh=args.mesh, batch_slots=args.batch_slots, cache_path=cache)
    extra = {"latency_s": args.sim_latency} if args.sim_latency else {}
    values["backend"] = BackendConfig(kind=args.backend, base_url=args.base_url, model=args.model,
                                      api_key_env=args.api_key_env,
                                      extra=extra if args.backend == "simulated" else {}, **common)
    if any(v is not None for v in (args.responder_backend, args.responder_base_url, args.responder_model,
                                   args.responder_api_key_env)):
        kind = args.responder_backend or args.backend
        model = args.responder_model if args.responder_model is not None else (args.model if kind == args.backend
                                                                                 else "")
        values["responder"] = BackendConfig(
            kind=kind, base_url=args.responder_base_url or args.base_url, model=model,
            api_key_env=args.responder_api_key_env or args.api_key_env,
            extra=extra if kind == "simulated" else {}, **common)
    return GenerateConfig(**values)


def generate(cfg: GenerateConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """The whole command: build the backends, run (or resume), print the summary; returns the report."""
    from teamsrl_jax.generate.policy import check_policy_folder
    from teamsrl_jax.generate.report import format_report
    from teamsrl_jax.generate.run import Generation

    out = Path(out)
    if not resume and ((out / "data.jsonl").exists() or (out / "config.json").exists()):
        raise ValueError(f"{out}: run folder already holds a dataset; pass --resume or choose a new --out")
    check_policy_folder(cfg.policy)
    instructor = cfg.backend.build()
    responder = instructor
    try:
        if cfg.responder is not None and cfg.responder.to_dict() != cfg.backend.to_dict():
            responder = cfg.responder.build()
        gen = Generation(cfg, out, instructor, responder, resume=resume)
        report = gen.run(progress=progress)
        print(format_report(report, gen.data.path))
        print(f"run folder: {out} (data.jsonl, report.json, operations.png, lengths.png)")
        return report
    finally:
        if responder is not instructor:
            responder.close()
        instructor.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        generate(config_from_args(args), args.out, resume=args.resume)

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
