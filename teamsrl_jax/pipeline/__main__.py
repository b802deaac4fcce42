"""``python -m teamsrl_jax.pipeline``: the whole method, from seed instructions to an evaluated model.

    python -m teamsrl_jax.pipeline --eval-data ../shared/data/eval            # the default run (~8 min, 2 cores)
    python -m teamsrl_jax.pipeline --config experiments/quick.yaml --out runs/quick --eval-data ../shared/data/eval
    python -m teamsrl_jax.pipeline --config experiments/server.yaml --out runs/server   # every role on a server
    python -m teamsrl_jax.pipeline --out runs/pipeline --resume               # after a crash or kill -9

Stages (see ``teamsrl_jax.pipeline.stages``): base model, policy training, generation, hold-out split, SFT,
evaluation before and after, membership inference, dataset report, ``report.md``.
"""

from __future__ import annotations

import argparse
import sys

from teamsrl_jax.cli import main_guard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m teamsrl_jax.pipeline", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="YAML pipeline config (default: the built-in default run)")
    p.add_argument("--out", default="runs/pipeline", help="run folder")
    p.add_argument("--eval-data", default=None,
                   help="ARC / HellaSwag files in the original layouts (e.g. ../shared/data/eval)")
    p.add_argument("--resume", action="store_true", help="skip finished stages, resume the interrupted one")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        from teamsrl_jax.pipeline.config import load
        from teamsrl_jax.pipeline.stages import Pipeline

        cfg = load(args.config, eval_data=args.eval_data)
        pipeline = Pipeline(cfg, args.out, resume=args.resume, progress=args.progress)
        pipeline.run()
        print(f"report: {pipeline.out / 'report.md'}")

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
