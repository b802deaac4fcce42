"""The decode benchmark's GPU case (a ~1B bf16 model at batch 64) runs only where a GPU is: its code is checked
here on the CPU at a tiny size, so that it works the first time a GPU is at hand."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_gpu_case_runs_and_reports_its_figures():
    spec = importlib.util.spec_from_file_location("decode_benchmark", BENCHMARKS / "decode.py")
    decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decode)
    result = decode.gpu_1b(batch=4, new_tokens=3, preset="tiny", copy_bytes=1 << 20)
    assert result["model"] == "tiny (random, bf16)" and result["batch"] == 4
    assert result["tokens_per_s"] > 0 and 0 < result["bandwidth_share"] < 100
