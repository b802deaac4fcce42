"""``report.md``: the figures that matter, side by side, with the stages' plots beside it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teamsrl_jax.fileio import atomic_write_bytes, atomic_write_text, read_jsonl

if TYPE_CHECKING:
    from teamsrl_jax.pipeline.stages import Pipeline


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.3f} [{lo:.3f}, {hi:.3f}] (n={s['n']})"


def plot_sft_loss(metrics: Path, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_jsonl(metrics) if "loss" in r] if metrics.exists() else []
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o", ms=3, label="train loss")
    evals = [r for r in read_jsonl(metrics) if "eval_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], marker="s", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_title("SFT")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_report(p: Pipeline) -> Path:
    out, cfg = p.out, p.cfg
    s = {name: p.summary(name) for name in p.state["stages"] if p.state["stages"][name]["status"] == "done"}
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for src, dst in ((out / "policy" / "training.png", "reward_curve.png"), (out / "data" / "operations.png",
                     "operations.png"), (out / "mia" / "roc.png", "roc.png"), (out / "data" / "lengths.png",
                     "lengths.png")):
        if src.exists():
            shutil.copyfile(src, plots / dst)
    plot_sft_loss(out / "sft" / "metrics.jsonl", plots / "sft_loss.png")

    lines = [f"# TeaMs-RL pipeline: {cfg.name}", "",
             f"Base model: `{s['base']['path']}`. Seeds: `{cfg.seeds or 'the bundled default set'}`.", ""]
    policy = s.get("policy", {})
    backend = policy.get("backend")
    if backend == "simulated" or cfg.train_policy.get("backend", {}).get("kind") == "simulated":
        from teamsrl_jax.pipeline.stages import SIMULATED_ROLES_NOTE
        lines += [f"> {SIMULATED_ROLES_NOTE}", ""]
    lines += ["## Policy (TRPO) vs uniform random choice, held-out seeds", "",
              "| policy | mean episode return [95% CI] |", "|---|---|"]
    for name, stats in sorted(policy.get("held_out", {}).items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"| {name} | {_ci(stats)} |")
    data = s.get("data", {}).get("report", {})
    lines += ["", "## The dataset", "",
              f"{data.get('examples')} examples from {data.get('seeds_used')} seeds; "
              f"{data.get('rewrites')} rewrites, drops: "
              + ", ".join(f"{k} {v}" for k, v in (data.get("drops") or {}).items() if v) + ".", "",
              "| expert queries | ours | Evol-Instruct scheme |", "|---|---|---|",
              f"| per kept example | {_fmt(data.get('expert_queries_per_example'), 2)} | "
              f"{_fmt((data.get('evol_instruct') or {}).get('queries_per_example'), 2)} |",
              f"| total (this run) | {data.get('expert_queries')} | "
              f"{(data.get('evol_instruct') or {}).get('queries_same_seeds')} (same seeds) |",
              f"| ratio | {100 * (data.get('ratio_vs_evol_instruct_same_seeds') or 0):.1f}% of Evol-Instruct on the same "
              f"seeds | paper: 5.73% of WizardLM's 624K |", ""]
    sft = s.get("sft", {})
    lines += ["## SFT", "", f"{sft.get('steps')} steps; train loss {_fmt(sft.get('first_loss'))} -> "
              f"{_fmt(sft.get('last_loss'))}" + (f"; eval loss {_fmt(sft.get('eval_loss'))}" if sft.get("eval_loss")
                                                 else "") + ".", ""]
    lines += ["## ARC / HellaSwag before and after SFT", ""]
    base, tuned = s.get("eval_base", {}), s.get("eval_sft", {})
    if base.get("skipped") or tuned.get("skipped"):
        lines += [f"Skipped: {base.get('skipped') or tuned.get('skipped')}. Pass `--eval-data DIR` (e.g. "
                  "`../shared/data/eval`) with the original ARC / HellaSwag files.", ""]
    else:
        from teamsrl_jax.evaluate.harness import paired_difference

        lines += ["| task | n-shot | items | metric | base ± stderr | fine-tuned ± stderr | change ± paired stderr "
                  "| items better / worse |", "|---|---|---|---|---|---|---|---|"]
        for task, r in (base.get("results") or {}).items():
            t = (tuned.get("results") or {}).get(task, {})
            n = (base.get("n-samples") or {}).get(task, {}).get("effective")
            for metric in ("acc", "acc_norm"):
                change = paired_difference(out / "eval_base" / f"samples_{task}.jsonl",
                                           out / "eval_sft" / f"samples_{task}.jsonl", metric)
                lines.append(f"| {task} | {base['n-shot'][task]} | {n} | {metric} | "
                             f"{_fmt(r[f'{metric},none'])} ± {_fmt(r[f'{metric}_stderr,none'])} | "
                             f"{_fmt(t.get(f'{metric},none'))} ± {_fmt(t.get(f'{metric}_stderr,none'))} | "
                             f"{change['mean']:+.3f} ± {_fmt(change['stderr'])} | "
                             f"{change['better']} / {change['worse']} |")
        lines += ["", "The change is paired: per item, fine-tuned minus base, so its standard error leaves out how "
                  "hard the items are."]
        lines.append("")
    mia = s.get("mia", {}).get("scores", {})
    lines += ["## Membership inference (members: the SFT examples; nonmembers: held-out generated examples)", "",
              "| score | AUC [95% CI] | TPR at 1% FPR |", "|---|---|---|"]
    for name, m in mia.items():
        ci = m.get("auc_ci95")
        lines.append(f"| {name} | {_fmt(m.get('auc'))}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                     + f" | {_fmt(m.get('tpr_at_1pct_fpr'))} |")
    lines += ["", "## Plots", ""]
    for name, title in (("reward_curve.png", "policy training"), ("operations.png", "operation mix per step"),
                        ("sft_loss.png", "SFT loss"), ("roc.png", "membership-inference ROC"),
                        ("lengths.png", "instruction and response lengths")):
        if (plots / name).exists():
            lines.append(f"![{title}](plots/{name})")
    lines += ["", "Stage folders: `policy/`, `data/`, `split/`, `sft/`, `eval_base/`, `eval_sft/`, `mia/`, "
              "`data_report/` (the dataset beside the seeds). Stage times (s): "
              + ", ".join(f"{k} {v.get('seconds', '-')}" for k, v in s.items()) + "."]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
