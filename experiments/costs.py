"""Expected cost of a pipeline experiment: LLM queries and tokens per role, SFT FLOPs and accelerator hours.

    python experiments/costs.py experiments/paper_full.yaml --model-config llama2-7b
    python experiments/costs.py experiments/paper_full.yaml --run runs/paper_smoke     # measured token means
    python experiments/costs.py experiments/paper_full.yaml --mfu 0.40 --device h100 --devices 8 --json

Counts follow from the config: policy training makes iterations x episodes x chains x horizon rewrites and as
many reviews (plus the held-out comparison's episodes), generation at least one rewrite and one response per
example (the paper's 2; a run's ``report.json`` gives the measured figure), SFT computes
steps x global batch x max_length positions at 6 x params FLOPs each. Tokens are bounded by each role's
``max_tokens`` unless a run measured their means (``queries.json`` of a policy run, ``report.json`` of a
generation run). Accelerator hours need a measured throughput, never an assumed one: ``--tokens-per-s`` or
``--sft-metrics`` (an SFT run of this model on the target), ``--mfu`` with the device, or the ``sft_step`` entry
of ``benchmarks/results.json``; without one the FLOPs and the formula are printed with what is missing.
Every figure names its source.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCHMARKS = ROOT / "benchmarks" / "results.json"
HOUR = 3600.0


# ============================================================================ inputs


def read_json(path: str | Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e})") from None


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def run_file(path: str | Path, name: str) -> Path:
    """``path`` itself when it is a file, else ``path/name``."""
    path = Path(path)
    return path if path.is_file() else path / name


def model_params(spec: str) -> tuple[int, str]:
    """(parameters, source) of a config.json, a Hugging Face folder or one of ``teamsrl_jax.model.PRESETS``."""
    from teamsrl_jax.model.config import PRESETS, LlamaConfig

    if spec in PRESETS:
        return LlamaConfig.preset(spec).num_params(), f"teamsrl_jax.model preset {spec!r}"
    path = Path(spec)
    path = path / "config.json" if path.is_dir() else path
    config = LlamaConfig.from_hf(read_json(path, "the model config"))
    return config.num_params(), str(path)


def resolve_params(args: argparse.Namespace, base_model: str) -> tuple[int | None, str]:
    if args.params:
        return args.params, "--params"
    if args.model_config:
        return model_params(args.model_config)
    if (Path(base_model) / "config.json").is_file():
        return model_params(base_model)
    return None, (f"base_model {base_model!r} has no readable config.json here: pass --model-config "
                  "(a config.json, a Hugging Face folder or a preset such as llama2-7b) or --params")


def sft_metrics_throughput(path: str | Path) -> dict[str, Any]:
    """Median ``tokens_per_s`` (and ``mfu``) over the logged steps of an SFT run's ``metrics.jsonl``."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    tps = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    if not tps:
        raise ValueError(f"{path}: no tokens_per_s in any logged step")
    mfus = [r["mfu"] for r in rows if r.get("mfu") is not None]
    return {"tokens_per_s": statistics.median(tps), "mfu": statistics.median(mfus) if mfus else None,
            "source": f"{path} (median of {len(tps)} logged steps)"}


