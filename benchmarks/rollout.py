"""Throughput of policy training with the LLM in the loop, and the share of time spent outside the LLM calls.

The simulated backend is given a fixed latency per request (default 50 ms) and a concurrency (default 64), so
a batch of N requests takes ceil(N / 64) x 50 ms, as a real server with 64 slots would. For 32, 128 and 512
parallel chains the script runs whole training iterations (collect one episode of every chain, then the
GAE + value fit + TRPO update) after one warm-up iteration (compilation), and reports:

- ``steps_per_s``: chain-steps (one operation applied to one instruction) per second of wall time;
- ``overhead_fraction``: 1 - (time inside the backend's ``generate``) / (wall time), i.e. the share spent in
  the policy, state features, reward gates, novelty memory, TRPO and bookkeeping.

    python benchmarks/rollout.py                 # table
    python benchmarks/rollout.py --quick --json  # < 60 s; last line is one JSON object (128-chain figures)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Sequence

from teamsrl_jax.backends import Backend, Completion, SamplingParams
from teamsrl_jax.backends.simulated import SimulatedBackend
from teamsrl_jax.train_policy.config import TrainConfig
from teamsrl_jax.train_policy.loop import Trainer


class TimedBackend(Backend):
    """Delegates to ``inner`` and adds up the wall time spent inside ``generate``."""

    def __init__(self, inner: Backend):
        self.inner, self.name, self.model, self.accounting = inner, inner.name, inner.model, inner.accounting
        self.seconds = 0.0

    def generate(self, prompts: Sequence[str], params: SamplingParams, role,
                 sample_indices: Sequence[int] | None = None) -> list[Completion]:
        start = time.perf_counter()
        try:
            return self.inner.generate(prompts, params, role, sample_indices)
        finally:
            self.seconds += time.perf_counter() - start


def measure(chains: int, iterations: int, latency_s: float, concurrency: int) -> dict[str, float]:
    backend = TimedBackend(SimulatedBackend(latency_s=latency_s, concurrency=concurrency))
    cfg = TrainConfig(iterations=iterations + 1, num_chains=chains, eval_episodes=0, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, backend)
        trainer.step()                                   # warm-up: compiles act and learn for this shape
        backend.seconds = 0.0
        start = time.perf_counter()
        for _ in range(iterations):
            trainer.step()
        wall = time.perf_counter() - start
        trainer.close()
    steps = chains * trainer.env.config.horizon * iterations
    return {"chains": chains, "steps_per_s": steps / wall, "overhead_fraction": 1.0 - backend.seconds / wall,
            "wall_s": wall, "backend_s": backend.seconds, "iterations": iterations}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per chain count")
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request of the simulated backend")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="2 timed iterations per chain count (< 60 s)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    iterations = 2 if args.quick else args.iterations
    results = [measure(n, iterations, args.latency, args.concurrency) for n in args.chains]
    print(f"latency {args.latency * 1000:.0f} ms/request, concurrency {args.concurrency}, "
          f"{iterations} timed iterations after 1 warm-up")
    print(f"{'chains':>8}{'steps/s':>12}{'overhead':>10}{'wall s':>9}{'backend s':>11}")
    for r in results:
        print(f"{r['chains']:>8}{r['steps_per_s']:>12.1f}{r['overhead_fraction']:>10.1%}{r['wall_s']:>9.2f}"
              f"{r['backend_s']:>11.2f}")
    if args.json:
        main_row = next((r for r in results if r["chains"] == 128), results[0])
        print(json.dumps({"steps_per_s": main_row["steps_per_s"], "overhead_fraction": main_row["overhead_fraction"],
                          "chains": main_row["chains"], "latency_s": args.latency, "concurrency": args.concurrency,
                          "by_chains": {str(r["chains"]): r for r in results}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
