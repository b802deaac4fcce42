"""The dataset stage: a trained policy evolves seed instructions, filters drop what is not worth an answer,
and the responder (the expert LLM) answers the rest; one Alpaca record per kept instruction.

The seeds are walked in file order, ``chains`` at a time. For each batch of chains, at each step:

1. the policy picks one operation per chain (``PolicyActor``);
2. one batched instructor call rewrites every chain's instruction (``InstructionEnv.step_chains`` without a
   reviewer: the environment's own checks decide whether a rewrite is usable, and a usable rewrite becomes
   the chain's instruction, as in training);
3. the dataset filters, in chain order: the environment's elimination checks (format failures always, the
   WizardLM checks when ``eliminate``), length bounds in words, and the near-duplicate filter (ROUGE-L
   against every instruction accepted before it, Self-Instruct's rule);
4. one batched responder call answers the accepted instructions; an empty answer, or one cut at the token
   cap, is dropped; the rest are appended to ``data.jsonl`` and flushed, record by record.

The responder call of a step runs while the instructor call of the next step is made (a worker thread), and
its records are written before the next step's: the file's order never depends on timing.

Resume: every LLM call goes through the completion cache, and every random draw depends only on (seed, batch,
step), so a rerun replays the same run from the first batch with every known answer a cache hit. The records
already in ``data.jsonl`` are checked against the replay (a difference is an error: the inputs changed) and
only the rest are appended. A torn last line left by a kill is dropped first. So after a kill -9 at any
point, ``--resume`` gives the same file as an uninterrupted run, with no record twice and none lost.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from teamsrl_jax.backends import Backend, Completion, SamplingParams
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv, run_step
from teamsrl_jax.env.reward import ELIMINATION_REASONS
from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE, Seed, SeedPool, read_seeds
from teamsrl_jax.env.text import words
from teamsrl_jax.fileio import atomic_write_json, atomic_write_text
from teamsrl_jax.generate.config import BACKEND_RESUME_KEYS, RESUME_KEYS, GenerateConfig
from teamsrl_jax.generate.dedup import NearDuplicateFilter
from teamsrl_jax.generate.policy import PolicyActor, read_run
from teamsrl_jax.train_policy.config import TrainConfig
from teamsrl_jax.train_policy.loop import env_config

FILTER_REASONS = ("too_short", "too_long", "near_duplicate", "empty_response", "truncated_response")
"""Drops of the dataset stage besides the environment's elimination reasons (``ELIMINATION_REASONS``)."""
DROP_REASONS = (*ELIMINATION_REASONS, *FILTER_REASONS)


def unique_seeds(path: str | None) -> list[Seed]:
    """The seeds of ``path`` (None: the bundled default set) in file order, repeated texts once."""
    out: dict[str, Seed] = {}
    for s in read_seeds(DEFAULT_SEED_FILE if path is None else path):
        out.setdefault(s.text, s)
    return list(out.values())


def generation_env_config(train: TrainConfig, cfg: GenerateConfig, chains: int) -> EnvConfig:
    """The training environment's preset, features and operations; ``chains`` fresh chains, ``cfg.steps``
    steps, no reviewer bonus, the elimination checks as ``cfg`` asks, the instructor sampling overrides."""
    instructor: dict[str, Any] = {}
    if cfg.instructor_temperature is not None:
        instructor["temperature"] = cfg.instructor_temperature
    if cfg.instructor_max_tokens is not None:
        instructor["max_tokens"] = cfg.instructor_max_tokens
    overrides: dict[str, Any] = {"num_chains": chains, "reset_chains": "fresh_seeds", "held_out_fraction": 0.0,
                                 "seed_file": None, "reward": {"eliminate": cfg.eliminate, "novelty_weight": 0.0}}
    if instructor:
        overrides["instructor"] = instructor
    if cfg.steps is not None:
        overrides["horizon"] = cfg.steps
    base = env_config(train)
    if train.instructor_max_tokens is not None and "max_tokens" not in instructor:
        overrides.setdefault("instructor", {})["max_tokens"] = train.instructor_max_tokens
    return EnvConfig.from_preset(train.preset, **{**_env_fields(base), **overrides})


def _env_fields(config: EnvConfig) -> dict[str, Any]:
    """The fields of a built EnvConfig that a preset does not fix (features, operations, ...)."""
    return {k: getattr(config, k) for k in ("features", "feature_dim", "encoder_path", "operations_file",
                                             "operations_mode", "seed")}


