"""``python -m teamsrl_jax.sft``: supervised fine-tuning of a Llama-family model on instruction data.

    python -m teamsrl_jax.sft --preset tiny --data FILE --out DIR --max-steps 20
    python -m teamsrl_jax.sft --config experiments/sft_llama2_7b.yaml --model PATH --data FILE --out DIR \\
        --mesh fsdp=-1 [--resume]

Every SFTConfig field is a flag (``--learning-rate 1e-4``, ``--no-packing``); flags override the YAML
file, which overrides the preset. Bad configuration, data or files (any ValueError or OSError) fail with
one line ``error: ...`` and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing

from teamsrl_jax.cli import field_docs, main_guard
from teamsrl_jax.sft.config import SFTConfig, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m teamsrl_jax.sft", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file of SFTConfig fields (e.g. experiments/sft_tiny.yaml)")
    docs = field_docs(SFTConfig)
    hints = typing.get_type_hints(SFTConfig)
    for field in dataclasses.fields(SFTConfig):
        flag = "--" + field.name.replace("_", "-")
        kw = dict(dest=field.name, default=None, help=f"{docs.get(field.name, '')} (default: {field.default!r})")
        hint = hints[field.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            optional = isinstance(hint, types.UnionType)
            parser.add_argument(flag, metavar=field.name.upper() if not optional else "VALUE", **kw)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    yaml_path = args.pop("config")
    overrides = {k: v for k, v in args.items() if v is not None}
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def run() -> None:
        from teamsrl_jax.model.sharding import maybe_initialize_distributed

        cfg = load_config(yaml_path, overrides)
        maybe_initialize_distributed()  # multi-host (TPU pods, SLURM): before anything touches devices
        from teamsrl_jax.sft.trainer import train

        summary = train(cfg)
        print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in summary.items() if v is not None))

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
