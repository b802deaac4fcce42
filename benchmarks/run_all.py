"""Every benchmark in one run: each in its own process, one after another, then one table of their figures.

Each ``benchmarks/*.py`` (but this one) runs as ``python benchmarks/X.py --json [--quick]`` in a process of its own
(never two at once: side-by-side timings on a shared machine would mean nothing), under a timeout. Its last stdout
line is one JSON object; the ``REGISTRY`` below says which of its keys are our figure, the peer's, their ratio and
the target. A benchmark that exits non-zero, runs past the timeout or prints no JSON object is marked FAILED with a
one-line reason, and the rest still run. Figures marked ``optional`` (full-size-only) are shown only when the
benchmark reports them.

The side-by-side comparisons run on the CPU on every machine, JAX pinned there (``JAX_PLATFORMS=cpu``) as the peers
are: a ratio compares like with like. On a machine whose JAX finds a GPU or TPU, a benchmark with ``accelerator``
figures (SFT MFU, decode bandwidth share) runs a second time as ``X.py --json --accelerator [--quick]`` on the
device, and its figures join the first run's; a failure of that run is a row of its own.

Writes ``--out-json`` (machine, and per benchmark in run order: name, status, seconds, figures, the raw JSON object) and
``--out-md`` (the table), each atomically, and prints the table. ``--update-readme`` also rewrites the README's
block between ``<!-- benchmark-results:start -->`` and ``<!-- benchmark-results:end -->`` (full runs of every
benchmark only). Exit status 0 when the suite completes, failed benchmarks included; with ``--strict``, 1 when
any failed or missed its target.

    python benchmarks/run_all.py                        # every benchmark, full size (10-20 min on 2 cores)
    python benchmarks/run_all.py --quick                # quick sizes (a few minutes)
    python benchmarks/run_all.py --only decode,dedup    # a subset (or --skip NAME[,NAME])
    python benchmarks/run_all.py --update-readme        # and the README's results block
    python benchmarks/run_all.py --from-results benchmarks/results.json --update-readme   # re-render, no run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from teamsrl_jax.fileio import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
README_START, README_END = "<!-- benchmark-results:start -->", "<!-- benchmark-results:end -->"


# ---------------------------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure pulled from a benchmark's JSON object. Keys are dotted paths into it
    (``accelerator_1b.tokens_per_s``)."""

    name: str
    """What is measured, with its unit ("decode tokens/s")."""
    ours: str
    """Key of our value."""
    peer: str = ""
    """What it is measured against; empty for an informational figure."""
    theirs: str = ""
    """Key of the peer's value."""
    ratio: str = ""
    """Key of the ratio (ours over the peer, higher is better); empty: ours / theirs when both are there."""
    target: str = ""
    """``OP VALUE[x|%]`` (``>= 2x``, ``>= 50%``, ``== true``) on the ratio, or on ours without a peer; empty: none."""
    unit: str = ""
    """How values print: "" a number, "%" a fraction as a percentage, "x" a ratio, "ms" milliseconds."""
    optional: bool = False
    """Shown only when reported (full-size-only figures)."""
    accelerator: bool = False
    """Measured by the script's ``--accelerator`` run, on a GPU or TPU only (so shown only there)."""