class DataFile:
    """``data.jsonl``, appended and flushed record by record; on resume, the records already there are
    checked against the replay instead of written again."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.existing: list[str] = []
        if resume and path.exists():
            lines = path.read_text(encoding="utf-8").split("\n")
            for i, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    if i == len(lines):  # the write a kill interrupted (no newline after it)
                        break
                    raise ValueError(f"{path}:{i}: invalid JSON ({e.msg})") from None
                self.existing.append(line)
            atomic_write_text(path, "".join(line + "\n" for line in self.existing))
        elif path.exists():
            path.unlink()
        self.count = 0
        self._file = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        if self.count < len(self.existing):
            if json.loads(self.existing[self.count]) != json.loads(line):
                raise ValueError(f"{self.path}:{self.count + 1}: the record there differs from the replay of this "
                                 "run (its seeds, policy or backends changed); start a new --out")
        else:
            self._file.write(line + "\n")
            self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


@dataclasses.dataclass
class _Candidate:
    chain: int
    seed_id: int
    step: int
    instruction: str
    parent: str
    operations: list[str]


@dataclasses.dataclass
class RoleCounts:
    """Logical requests of one role in this run (a resumed run counts what it replayed from the cache too)."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            self.requests += 1
            self.cache_hits += bool(c.cached)
            self.prompt_tokens += c.prompt_tokens or 0
            self.completion_tokens += c.completion_tokens or 0


class Generation:
    """One run folder of the dataset stage (see the module docstring)."""

    def __init__(self, cfg: GenerateConfig, out: str | Path, instructor: Backend, responder: Backend, *,
                 resume: bool = False):
        self.cfg, self.out, self.instructor, self.responder = cfg, Path(out), instructor, responder
        config_path = self.out / "config.json"
        if resume and config_path.exists():
            _check_resume(config_path, cfg)
        elif not resume and (self.out / "data.jsonl").exists():
            raise ValueError(f"{self.out}: run folder already holds a dataset; pass --resume or choose a new --out")
        self.train = read_run(cfg.policy)
        self.seeds = unique_seeds(cfg.seeds if cfg.seeds is not None else self.train.seeds)
        self.env = InstructionEnv(generation_env_config(self.train, cfg, min(cfg.chains, len(self.seeds))),
                                  instructor, seeds=SeedPool(self.seeds))
        self.horizon = self.env.config.horizon
        self.actor = PolicyActor(cfg.policy, self.train, self.env.obs_dim, self.env.operations.names,
                                 schedule=cfg.schedule, greedy=cfg.greedy, seed=cfg.seed,
                                 chains=self.env.config.num_chains)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(config_path, cfg.to_dict())
        self.data = DataFile(self.out / "data.jsonl", resume)
        self.resumed_records = len(self.data.existing)
        self.dedup = (NearDuplicateFilter(cfg.dedup_threshold, vocabulary=[s.text for s in self.seeds])
                      if cfg.dedup_threshold is not None else None)
        self.responder_params = SamplingParams(temperature=cfg.responder_temperature, top_p=cfg.responder_top_p,
                                               max_tokens=cfg.responder_max_tokens, system=cfg.responder_system)
        self.drops: Counter = Counter()
        self.chosen = [Counter() for _ in range(self.horizon)]   # step -> operation -> chains that chose it
        self.kept_ops = [Counter() for _ in range(self.horizon)]  # step -> operation -> examples written
        self.roles = {"instructor": RoleCounts(), "responder": RoleCounts()}
        self.instruction_words: list[int] = []
        self.response_words: list[int] = []
        self.seeds_used = 0
        self.rewrites = 0
        self._pending = 0  # candidates sent to the responder and not yet written or dropped
        self.provenance = {
            "policy": {"run": str(Path(cfg.policy).resolve()), **self.actor.describe()},
            "instructor": {"backend": instructor.name, "model": instructor.model},
            "responder": {"backend": responder.name, "model": responder.model},
        }

    # -- the loop ------------------------------------------------------------------------------------------

    @property
    def written(self) -> int:
        return self.data.count

    def _room(self) -> int | None:
        """How many more candidates may be sent to the responder (None: no cap)."""
        if self.cfg.max_examples is None:
            return None
        return self.cfg.max_examples - self.written - self._pending

    def run(self, progress: bool = True) -> dict[str, Any]:
        """Walk the seeds (or stop at ``max_examples``); returns the report (also written to report.json)."""
        start = time.perf_counter()
        chains = self.env.config.num_chains
        bar = tqdm(total=len(self.seeds), desc="generate", unit="seed", disable=not progress, dynamic_ncols=True)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="responder")
        pending: tuple[Future, list[_Candidate]] | None = None
        try:
            for batch, first in enumerate(range(0, len(self.seeds), chains)):
                if self._room() is not None and self._room() <= 0 and pending is None:
                    break
                seeds = self.seeds[first:first + chains]
                pending = self._evolve(batch, first, seeds, pool, pending)
                self.seeds_used += len(seeds)
                bar.update(len(seeds))
                bar.set_postfix(examples=self.written, dropped=sum(self.drops.values()),
                                queries=sum(r.requests - r.cache_hits for r in self.roles.values()))
                if self.cfg.max_examples is not None and self.written + self._pending >= self.cfg.max_examples:
                    pending = self._collect(pending)
                    if self.written >= self.cfg.max_examples:
                        break
            pending = self._collect(pending)
        finally:
            pool.shutdown(wait=True)
            bar.close()
            self.data.close()
        if self.written < self.resumed_records:
            raise ValueError(f"{self.data.path}: holds {self.resumed_records} records, the replay of this run "
                             f"makes {self.written}; start a new --out")
        self.wall_time_s = time.perf_counter() - start
        return self.report()

    def _evolve(self, batch: int, first: int, seeds: list[Seed], pool: ThreadPoolExecutor,
                pending: tuple[Future, list[_Candidate]] | None) -> tuple[Future, list[_Candidate]] | None:
        """All steps of one batch of chains; returns the responder call still in flight."""
        n = len(seeds)
        env = self.env
        if n != env.config.num_chains:  # the last, shorter batch
            env = InstructionEnv(dataclasses.replace(env.config, num_chains=n), self.instructor,
                                 seeds=env.seed_pool, operations=env.operations)
        obs = env.reset(seeds=seeds)
        paths: list[list[str]] = [[] for _ in range(n)]
        for t in range(self.horizon):
            room = self._room()
            if room is not None and room <= 0:
                break
            actions = self.actor(obs, batch, t)
            obs, _, _, info = run_step(env.step_chains(0, n, actions, review=False), _Counting(self))
            env.pop_records()
            candidates = []
            for i in range(n):
                op = info["operations"][i]
                self.chosen[t][op] += 1
                self.rewrites += 1
                if info["eliminated"][i]:
                    self.drops[info["eliminated"][i]] += 1
                    continue
                paths[i].append(op)
                text = info["rewrites"][i]
                reason = self._filter(text)
                if reason:
                    self.drops[reason] += 1
                    continue
                room = self._room()
                if room is not None and room - len(candidates) <= 0:
                    continue  # enough examples are on their way; the rest of this step is not needed
                candidates.append(_Candidate(i, first + i, t + 1, text, info["parents"][i], list(paths[i])))
            pending = self._collect(pending)
            self._pending = len(candidates)
            pending = (pool.submit(self._respond, candidates), candidates) if candidates else None
        return pending

    def _filter(self, text: str) -> str:
        """The dataset filters after the environment's checks: "" keeps ``text`` (and remembers it)."""
        count = len(words(text))
        if count < self.cfg.min_words:
            return "too_short"
        if count > self.cfg.max_words:
            return "too_long"
        if self.dedup is not None and not self.dedup.offer(text)[0]:
            return "near_duplicate"
        return ""

    def _respond(self, candidates: list[_Candidate]) -> list[Completion]:
        replies = self.responder.generate([c.instruction for c in candidates], self.responder_params,
                                          role="responder")
        if len(replies) != len(candidates):
            raise RuntimeError(f"responder backend returned {len(replies)} completions for {len(candidates)} prompts")
        return replies

    def _collect(self, pending: tuple[Future, list[_Candidate]] | None) -> None:
        """Wait for the responder call in flight and write its records in chain order."""
        if pending is None:
            return None
        future, candidates = pending
        replies = future.result()
        self.roles["responder"].add(replies)
        for c, reply in zip(candidates, replies):
            if not reply.text.strip():
                self.drops["empty_response"] += 1
            elif reply.finish_reason == "length" and not self.cfg.keep_truncated:
                self.drops["truncated_response"] += 1
            else:
                self._write(c, reply)
        self._pending = 0
        return None

    def _write(self, c: _Candidate, reply: Completion) -> None:
        seed = self.seeds[c.seed_id]
        record = {
            "instruction": c.instruction, "input": "", "output": reply.text,
            "id": f"{c.seed_id}-{c.step}", "seed_id": c.seed_id, "seed": seed.text, "seed_source": seed.source,
            "step": c.step, "operation": c.operations[-1], "operations": c.operations, "parent": c.parent,
            **self.provenance, "response_finish_reason": reply.finish_reason,
        }
        self.data.write(record)
        self.kept_ops[c.step - 1][c.operations[-1]] += 1
        self.instruction_words.append(len(words(c.instruction)))
        self.response_words.append(len(words(reply.text)))

    # -- the report ----------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        from teamsrl_jax.generate.report import build_report
        return build_report(self)


