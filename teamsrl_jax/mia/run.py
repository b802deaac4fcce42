"""A membership-inference run: read both sets, score every example under the target (and reference)
model, compute the metrics and write ``mia.json``, ``scores.jsonl`` and ``roc.png``."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
from pathlib import Path

import numpy as np

from teamsrl_jax.fileio import atomic_write_json, atomic_write_text
from teamsrl_jax.mia.documents import Document, sft_documents
from teamsrl_jax.mia.metrics import evaluate
from teamsrl_jax.mia.report import format_table, plot_roc
from teamsrl_jax.mia.scores import TokenScorer, TokenStats, member_scores
from teamsrl_jax.sft.records import Record, read_records

SETS = ("member", "nonmember")
ORIENTATION = "higher score = more likely a member (members are the positive class)"


@dataclasses.dataclass
class MIAConfig:
    model: str = ""
    """Target model under attack: a Hugging Face folder or a .gguf file (e.g. the SFT run's OUT/final)."""
    members: str = ""
    """Examples the target was fine-tuned on: Alpaca JSON/JSONL or chat 'messages' JSONL, as the SFT reads."""
    nonmembers: str = ""
    """Held-out examples of the same distribution, same formats."""
    reference: str | None = None
    """Reference model (e.g. the base model before SFT), HF folder or .gguf; adds the 'ref' score."""
    out: str = "runs/mia"
    """Output folder: mia.json, scores.jsonl, roc.png."""
    dtype: str = "float32"
    """Weights and compute dtype ('float32' or 'bfloat16'); log-probabilities are float32 either way."""
    mesh: str = ""
    """Device mesh such as 'data=-1' or 'fsdp=4' (rows split over data x fsdp); '' = one device."""
    batch_size: int = 8
    """Rows per forward pass (batch_size x bucket length x vocabulary float32 logits must fit)."""
    max_length: int = 512
    """Tokens per example, truncated as the SFT truncates: use the SFT run's max_length."""
    limit: int = 0
    """Score only the first N examples of each file (0 = all)."""
    bootstrap: int = 1000
    """Bootstrap rounds for the 95% intervals (0 = none)."""
    seed: int = 0
    """Seed of the bootstrap resampling."""
    min_k: float = 0.2
    """k of Min-K% and Min-K%++: the fraction of lowest-scoring tokens averaged."""
    progress: bool = True
    """Show a progress bar while scoring."""

    def check(self) -> None:
        """ValueError naming the first bad field or missing path."""
        for name in ("model", "members", "nonmembers"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        for name in ("model", "reference"):
            path = getattr(self, name)
            if path and not Path(path).exists():
                raise ValueError(f"{path}: no such model file or folder (--{name})")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if not 0 < self.min_k <= 1:
            raise ValueError(f"min_k must be in (0, 1], got {self.min_k}")
        for name, low in (("batch_size", 1), ("max_length", 2), ("limit", 0), ("bootstrap", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")


def read_set(path: str, limit: int) -> list[Record]:
    """The records of one file (its first ``limit`` when > 0); errors name ``file:line``."""
    records = read_records(path)
    return records[:limit] if limit else records


def score_with(path: str, cfg: MIAConfig, sets: dict[str, list[Record]], mesh, *, desc: str):
    """({set: documents}, {set: token stats}) of every record under the model at ``path``, tokenised by its
    own tokenizer (errors name the record's file and line). The model is dropped before returning."""
    from teamsrl_jax.model import load_pretrained

    model, _, tokenizer = load_pretrained(path, mesh=mesh, dtype=cfg.dtype, param_dtype=cfg.dtype)
    if tokenizer is None:
        raise ValueError(f"{path}: the checkpoint has no tokenizer")
    docs = {}
    for name, records in sets.items():
        source = cfg.members if name == "member" else cfg.nonmembers
        try:
            docs[name] = sft_documents(tokenizer, records, cfg.max_length)
        except ValueError as e:
            msg = str(e)
            raise ValueError(f"{source}:{msg[5:]}" if msg.startswith("line ") else f"{source}: {msg}") from None
    scorer = TokenScorer(model, batch_size=cfg.batch_size, mesh=mesh)
    flat = [d.tokens for name in SETS for d in docs[name]]
    stats = scorer(flat, progress=cfg.progress, desc=desc)
    split = len(docs[SETS[0]])
    del model, scorer
    gc.collect()
    return docs, {SETS[0]: stats[:split], SETS[1]: stats[split:]}


def example_row(set_name: str, index: int, record: Record, doc: Document, stats: TokenStats,
                scores: dict[str, float], ref_stats: TokenStats | None) -> dict:
    """One line of ``scores.jsonl``."""
    row = {"set": set_name, "index": index, "line": record.line,
           "sha256": hashlib.sha256(doc.text.encode("utf-8")).hexdigest()[:16], "text": doc.text[:80],
           "n_tokens": len(doc.tokens), "truncated": len(doc.tokens) < doc.full_length, "nll": stats.loss}
    if ref_stats is not None:
        row["ref_nll"] = ref_stats.loss
    return row | {"scores": {k: v if np.isfinite(v) else None for k, v in scores.items()}}


def run_mia(cfg: MIAConfig) -> dict:
    """The whole run (see the module docstring); returns the content of ``mia.json``."""
    cfg.check()
    sets = {"member": read_set(cfg.members, cfg.limit), "nonmember": read_set(cfg.nonmembers, cfg.limit)}
    mesh = None
    if cfg.mesh:
        from teamsrl_jax.model.sharding import MeshConfig, make_mesh

        mesh = make_mesh(MeshConfig.parse(cfg.mesh))
    docs, stats = score_with(cfg.model, cfg, sets, mesh, desc="target")
    ref = score_with(cfg.reference, cfg, sets, mesh, desc="reference")[1] if cfg.reference else None

    rows, by_score = [], {}
    for name in SETS:
        for i, (record, doc, st) in enumerate(zip(sets[name], docs[name], stats[name])):
            ref_st = ref[name][i] if ref is not None else None
            scores = member_scores(st, doc.text, k=cfg.min_k, ref_loss=None if ref_st is None else ref_st.loss)
            rows.append(example_row(name, i, record, doc, st, scores, ref_st))
            for key, value in scores.items():
                by_score.setdefault(key, {s: [] for s in SETS})[name].append(value)
    metrics = {key: evaluate(v["member"], v["nonmember"], rounds=cfg.bootstrap, seed=cfg.seed)
               for key, v in by_score.items()}

    out = Path(cfg.out)
    result = {
        "orientation": ORIENTATION, "metrics": metrics,
        "model": cfg.model, "reference": cfg.reference, "members": cfg.members, "nonmembers": cfg.nonmembers,
        "n_members": len(sets["member"]), "n_nonmembers": len(sets["nonmember"]),
        "tokens": {name: _token_summary(docs[name]) for name in SETS},
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items()
                     if k not in ("model", "reference", "members", "nonmembers", "out", "progress")},
    }
    atomic_write_json(out / "mia.json", result)
    atomic_write_text(out / "scores.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    plot_roc({k: (np.asarray(v["member"]), np.asarray(v["nonmember"])) for k, v in by_score.items()
              if metrics[k]["auc"] is not None}, metrics, out / "roc.png")
    print(format_table(metrics))
    print(f"results: {out} (mia.json, scores.jsonl, roc.png)")
    return result


def _token_summary(docs: list[Document]) -> dict:
    n = np.array([len(d.tokens) for d in docs])
    return {"mean": float(n.mean()), "max": int(n.max()), "truncated": int(sum(len(d.tokens) < d.full_length
                                                                              for d in docs))}