TRPO_PEER, TORCH_PEER = "sb3-contrib `TRPO.train()`", "`transformers` + `torch.optim.AdamW`"
REGISTRY: dict[str, list[Figure]] = {
    "trpo_update": [
        Figure("TRPO update, batch 2048", "jax_ms", TRPO_PEER, "sb3_ms", "speedup", unit="ms"),
        Figure("TRPO update, paper size (batch 6)", "paper_jax_ms", TRPO_PEER, "paper_sb3_ms", "paper_speedup",
               unit="ms"),
        Figure("TRPO update, `paper` preset (f64, L-BFGS)", "paper_preset_jax_ms", unit="ms", optional=True),
    ],
    "rollout": [
        Figure("env steps/s, 128 chains", "steps_per_s", "sequential rollout (ours, 1 group)",
               "sequential_128.steps_per_s"),
        Figure("time outside LLM calls, 128 chains", "overhead_fraction", unit="%"),
        Figure("env steps/s, 512 chains", "by_chains.512.steps_per_s", optional=True),
        Figure("time outside LLM calls, 512 chains", "by_chains.512.overhead_fraction", unit="%", optional=True),
    ],
    "sft_step": [
        Figure("SFT step tokens/s, 4-layer Llama", "jax_tokens_per_s", TORCH_PEER, "torch_tokens_per_s", "speedup"),
        Figure("speedup bound set by the matrix products", "speedup_bound", unit="x", optional=True),
        Figure("SFT tokens/s, 1B bf16, seq 2048 (GPU/TPU)", "accelerator_tokens_per_s", accelerator=True),
        Figure("SFT MFU, 1B bf16, seq 2048 (GPU/TPU)", "accelerator_mfu", unit="%", accelerator=True),
    ],
    "dedup": [
        Figure("ROUGE-L filter instructions/s", "ours_per_s", "Self-Instruct's `rouge_score` (process pool)",
               "reference_per_s", "speedup", target=">= 50x"),
        Figure("same keep/drop decisions", "same_decisions", target="== true"),
        Figure("ours alone, 5K instructions: per s", "ours_5k_per_s", optional=True),
        Figure("ours alone, 20K instructions: per s", "ours_20k_per_s", optional=True),
        Figure("ours alone, 100K instructions: per s", "ours_100k_per_s", optional=True),
    ],
    "evaluate": [
        Figure("ARC-Easy items/s, 0-shot", "jax_items_per_s", "lm-eval `hf` backend", "lmeval_items_per_s",
               "speedup", target=">= 3x"),
        Figure("same answers", "same_answers", target="== true"),
    ],
    "decode": [
        Figure("greedy decode tokens/s, SmolLM2 16 x 128", "jax_tokens_per_s", "`transformers` `generate`",
               "torch_tokens_per_s", "speedup", target=">= 2x"),
        Figure("weight reads / copy bandwidth", "bandwidth_share", unit="%"),
        Figure("our decode step, ms per token", "jax_step_ms", unit="ms"),
        Figure("its weight matmuls alone (the floor), ms per token", "matmul_floor_ms", unit="ms"),
        Figure("speedup ceiling (torch step / our matmul floor)", "speedup_ceiling", unit="x"),
        Figure("decode tokens/s, 1B bf16 batch 64 (GPU/TPU)", "accelerator_1b.tokens_per_s", accelerator=True),
        Figure("weight reads / copy bandwidth, 1B (GPU/TPU)", "accelerator_1b.bandwidth_share", unit="%",
               target=">= 50%", accelerator=True),
    ],
}


def load_registry(path: Path | None) -> dict[str, list[Figure]]:
    """The built-in registry, with the entries of a JSON file ``{name: [{Figure fields}, ...]}`` replacing its own."""
    registry = dict(REGISTRY)
    if path is not None:
        for name, figures in json.loads(path.read_text()).items():
            registry[name] = [Figure(**f) for f in figures]
    return registry