class _Counting(Backend):
    """Passes the instructor calls through, counting them for the report."""

    def __init__(self, run: Generation):
        self._run, inner = run, run.instructor
        self.name, self.model, self.accounting = inner.name, inner.model, inner.accounting

    def generate(self, prompts, params, role, sample_indices=None):
        replies = self._run.instructor.generate(prompts, params, role, sample_indices)
        self._run.roles[role].add(replies)
        return replies


def _check_resume(path: Path, cfg: GenerateConfig) -> None:
    saved = json.loads(path.read_text(encoding="utf-8"))
    for key in RESUME_KEYS:
        if saved.get(key) != getattr(cfg, key):
            raise ValueError(f"{path}: --resume with a different {key} ({saved.get(key)!r} saved, "
                             f"{getattr(cfg, key)!r} now)")
    now = {"backend": cfg.backend.to_dict(), "responder": cfg.responder_backend.to_dict()}
    saved_responder = saved.get("responder") or saved["backend"]
    for role, before in (("backend", saved["backend"]), ("responder", saved_responder)):
        for key in BACKEND_RESUME_KEYS:
            if before.get(key) != now[role].get(key):
                raise ValueError(f"{path}: --resume with a different {role}.{key} ({before.get(key)!r} saved, "
                                 f"{now[role].get(key)!r} now)")
