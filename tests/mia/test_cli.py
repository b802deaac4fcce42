"""``python -m teamsrl_jax.mia`` end to end: a tiny model fine-tuned for many epochs on its members is
caught (LOSS AUC well above chance), the files it writes, the mesh path, and one-line errors with exit 2."""

import json

import numpy as np
import pytest

from teamsrl_jax.mia.__main__ import main
from teamsrl_jax.sft.config import SFTConfig
from teamsrl_jax.sft.trainer import train

from .conftest import make_records, write_jsonl

MAX_LENGTH = 128


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mia_sets")
    records = make_records(48, seed=5)
    return write_jsonl(root / "members.jsonl", records[:24]), write_jsonl(root / "nonmembers.jsonl", records[24:])


@pytest.fixture(scope="module")
def finetuned(sets, tmp_path_factory):
    """The SFT's tiny preset trained on the members only, for many epochs (it memorises their responses)."""
    out = tmp_path_factory.mktemp("mia_sft")
    cfg = SFTConfig(preset="tiny", data=sets[0], out=str(out), max_length=MAX_LENGTH, epochs=40, global_batch_size=8,
                    learning_rate=3e-3, warmup_steps=5, eval_count=0, eval_every=0, checkpoint_every=0,
                    async_checkpoint=False, tensorboard=False, progress=False, tiny_vocab_size=512)
    train(cfg)
    return out / "final"


def test_finetuned_members_are_found(finetuned, sets, tiny_folders, tmp_path, capsys):
    out = tmp_path / "mia"
    rc = main(["--model", str(finetuned), "--reference", str(tiny_folders[0]), "--members", sets[0],
               "--nonmembers", sets[1], "--out", str(out), "--max-length", str(MAX_LENGTH), "--batch-size", "48",
               "--bootstrap", "200", "--no-progress"])
    assert rc == 0
    result = json.loads((out / "mia.json").read_text())
    metrics = result["metrics"]
    assert set(metrics) == {"loss", "zlib", "min_k", "min_k_pp", "ref"}
    assert metrics["loss"]["auc"] > 0.9
    for m in metrics.values():
        assert 0 <= m["auc"] <= 1 and (m["n_members"], m["n_nonmembers"]) == (24, 24)
        lo, hi = m["auc_ci95"]
        assert lo <= m["auc"] <= hi
        for key in ("tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"):
            assert 0 <= m[f"{key}_ci95"][0] <= m[key] <= m[f"{key}_ci95"][1] <= 1
    assert result["settings"]["max_length"] == MAX_LENGTH and result["reference"] == str(tiny_folders[0])

    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["set"] for r in rows] == ["member"] * 24 + ["nonmember"] * 24
    assert [r["index"] for r in rows[:24]] == list(range(24)) and rows[0]["line"] == 1
    for r in rows:
        assert r["scores"]["loss"] == pytest.approx(-r["nll"])
        assert r["scores"]["ref"] == pytest.approx(r["ref_nll"] - r["nll"])
        assert r["text"].startswith("Below is an instruction") and len(r["sha256"]) == 16
    member_nll = np.mean([r["nll"] for r in rows[:24]])
    assert member_nll < np.mean([r["nll"] for r in rows[24:]])
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "LOSS" in printed and "Min-K%++" in printed and f"{metrics['loss']['auc']:.3f}" in printed


def test_mesh_gives_the_same_scores(sets, tiny_folders, tmp_path):
    common = ["--model", str(tiny_folders[0]), "--members", sets[0], "--nonmembers", sets[1], "--limit", "4",
              "--max-length", str(MAX_LENGTH), "--batch-size", "8", "--bootstrap", "0", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "mesh"), "--mesh", "data=-1"]) == 0  # 8 CPU devices
    rows = [[json.loads(line) for line in (tmp_path / d / "scores.jsonl").read_text().splitlines()]
            for d in ("one", "mesh")]
    assert len(rows[0]) == 8
    for a, b in zip(*rows):
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-5)
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-4)


@pytest.mark.parametrize("case, want", [
    ("missing_members", "members.jsonl:0: no such data file"),
    ("malformed", "bad.jsonl:2: malformed JSON"),
    ("empty_nonmembers", "empty.jsonl:1: no records in file"),
    ("empty_array", "empty.json:1: no records in file"),
    ("missing_model", "no such model file or folder (--model)"),
    ("missing_reference", "no such model file or folder (--reference)"),
    ("bad_min_k", "min_k must be in (0, 1]"),
])
def test_bad_input_is_one_line_and_exit_2(case, want, sets, tiny_folders, tmp_path, capsys):
    members, nonmembers, model = sets[0], sets[1], str(tiny_folders[0])
    extra = []
    if case == "missing_members":
        members = str(tmp_path / "members.jsonl")
    elif case == "malformed":
        members = str(tmp_path / "bad.jsonl")
        (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    elif case == "empty_nonmembers":
        nonmembers = str(tmp_path / "empty.jsonl")
        (tmp_path / "empty.jsonl").write_text("\n")
    elif case == "empty_array":
        nonmembers = str(tmp_path / "empty.json")
        (tmp_path / "empty.json").write_text("[]")
    elif case == "missing_model":
        model = str(tmp_path / "nowhere")
    elif case == "missing_reference":
        extra = ["--reference", str(tmp_path / "nowhere.gguf")]
    elif case == "bad_min_k":
        extra = ["--min-k", "0"]
    rc = main(["--model", model, "--members", members, "--nonmembers", nonmembers, "--out", str(tmp_path / "o"),
               "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "\n" not in err and want in err, err
    assert not (tmp_path / "o").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--members", "--nonmembers", "--reference", "--out", "--dtype", "--mesh", "--batch-size",
                 "--max-length", "--limit", "--bootstrap", "--seed", "--min-k"):
        assert flag in text
    assert "Min-K% and Min-K%++" in text
