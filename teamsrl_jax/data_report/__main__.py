"""``python -m teamsrl_jax.data_report``: compare instruction datasets side by side.

    python -m teamsrl_jax.data_report seeds.jsonl runs/data/data.jsonl --out runs/report
    python -m teamsrl_jax.data_report ours=runs/data/data.jsonl alpaca=alpaca_data.json --limit 5000 --out r

Each DATASET is a file (Alpaca JSON/JSONL, Self-Instruct, WizardLM's test set, chat JSONL), optionally named
as NAME=PATH. Writes ``OUT/report.md`` (printed too), ``OUT/report.json``, ``OUT/lengths.png``,
``OUT/diversity.png``, ``OUT/complexity.png`` and, when some dataset has provenance, ``OUT/operations.png``;
all are computed first and written at the end, each atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from teamsrl_jax.cli import field_docs, main_guard
from teamsrl_jax.data_report.config import ReportConfig
from teamsrl_jax.data_report.readers import dataset_names, parse_dataset_arg, read_dataset
from teamsrl_jax.data_report.report import build_report, format_markdown, format_table
from teamsrl_jax.data_report.stats import dataset_stats, word_counts
from teamsrl_jax.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

PLOTS = ("lengths.png", "diversity.png", "complexity.png", "operations.png")


def build_parser() -> argparse.ArgumentParser:
    doc = field_docs(ReportConfig)
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.data_report", description=__doc__.split("\n")[0])
    p.add_argument("datasets", nargs="+", metavar="DATASET", help="a dataset file, or NAME=PATH")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and the plots")
    p.add_argument("--name", nargs="+", default=None,
                   help="a name per dataset, in order (default: NAME= or the file's stem)")
    p.add_argument("--dedup-threshold", type=float, default=ReportConfig.dedup_threshold,
                   help=doc["dedup_threshold"] + " Default: 0.7.")
    p.add_argument("--limit", type=int, default=None, metavar="N", help=doc["limit"])
    p.add_argument("--seed", type=int, default=ReportConfig.seed, help=doc["seed"] + " Default: 0.")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar over the near-duplicate pass")
    return p


def data_report(paths: list[str], out: str | Path, cfg: ReportConfig, names: list[str] | None = None,
                progress: bool = True) -> dict[str, Any]:
    """The whole command: read every dataset, compute, render, then write the outputs; returns the report."""
    from teamsrl_jax.data_report import plots  # matplotlib only once the inputs have been read

    args = [parse_dataset_arg(a) for a in paths]
    names = dataset_names(args, names)
    datasets = [read_dataset(name, path, cfg.limit, cfg.seed) for name, (_, path) in zip(names, args)]
    stats = [dataset_stats(ds, cfg.dedup_threshold, progress) for ds in datasets]
    report = build_report(stats, cfg)
    counts = [word_counts(ds) for ds in datasets]
    files = {"lengths.png": plots.plot_lengths(names, [c[0] for c in counts], [c[1] for c in counts]),
             "diversity.png": plots.plot_diversity(stats), "complexity.png": plots.plot_complexity(stats)}
    if any(s["operations"] for s in stats):
        files["operations.png"] = plots.plot_operations(stats)
    markdown = format_markdown(report, cfg)

    out = Path(out)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    if "operations.png" not in files:
        (out / "operations.png").unlink(missing_ok=True)  # a stale one from an earlier report in this folder
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", markdown)
    print(format_table(stats, cfg))
    print(f"report: {out} (report.md, report.json, {', '.join(files)})")
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        cfg = ReportConfig(dedup_threshold=args.dedup_threshold, limit=args.limit, seed=args.seed)
        data_report(args.datasets, args.out, cfg, args.name, progress=args.progress)

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