def benchmark_mfu(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The MFU ``benchmarks/sft_step.py`` measured on an accelerator, from ``run_all.py``'s results.json."""
    if not path.is_file():
        return None, f"{_shown(path)} does not exist (python benchmarks/run_all.py on the target writes it)"
    results = read_json(path, "the benchmark results")
    entry = next((b for b in results.get("benchmarks", []) if b.get("name") == "sft_step"), None)
    raw = (entry or {}).get("raw") or {}
    if entry is None or entry.get("status") != "ok":
        return None, f"{_shown(path)}: no successful sft_step entry"
    if raw.get("accelerator_mfu") is None:
        backend = raw.get("jax_backend") or results.get("machine", {}).get("backend", "?")
        return None, f"{_shown(path)}: sft_step ran on {backend}, where no MFU is measured"
    when = results.get("machine", {}).get("date", "date unknown")
    devices, device = raw.get("accelerator_devices", 1), raw.get("accelerator_device", "")
    return {"mfu": raw["accelerator_mfu"], "device": device,
            "source": (f"{_shown(path)}: benchmarks/sft_step.py on {devices} x {device or '?'} ({when}; a "
                       f"{raw.get('accelerator_model', '?')} Llama at seq {raw.get('accelerator_seq_len', '?')}, "
                       f"FSDP over {devices} device{'s' if devices != 1 else ''})")}, ""


def peak_flops(args: argparse.Namespace, device: str | None) -> tuple[float | None, str]:
    """Dense bf16 peak FLOP/s of one device: --peak-tflops, or the device name matched in the trainer's table."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "--peak-tflops"
    name = (args.device or device or "").lower()
    if not name:
        return None, "no device: pass --device (e.g. h100, a100, v4, v5p) or --peak-tflops"
    from teamsrl_jax.sft.metrics import PEAK_FLOPS

    peak = next((flops for key, flops in PEAK_FLOPS if key in name), None)
    if peak is None:
        return None, f"device {name!r} is not in teamsrl_jax.sft.metrics.PEAK_FLOPS: pass --peak-tflops"
    return peak, f"bf16 peak of {name!r} (teamsrl_jax.sft.metrics.PEAK_FLOPS)"


def resolve_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """The first measurement given: --tokens-per-s, --sft-metrics, --mfu, benchmarks/results.json."""
    if args.tokens_per_s:
        return {"kind": "tokens_per_s", "tokens_per_s": args.tokens_per_s, "source": "--tokens-per-s"}
    if args.sft_metrics:
        return {"kind": "tokens_per_s", **sft_metrics_throughput(args.sft_metrics)}
    found, why = ({"mfu": args.mfu, "device": None, "source": "--mfu"}, "") if args.mfu else \
        benchmark_mfu(Path(args.benchmarks))
    if found is None:
        return {"kind": None, "missing": why}
    peak, peak_source = peak_flops(args, found["device"])
    if peak is None:
        return {"kind": None, "missing": f"MFU {found['mfu']:.3f} from {found['source']}, but {peak_source}"}
    return {"kind": "mfu", "mfu": found["mfu"], "peak_flops": peak, "source": found["source"],
            "peak_source": peak_source}


# ============================================================================ the stages


def _role(queries: int, max_tokens: int | None, measured: dict[str, int] | None, source: str) -> dict[str, Any]:
    """Queries of one role with its tokens: means measured by a run, else the completion bound."""
    out: dict[str, Any] = {"queries": queries, "max_tokens": max_tokens,
                           "completion_tokens_max": queries * max_tokens if max_tokens else None,
                           "prompt_tokens": None, "completion_tokens": None, "tokens_source": None}
    n = (measured or {}).get("queries") or (measured or {}).get("requests") or 0
    if n and (measured.get("prompt_tokens") or measured.get("completion_tokens")):
        out.update(mean_prompt_tokens=measured["prompt_tokens"] / n,
                   mean_completion_tokens=measured["completion_tokens"] / n,
                   prompt_tokens=round(queries * measured["prompt_tokens"] / n),
                   completion_tokens=round(queries * measured["completion_tokens"] / n),
                   measured_queries=n, tokens_source=source)
    return out


def _backend_name(backend) -> str:
    return f"{backend.kind}: {backend.model}" if backend.model else backend.kind


def train_config(cfg):
    """The policy stage's ``TrainConfig``, built as the pipeline builds it."""
    from teamsrl_jax.llm import BackendConfig
    from teamsrl_jax.train_policy.config import TrainConfig

    section = dict(cfg.train_policy)
    backend = section.pop("backend", {})
    return TrainConfig(**section, seeds=cfg.seeds, backend=BackendConfig(**backend))


def policy_cost(cfg, measured_path: Path | None) -> dict[str, Any]:
    """Rewrites and reviews of policy training and of its held-out comparison."""
    from teamsrl_jax.env.operations import OperationSet
    from teamsrl_jax.train_policy.loop import env_config

    train = train_config(cfg)
    env = env_config(train)
    chains, horizon = env.num_chains, env.horizon
    per_role = train.iterations * train.episodes_per_update * chains * horizon
    policies = 2 + (len(OperationSet().names) if train.eval_fixed else 0)
    held_out = train.eval_episodes * train.eval_chains * horizon * policies
    measured = read_json(measured_path, "the policy run's queries.json") if measured_path else {}
    source = str(measured_path) if measured_path else ""
    roles = {role: _role(per_role + held_out, getattr(env, role).max_tokens, measured.get(role), source)
             for role in ("instructor", "reviewer")}
    return {"backend": _backend_name(train.backend), "roles": roles,
            "training_queries": 2 * per_role, "held_out_queries": 2 * held_out,
            "formula": (f"{train.iterations} iterations x {train.episodes_per_update} episode(s) x {chains} chain(s) "
                        f"x {horizon} steps = {per_role:,} rewrites + {per_role:,} reviews; held-out comparison: "
                        f"{train.eval_episodes} episodes x {train.eval_chains} chains x {horizon} steps x "
                        f"{policies} policies = {held_out:,} + {held_out:,}"),
            "bound": "at most: cached (identical) requests and reviews of eliminated rewrites are not paid"}


def generation_cost(cfg, report_path: Path | None) -> dict[str, Any]:
    """Instructor and responder queries of the dataset stage."""
    from teamsrl_jax.generate.config import GenerateConfig
    from teamsrl_jax.generate.report import PAPER, WIZARDLM_QUERIES
    from teamsrl_jax.generate.run import generation_env_config, unique_seeds
    from teamsrl_jax.llm import BackendConfig

    section = dict(cfg.generate)
    backend, responder = section.pop("backend", {}), section.pop("responder", None)
    gen = GenerateConfig(**section, policy="policy", seeds=cfg.seeds, backend=BackendConfig(**backend),
                         responder=BackendConfig(**responder) if responder else None)
    env = generation_env_config(train_config(cfg), gen, gen.chains)
    if gen.max_examples:
        examples, examples_source = gen.max_examples, "max_examples"
    else:  # every step of every seed can emit one example
        examples = len(unique_seeds(cfg.seeds)) * env.horizon
        examples_source = f"every seed x {env.horizon} steps (an upper bound)"
    report = read_json(report_path, "the generation report") if report_path else None
    if report and report.get("examples"):
        per = {role: report["requests"][role]["requests"] / report["examples"] for role in ("instructor", "responder")}
        per_source = f"{report_path} ({report['examples']} examples)"
    else:
        per = {"instructor": 1.0, "responder": 1.0}
        per_source = "the paper's figure, a lower bound: every rewrite that becomes no example costs more"
    measured = report["requests"] if report else {}
    max_tokens = {"instructor": env.instructor.max_tokens, "responder": gen.responder_max_tokens}
    roles = {role: _role(math.ceil(examples * per[role]), max_tokens[role], measured.get(role), str(report_path))
             for role in ("instructor", "responder")}
    expert = sum(r["queries"] for r in roles.values())
    return {"instructor": _backend_name(gen.backend), "responder": _backend_name(gen.responder_backend),
            "examples": examples, "examples_source": examples_source, "queries_per_example": per,
            "queries_per_example_source": per_source, "roles": roles, "expert_queries": expert,
            "ratio_vs_wizardlm": expert / WIZARDLM_QUERIES, "wizardlm_queries": WIZARDLM_QUERIES,
            "paper": PAPER}


def split_sizes(examples: int, holdout_fraction: float) -> tuple[int, int]:
    """(members, nonmembers): the pipeline's split stage."""
    held = max(2, round(holdout_fraction * examples))
    return examples - held, held


def sft_cost(cfg, examples: int, params: int | None, tokens_per_example: tuple[float, str] | None,
             throughput: dict[str, Any], devices: int | None) -> dict[str, Any]:
    """Steps, computed positions, FLOPs and (with a measured throughput) hours of the SFT stage."""
    from teamsrl_jax.sft.config import load_config
    from teamsrl_jax.sft.data import split_eval

    sft = load_config(None, {**cfg.sft, "model": "base", "data": "train.jsonl"})
    members, _ = split_sizes(examples, cfg.holdout_fraction)
    train_examples = len(split_eval(members, eval_fraction=sft.eval_fraction, eval_count=sft.eval_count)[0])
    out: dict[str, Any] = {"examples": train_examples, "epochs": sft.epochs, "max_steps": sft.max_steps,
                           "global_batch_size": sft.global_batch_size, "max_length": sft.max_length,
                           "packing": sft.packing, "params": params}
    mean = min(tokens_per_example[0], sft.max_length) if tokens_per_example else None  # truncated as the SFT does
    if tokens_per_example and not sft.max_steps:
        out.update(tokens_per_example=tokens_per_example[0], tokens_per_example_source=tokens_per_example[1],
                   trained_tokens=round(train_examples * mean * sft.epochs))
    if sft.packing:  # rows hold several examples; as many rows as the tokens fill (a lower bound on rows)
        if mean is None:
            out["missing"] = "packing is on: the rows depend on the tokens per example (--tokens-per-example)"
            return out
        rows = math.ceil(train_examples * (mean - 1) / sft.max_length)
    else:
        rows = train_examples
    steps = sft.max_steps or sft.epochs * math.ceil(rows / sft.global_batch_size)
    positions = steps * sft.global_batch_size * sft.max_length
    out.update(rows_per_epoch=rows, steps=steps, computed_tokens=positions)
    if params is None:
        out["missing"] = "the parameter count"
        return out
    flops = 6 * params * positions
    out.update(flops=flops, formula="6 x params x steps x global_batch_size x max_length (padding included)")
    if "trained_tokens" in out:
        out["trained_flops"] = 6 * params * out["trained_tokens"]
    out.update(hours(flops, positions, throughput, devices))
    return out


def hours(flops: float, positions: int, throughput: dict[str, Any], devices: int | None) -> dict[str, Any]:
    """Wall-clock and device hours from a measured throughput; the formula and the gap when there is none."""
    if throughput["kind"] == "tokens_per_s":
        wall = positions / throughput["tokens_per_s"] / HOUR
        return {"wall_hours": wall, "device_hours": wall * devices if devices else None,
                "hours_formula": "computed tokens / tokens_per_s", "throughput": throughput}
    if throughput["kind"] == "mfu":
        device_hours = flops / (throughput["peak_flops"] * throughput["mfu"]) / HOUR
        return {"device_hours": device_hours, "wall_hours": device_hours / devices if devices else None,
                "hours_formula": "FLOPs / (peak FLOP/s per device x MFU)", "throughput": throughput}
    return {"device_hours": None, "wall_hours": None, "hours_formula": "FLOPs / (peak FLOP/s per device x MFU)",
            "throughput": throughput,
            "missing": ("a throughput measured on the target: --sft-metrics from a short SFT run of this model "
                        "there (paper_smoke.yaml's sft/metrics.jsonl), or benchmarks/run_all.py --only sft_step "
                        f"on a GPU or TPU (an MFU), or --mfu / --tokens-per-s; {throughput['missing']}")}


def mia_cost(cfg, examples: int, params: int | None) -> dict[str, Any]:
    """Forward passes of the membership-inference stage: every example under the target and the reference."""
    members, nonmembers = split_sizes(examples, cfg.holdout_fraction)
    limit = cfg.mia.get("limit", 0)
    scored = min(members, limit) + min(nonmembers, limit) if limit else members + nonmembers
    max_length = cfg.mia.get("max_length", 512)
    tokens = scored * max_length * 2  # target + reference
    return {"examples": scored, "max_length": max_length, "tokens_max": tokens,
            "flops_max": 2 * params * tokens if params else None,
            "formula": "2 x params x examples x max_length x 2 models (an upper bound: examples are shorter)"}


def estimate(config_path: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every stage's cost for the pipeline config at ``config_path``."""
    from teamsrl_jax.pipeline.config import load

    cfg = load(config_path)
    run = Path(args.run) if args.run else None
    policy_q = args.policy_queries or (run / "policy" / "queries.json" if run else None)
    gen_report = args.generate_report or (run / "data" / "report.json" if run else None)
    if args.sft_metrics is None and run and (run / "sft" / "metrics.jsonl").is_file():
        args.sft_metrics = str(run / "sft" / "metrics.jsonl")
    policy_q = run_file(policy_q, "queries.json") if policy_q else None
    gen_report = run_file(gen_report, "report.json") if gen_report else None
    params, params_source = resolve_params(args, cfg.base_model)
    generation = generation_cost(cfg, gen_report)
    tokens_per_example = None
    if args.tokens_per_example:
        tokens_per_example = (args.tokens_per_example, "--tokens-per-example")
    elif "mean_prompt_tokens" in generation["roles"]["responder"]:
        r = generation["roles"]["responder"]
        tokens_per_example = (r["mean_prompt_tokens"] + r["mean_completion_tokens"],
                              f"{gen_report}: the responder's prompt + completion tokens (its tokenizer, "
                              "without the Alpaca template)")
    throughput = resolve_throughput(args)
    return {"config": str(config_path), "name": cfg.name, "params": params, "params_source": params_source,
            "policy_training": policy_cost(cfg, policy_q), "generation": generation,
            "sft": sft_cost(cfg, generation["examples"], params, tokens_per_example, throughput, args.devices),
            "mia": mia_cost(cfg, generation["examples"], params),
            "evaluation": "not estimated: forward passes over the evaluation files (ARC, HellaSwag)"}


# ============================================================================ the table


def _n(value: Any, fmt: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _roles_table(roles: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"  {'role':<11}{'queries':>10}{'prompt tokens':>16}{'completion tokens':>19}{'completion bound':>19}"]
    for role, r in roles.items():
        bound = f"<= {_n(r['completion_tokens_max'])}" if r["completion_tokens_max"] else "n/a"
        lines.append(f"  {role:<11}{r['queries']:>10,}{_n(r['prompt_tokens']):>16}{_n(r['completion_tokens']):>19}"
                     f"{bound:>19}")
    sources = {r["tokens_source"] for r in roles.values() if r["tokens_source"]}
    lines.append("  token means measured in: " + ("; ".join(sorted(sources)) if sources else
                                                 "no run given (--run): only the max_tokens bound") +
                 " (max_tokens " + ", ".join(f"{k} {v['max_tokens']}" for k, v in roles.items()) + ")")
    return lines


def format_table(est: dict[str, Any]) -> str:
    p, g, s, m = est["policy_training"], est["generation"], est["sft"], est["mia"]
    lines = [f"Expected cost of {est['config']} ({est['name']})", "",
             f"Policy training ({p['backend']})", f"  {p['formula']}",
             f"  = {p['training_queries']:,} training + {p['held_out_queries']:,} held-out queries ({p['bound']})",
             *_roles_table(p["roles"]), "",
             f"Generation (instructor {g['instructor']}, responder {g['responder']})",
             f"  {g['examples']:,} examples ({g['examples_source']}) x queries per example "
             f"{' + '.join(f'{v:.2f}' for v in g['queries_per_example'].values())} "
             f"({g['queries_per_example_source']})",
             f"  = {g['expert_queries']:,} expert queries, {100 * g['ratio_vs_wizardlm']:.2f}% of WizardLM's "
             f"{g['wizardlm_queries']:,} (the paper: {g['paper']['expert_queries']:,}, "
             f"{100 * g['paper']['ratio_vs_wizardlm']:.2f}%)",
             *_roles_table(g["roles"]), "",
             f"SFT ({_n(s['params'])} parameters: {est['params_source']})",
             f"  {s['examples']:,} examples x "
             + (f"max_steps {s['max_steps']}" if s["max_steps"] else f"{s['epochs']} epochs")
             + f", batch {s['global_batch_size']} x {s['max_length']} tokens, "
               f"packing {'on' if s['packing'] else 'off'}"]
    if "tokens_per_example" in s:
        lines.append(f"  trained tokens: {s['trained_tokens']:,} ({s['tokens_per_example']:.1f} per example: "
                     f"{s['tokens_per_example_source']}), {_n(s.get('trained_flops'), '.3e')} FLOPs")
    if "steps" in s:
        lines.append(f"  {s['steps']:,} steps x {s['global_batch_size']} rows x {s['max_length']} = "
                     f"{s['computed_tokens']:,} computed tokens")
    if "flops" in s:
        lines.append(f"  FLOPs = {s['formula']} = {s['flops']:.3e}")
        t = s["throughput"]
        if t["kind"] is None:
            lines.append(f"  hours = {s['hours_formula']}: not computed, missing {s['missing']}")
        else:
            measured = (f"MFU {t['mfu']:.3f} ({t['source']}), {t['peak_flops'] / 1e12:.0f} TFLOP/s per device "
                        f"({t['peak_source']})" if t["kind"] == "mfu" else
                        f"{t['tokens_per_s']:,.0f} tokens/s ({t['source']})")
            lines.append(f"  hours = {s['hours_formula']} with {measured}: device-hours {_n(s['device_hours'], ',.2f')}"
                         f", wall-clock hours {_n(s['wall_hours'], ',.2f')}"
                         + ("" if s["device_hours"] is not None and s["wall_hours"] is not None
                            else " (--devices N gives the other)"))
    if "missing" in s and "flops" not in s:
        lines.append(f"  not computed: missing {s['missing']}")
    lines += ["", f"Membership inference: {m['examples']:,} examples x {m['max_length']} tokens x 2 models <= "
                  f"{m['tokens_max']:,} tokens, <= {_n(m['flops_max'], '.3e')} FLOPs ({m['formula']})",
              f"Evaluation: {est['evaluation']}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python experiments/costs.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("config", help="a pipeline config (experiments/paper_full.yaml)")
    p.add_argument("--run", help="a pipeline run folder: its policy/queries.json, data/report.json and "
                                 "sft/metrics.jsonl are used where present")
    p.add_argument("--policy-queries", help="a policy run's queries.json (or its folder): measured token means")
    p.add_argument("--generate-report", help="a generation run's report.json (or its folder): measured queries "
                                             "per example and token means")
    p.add_argument("--params", type=int, help="parameters of the fine-tuned model")
    p.add_argument("--model-config", help="its config.json, Hugging Face folder, or a preset (llama2-7b)")
    p.add_argument("--tokens-per-example", type=float, help="measured SFT tokens per example (for packing)")
    g = p.add_argument_group("measured throughput (first given wins; none is ever assumed)")
    g.add_argument("--tokens-per-s", type=float, help="SFT tokens/s of the whole mesh, as the trainer reports it")
    g.add_argument("--sft-metrics", help="metrics.jsonl of an SFT run of this model on the target hardware")
    g.add_argument("--mfu", type=float, help="measured model-FLOPs utilisation (0-1) on the target")
    g.add_argument("--benchmarks", default=str(DEFAULT_BENCHMARKS), help="benchmarks/run_all.py's results.json")
    g.add_argument("--device", help="device kind for the peak FLOP/s (h100, a100, v4, v5p, ...)")
    g.add_argument("--peak-tflops", type=float, help="peak bf16 TFLOP/s per device instead of --device")
    g.add_argument("--devices", type=int, help="devices of the run (turns device-hours into wall-clock hours)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        est = estimate(args.config, args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(est, indent=1) if args.json else format_table(est))
    return 0


if __name__ == "__main__":
    sys.exit(main())
