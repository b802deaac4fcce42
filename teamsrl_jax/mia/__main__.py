"""``python -m teamsrl_jax.mia``: membership inference against a fine-tuned model (MIMIR's scores).

    python -m teamsrl_jax.mia --model runs/sft/final --members train.jsonl --nonmembers heldout.jsonl \\
        --out runs/mia
    python -m teamsrl_jax.mia --model runs/sft/final --reference PATH/base-model --members train.jsonl \\
        --nonmembers heldout.jsonl --max-length 512 --out runs/mia --mesh data=-1 --batch-size 32

Scores every example's SFT text (the tokens the SFT trains on) under the target model (and the reference),
then writes ``OUT/mia.json`` (ROC AUC, TPR at 1% and 0.1% FPR, bootstrap 95% intervals, per score),
``OUT/scores.jsonl`` (every example's scores) and ``OUT/roc.png``, and prints the table. Scores are oriented
higher = more likely a member. Bad input (a missing or malformed file, an empty set, a missing model) fails
with one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import typing

from teamsrl_jax.cli import field_docs, main_guard
from teamsrl_jax.mia.run import MIAConfig


def build_parser() -> argparse.ArgumentParser:
    doc = {k: v.replace("%", "%%") for k, v in field_docs(MIAConfig).items()}  # argparse formats help with %
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.mia", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name in ("model", "members", "nonmembers", "out"):
        p.add_argument(f"--{name}", required=True, help=doc[name])
    p.add_argument("--reference", default=None, help=doc["reference"])
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=MIAConfig.dtype, help=doc["dtype"])
    p.add_argument("--mesh", default=MIAConfig.mesh, help=doc["mesh"])
    hints = typing.get_type_hints(MIAConfig)
    for name in ("batch_size", "max_length", "limit", "bootstrap", "seed", "min_k"):
        p.add_argument(f"--{name.replace('_', '-')}", type=hints[name], default=getattr(MIAConfig, name),
                       help=doc[name])
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from teamsrl_jax.mia.run import run_mia

        run_mia(MIAConfig(**vars(args)))

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
