"""Throughput of policy training with the LLM in the loop, and the share of time spent outside the LLM calls.

The simulated backend is given a fixed latency per request (default 50 ms) and a concurrency (default 64): its
requests share one pool of 64 slots, each held for 50 ms, so a batch of N requests alone takes
ceil(N / 64) x 50 ms, as on a real server with 64 slots, and two groups' batches in flight together do not get
twice the slots. For 32, 128 and 512 parallel chains the script runs whole training iterations (collect one
episode of every chain, then the GAE + value fit + TRPO update) after two warm-up iterations (compilation), with
the chains pipelined in ``--groups`` groups, plus one sequential row (all chains stepped together) at 128
chains for comparison. It reports:

- ``steps_per_s``: chain-steps (one operation applied to one instruction) per second of wall time;
- ``overhead_fraction``: 1 - (time during which at least one backend call is in flight) / (wall time): the
  share of wall time in which the server had nothing to do because we were busy with the policy, state
  features, reward gates, novelty memory, TRPO or bookkeeping. The in-flight time is the union of the
  calls' intervals, not their sum (calls of two groups overlap);
- ``learn_fraction``: the part of that overhead spent in the update (GAE + value fit + TRPO), which no
  rollout pipelining can hide: the next actions need the updated policy.

    python benchmarks/rollout.py                 # table
    python benchmarks/rollout.py --quick --json  # < 60 s; last line is one JSON object (128-chain figures)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from typing import Sequence

import jax

from teamsrl_jax.backends import Backend, Completion, SamplingParams
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.train_policy.config import TrainConfig
from teamsrl_jax.train_policy.loop import Trainer


class TimedBackend(Backend):
    """Delegates to ``inner`` and measures the union of the intervals during which a call is in flight."""

    def __init__(self, inner: Backend):
        self.inner, self.name, self.model, self.accounting = inner, inner.name, inner.model, inner.accounting
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0

    def generate(self, prompts: Sequence[str], params: SamplingParams, role,
                 sample_indices: Sequence[int] | None = None) -> list[Completion]:
        with self._lock:
            if self._in_flight == 0:
                self._since = time.perf_counter()
            self._in_flight += 1
        try:
            return self.inner.generate(prompts, params, role, sample_indices)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self.seconds += time.perf_counter() - self._since


def measure(chains: int, groups: int, iterations: int, latency_s: float, concurrency: int) -> dict[str, float]:
    backend = TimedBackend(SimulatedBackend(latency_s=latency_s, concurrency=concurrency))
    cfg = TrainConfig(iterations=iterations + 2, num_chains=chains, rollout_groups=groups, eval_episodes=0,
                      checkpoint_every=10**6)
    learn_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, backend)
        learn = trainer.agent.learn

        def timed_learn(rollout):
            nonlocal learn_s
            start = time.perf_counter()
            try:
                return learn(rollout)
            finally:
                learn_s += time.perf_counter() - start

        trainer.agent.learn = timed_learn
        for _ in range(2):  # warm-up: compiles act and the policy step, then (during the second) the value fit
            trainer.step()
        backend.seconds = learn_s = 0.0
        start = time.perf_counter()
        for _ in range(iterations):
            trainer.step()
        wall = time.perf_counter() - start
        trainer.close()
    steps = chains * trainer.env.config.horizon * iterations
    return {"chains": chains, "groups": min(groups, chains), "steps_per_s": steps / wall,
            "overhead_fraction": 1.0 - backend.seconds / wall, "learn_fraction": learn_s / wall, "wall_s": wall,
            "backend_s": backend.seconds, "learn_s": learn_s, "iterations": iterations}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", type=int, nargs="+", default=None, help="chain counts (default 32 128 512; "
                   "--quick: 128)")
    p.add_argument("--groups", type=int, default=TrainConfig.rollout_groups, help="pipelined groups of chains")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per row")
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request of the simulated backend")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="128 chains only, 2 timed iterations per row (< 60 s)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    if args.groups < 1 or args.iterations < 1 or args.latency < 0 or args.concurrency < 1:
        p.error("--groups, --iterations and --concurrency must be >= 1 and --latency >= 0")
    iterations = 2 if args.quick else args.iterations
    chain_counts = args.chains or ([128] if args.quick else [32, 128, 512])
    # Rows share jitted shapes (the learn step of the 128-chain rows): compile each once per machine.
    jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "teamsrl_jax_bench_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    rows = [("pipelined", measure(n, args.groups, iterations, args.latency, args.concurrency)) for n in chain_counts]
    if 128 in chain_counts and args.groups > 1:
        rows.append(("sequential", measure(128, 1, iterations, args.latency, args.concurrency)))
    print(f"latency {args.latency * 1000:.0f} ms/request, concurrency {args.concurrency}, "
          f"{iterations} timed iterations after 2 warm-up, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'rollout':>11}{'chains':>8}{'groups':>8}{'steps/s':>10}{'overhead':>10}{'(learn)':>9}{'wall s':>9}"
          f"{'backend s':>11}")
    for kind, r in rows:
        print(f"{kind:>11}{r['chains']:>8}{r['groups']:>8}{r['steps_per_s']:>10.1f}{r['overhead_fraction']:>10.1%}"
              f"{r['learn_fraction']:>9.1%}{r['wall_s']:>9.2f}{r['backend_s']:>11.2f}")
    if args.json:
        pipelined = [r for kind, r in rows if kind == "pipelined"]
        main_row = next((r for r in pipelined if r["chains"] == 128), pipelined[0])
        sequential = next((r for kind, r in rows if kind == "sequential"), None)
        print(json.dumps({"steps_per_s": main_row["steps_per_s"], "overhead_fraction": main_row["overhead_fraction"],
                          "chains": main_row["chains"], "groups": main_row["groups"], "latency_s": args.latency,
                          "concurrency": args.concurrency, "by_chains": {str(r["chains"]): r for r in pipelined},
                          "sequential_128": sequential, "load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
