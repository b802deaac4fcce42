"""metrics.jsonl on resume (torn lines, records past the checkpoint), process 0 only, and the MFU formula."""

import json

import pytest

from teamsrl_jax.sft import metrics
from teamsrl_jax.sft.metrics import MetricsWriter, mfu


def steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_resume_truncation_drops_later_steps_and_a_torn_last_line(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        writer.write(step, {"loss": 1.0 / step})
    writer.close()
    path = tmp_path / "metrics.jsonl"
    with path.open("a") as f:
        f.write('{"step": 5, "loss": 0.')  # a kill mid-write
    writer = MetricsWriter(tmp_path, tensorboard=False, truncate_after=2)
    assert steps(path) == [1, 2]
    writer.write(3, {"loss": 0.5, "eval_loss": 0.25})
    assert steps(path) == [1, 2, 3]
    assert json.loads(path.read_text().splitlines()[-1]) == {"step": 3, "loss": 0.5, "eval_loss": 0.25}


def test_malformed_line_before_the_end_is_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: invalid JSON"):
        MetricsWriter(tmp_path, tensorboard=False, truncate_after=1)


def test_only_process_0_truncates_or_writes(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n')
    monkeypatch.setattr(metrics.jax, "process_index", lambda: 1)
    writer = MetricsWriter(tmp_path, tensorboard=False, truncate_after=0)
    writer.write(1, {"loss": 1.0})
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_mfu():
    # 6 * 1e9 FLOPs/token at 1e4 tokens/s on 2 devices of 1e14 FLOP/s: 6e13 / 2e14
    assert mfu(6e9, 1e4, 2, 1e14) == pytest.approx(0.3)
    assert mfu(6e9, 1e4, 2, None) is None