# ------------------------------------------------------------------------------------------------ figures
def pull(obj, path: str):
    """The value at a dotted ``path`` of nested dicts, or None."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def parse_target(target: str) -> tuple[str, float | bool]:
    """``">= 2x"`` -> (">=", 2.0); ``">= 50%"`` -> (">=", 0.5); ``"== true"`` -> ("==", True)."""
    m = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*(true|false|[0-9]*\.?[0-9]+)\s*(x|%)?\s*", target)
    if m is None:
        raise ValueError(f"bad target {target!r}: expected OP VALUE[x|%], e.g. '>= 2x', '>= 50%', '== true'")
    op, value, suffix = m.groups()
    if value in ("true", "false"):
        return op, value == "true"
    return op, float(value) / (100 if suffix == "%" else 1)


def meets(value, target: str) -> bool:
    op, want = parse_target(target)
    if value is None or isinstance(want, bool) != isinstance(value, bool):
        return False
    return {">=": value >= want, "<=": value <= want, ">": value > want, "<": value < want, "==": value == want}[op]


def figures(raw: dict, registered: list[Figure]) -> list[dict]:
    """One row per registered figure (optional ones only when reported): values, ratio, target and met."""
    rows = []
    for f in registered:
        ours, theirs = pull(raw, f.ours), pull(raw, f.theirs) if f.theirs else None
        if (f.optional or f.accelerator) and ours is None:
            continue
        ratio = pull(raw, f.ratio) if f.ratio else None
        if ratio is None and not f.ratio and _number(ours) and _number(theirs) and theirs:
            ratio = ours / theirs
        checked = ratio if f.theirs else ours
        rows.append({"figure": f.name, "key": f.ours, "peer": f.peer if theirs is not None else "", "ours": ours,
                     "theirs": theirs, "ratio": ratio, "target": f.target, "unit": f.unit,
                     "met": meets(checked, f.target) if f.target else None})
    return rows


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ----------------------------------------------------------------------------------------------- running
def discover(bench_dir: Path, registry: dict) -> list[str]:
    """Benchmark names in the folder: the registry's order first, then the rest alphabetically."""
    names = {p.stem for p in bench_dir.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")}
    return [n for n in registry if n in names] + sorted(names - set(registry))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def last_json(stdout: str) -> dict | None:
    try:
        obj = json.loads(last_line(stdout))
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def run_one(script: Path, quick: bool, timeout: float, *, accelerator: bool = False) -> dict:
    """Run one benchmark in a session of its own, JAX on the CPU (``accelerator``: its ``--accelerator`` run, JAX
    on its default backend); {status, seconds, reason, raw, stderr_tail}."""
    cmd = [sys.executable, str(script), "--json", *(["--quick"] if quick else []),
           *(["--accelerator"] if accelerator else [])]
    env = dict(os.environ) if accelerator else {**os.environ, "JAX_PLATFORMS": "cpu"}
    load_before, start = os.getloadavg()[0], time.perf_counter()
    # Its own session, so that a timeout kills its workers too (dedup's process pool) and frees the pipes.
    proc = subprocess.Popen(cmd, cwd=script.parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        reason = ""
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        reason = f"timed out after {timeout:g} s"
    except BaseException:  # Ctrl-C: the child is in another session and would not get it
        _kill_group(proc)
        raise
    seconds = time.perf_counter() - start
    raw = last_json(out)
    if not reason and proc.returncode != 0:
        reason = f"exit {proc.returncode}: {last_line(err) or last_line(out) or '(no output)'}"
    elif not reason and raw is None:
        reason = "no JSON object on the last stdout line" + (f"; stderr: {last_line(err)}" if last_line(err) else "")
    return {"status": "failed" if reason else "ok", "seconds": round(seconds, 1), "reason": reason,
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # as it started and ended
            "raw": None if reason else raw, "stderr_tail": err.splitlines()[-20:] if reason else []}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def machine() -> dict:
    """CPU model, cores, and JAX's version and backend (asked of a child process, so that this one holds no
    accelerator memory while the benchmarks run)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_avg_1min": round(os.getloadavg()[0], 2), "commit": _git("rev-parse", "--short", "HEAD")}
    probe = ("import jax, json; "
             "print(json.dumps([jax.__version__, jax.default_backend(), jax.devices()[0].device_kind]))")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300).stdout
        info["jax"], info["backend"], info["device"] = json.loads(last_line(out))
    except (subprocess.TimeoutExpired, json.JSONDecodeError, ValueError):
        info["jax"] = info["backend"] = info["device"] = "unknown"
    return info


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ----------------------------------------------------------------------------------------------- the table
def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _number(value):
        return str(value)
    if unit == "%":
        return f"{100 * value:.1f}%"
    if unit == "x":
        return fmt_ratio(value)
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{text} {unit}" if unit else text


def fmt_ratio(ratio) -> str:
    return "-" if not _number(ratio) else f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def markdown(results: dict) -> str:
    """The machine line, one table row per figure (one per failed benchmark), and the wall time of each."""
    m = results["machine"]
    accelerator = m["backend"] not in ("cpu", "unknown")
    lines = [f"{results['mode'].capitalize()} run{' (a subset)' if results['partial'] else ''}, {m['date']}"
             f"{', commit ' + m['commit'] if m.get('commit') else ''}: {m['cpu']}, {m['cores']} cores, "
             f"JAX {m['jax']} on {m['backend']}{' (' + m['device'] + ')' if accelerator else ''}, "
             f"Python {m['python']}." + (" Side-by-side comparisons ran on the CPU, the GPU/TPU rows on the device."
                                         if accelerator else ""), "",
             "| benchmark | figure | peer | ours | peer's | ratio | target | met |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for b in results["benchmarks"]:
        name = b["name"]
        if b["status"] != "ok":
            lines.append(f"| {name} | FAILED: {_cell(b['reason'])} | - | - | - | - | - | **FAILED** |")
            continue
        if not b["figures"]:
            lines.append(f"| {name} | (no figures registered; see the JSON) | - | - | - | - | - | n/a |")
        for f in b["figures"]:
            met = "n/a" if f["met"] is None else "yes" if f["met"] else "**no**"
            ours = "missing" if f["ours"] is None else fmt(f["ours"], f["unit"])
            lines.append(f"| {name} | {f['figure']} | {f['peer'] or '-'} | {ours} | {fmt(f['theirs'], f['unit'])} | "
                         f"{fmt_ratio(f['ratio'])} | {f['target'] or '-'} | {met} |")
        run = b.get("accelerator_run")
        if run and run["status"] != "ok":
            lines.append(f"| {name} | FAILED (GPU/TPU case): {_cell(run['reason'])} | - | - | - | - | - | **FAILED** |")
    times = ", ".join(f"{b['name']} {b['seconds']:.0f} s{_load(b)}{'' if b['status'] == 'ok' else ' (failed)'}"
                      for b in results["benchmarks"])
    load = any(b.get("load_avg_1min") for b in results["benchmarks"])
    lines += ["", "Ratios are ours over the peer's (for times, the peer's time over ours). Wall time"
              + (" (and the 1-minute load average as each ended, its own threads included)" if load else "")
              + f": {times}."]
    return "\n".join(lines) + "\n"


def _load(b: dict) -> str:
    return f" (load {b['load_avg_1min'][1]:.1f})" if b.get("load_avg_1min") else ""


def _cell(text: str, width: int = 160) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def update_readme(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {readme} has no {README_START} ... {README_END} block")
    atomic_write_text(readme, text[:start + len(README_START)] + "\n" + block + text[end:])


def summary(results: dict) -> tuple[list[str], list[str]]:
    """(failed benchmarks, "benchmark: figure" that missed their target)."""
    failed = [b["name"] for b in results["benchmarks"] if b["status"] != "ok"]
    failed += [f"{b['name']} (GPU/TPU case)" for b in results["benchmarks"]
               if b.get("accelerator_run") and b["accelerator_run"]["status"] != "ok"]
    missed = [f"{b['name']}: {f['figure']}" for b in results["benchmarks"] for f in b["figures"] if f["met"] is False]
    return failed, missed


# ----------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="each benchmark's --quick size")
    p.add_argument("--only", default="", help="comma-separated benchmark names to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated benchmark names not to run")
    p.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 1800; quick 300)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a benchmark failed or missed its target")
    p.add_argument("--bench-dir", type=Path, default=ROOT / "benchmarks", help="folder of benchmark scripts")
    p.add_argument("--registry", type=Path, default=None,
                   help="JSON {name: [figure, ...]} whose entries replace the built-in registry's")
    p.add_argument("--out-json", type=Path, default=ROOT / "benchmarks" / "results.json")
    p.add_argument("--out-md", type=Path, default=ROOT / "benchmarks" / "results.md")
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the README's results block (full runs of every benchmark only)")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--from-results", type=Path, default=None,
                   help="run nothing: rebuild the tables from this results JSON's raw outputs")
    return p.parse_args(argv)


def select(args: argparse.Namespace, registry: dict) -> list[str]:
    names = discover(args.bench_dir, registry)
    only, skip = ({n for n in s.split(",") if n} for s in (args.only, args.skip))
    unknown = (only | skip) - set(names)
    if unknown:
        raise SystemExit(f"error: no such benchmark {', '.join(sorted(unknown))} in {args.bench_dir} "
                         f"(have: {', '.join(names)})")
    return [n for n in names if (not only or n in only) and n not in skip]


def run_suite(args: argparse.Namespace, registry: dict) -> dict:
    names = select(args, registry)
    timeout = args.timeout or (300 if args.quick else 1800)
    results = {"mode": "quick" if args.quick else "full", "partial": bool(args.only or args.skip),
               "timeout_s": timeout, "machine": machine(), "benchmarks": []}
    on_device = results["machine"]["backend"] not in ("cpu", "unknown")
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", end=" ", flush=True)
        b = run_one(args.bench_dir / f"{name}.py", args.quick, timeout)
        print(f"{b['status']}, {b['seconds']:.1f} s" + (f": {b['reason']}" if b["reason"] else ""), flush=True)
        if on_device and any(f.accelerator for f in registry.get(name, [])):
            print(f"[{i}/{len(names)}] {name} --accelerator ...", end=" ", flush=True)
            run = run_one(args.bench_dir / f"{name}.py", args.quick, timeout, accelerator=True)
            print(f"{run['status']}, {run['seconds']:.1f} s" + (f": {run['reason']}" if run["reason"] else ""),
                  flush=True)
            if run["status"] == "ok" and b["status"] == "ok":
                b["raw"] = {**b["raw"], **run.pop("raw")}
            b["accelerator_run"] = run
        results["benchmarks"].append({"name": name, **b})
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    registry = load_registry(args.registry)
    if args.from_results:
        results = json.loads(args.from_results.read_text())
    else:
        results = run_suite(args, registry)
    for b in results["benchmarks"]:
        b["figures"] = figures(b["raw"], registry.get(b["name"], [])) if b["status"] == "ok" else []
    failed, missed = summary(results)
    results["failed"], results["missed_targets"] = failed, missed
    table = markdown(results)
    atomic_write_json(args.out_json, results)
    atomic_write_text(args.out_md, "# Benchmark results\n\n" + table)
    print("\n" + table, end="")
    print(f"failed: {', '.join(failed) or 'none'}; missed targets: {'; '.join(missed) or 'none'}")
    if args.update_readme:
        if results["mode"] != "full" or results["partial"]:
            print("README not updated: it shows full runs of every benchmark only", file=sys.stderr)
        else:
            update_readme(args.readme, table)
    return 1 if args.strict and (failed or missed) else 0


if __name__ == "__main__":
    sys.exit(main())
