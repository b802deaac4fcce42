"""The benchmarks' accelerator cases (SFT MFU of a ~1B model sharded over every device; decode of a ~1B bf16 model
at batch 64) run only on a GPU or TPU: their code is checked here on the CPU at a tiny size, so that it works the
first time an accelerator is at hand."""

import argparse
import importlib.util
import json
import math
from pathlib import Path

import jax
import pytest

from teamsrl_jax.model import LlamaConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decode_case_runs_and_reports_its_figures():
    result = load("decode").accelerator_1b(batch=4, new_tokens=3, preset="tiny", copy_bytes=1 << 20)
    assert result["model"] == "tiny (random, bf16)" and result["batch"] == 4
    assert result["device"] == jax.devices()[0].device_kind
    assert result["tokens_per_s"] > 0 and 0 < result["bandwidth_share"] < 100


def test_sft_case_shards_over_the_devices_and_reports_mfu(monkeypatch):
    sft_step = load("sft_step")
    devices = jax.devices()[:4]
    result = sft_step.accelerator_mfu(1, 2, preset="tiny", rows_per_device=1, seq=32, devices=devices)
    assert result["accelerator_devices"] == 4 and result["accelerator_batch"] == 4
    assert result["accelerator_tokens_per_s"] > 0
    assert result["accelerator_mfu"] is None  # a CPU has no bf16 peak in the table

    monkeypatch.setattr(sft_step, "peak_flops", lambda device: 1e9)  # as a device in the table would
    result = sft_step.accelerator_mfu(1, 2, preset="tiny", rows_per_device=1, seq=32, devices=devices, remat="dots")
    flops = LlamaConfig.preset("tiny").flops_per_token(32) * result["accelerator_tokens_per_s"]
    assert math.isclose(result["accelerator_mfu"], flops / (4 * 1e9), rel_tol=1e-9)


@pytest.mark.parametrize("name", ["decode", "sft_step"])
def test_accelerator_flag_on_a_cpu_says_what_is_missing(name):
    with pytest.raises(SystemExit, match="--accelerator needs a GPU or TPU backend; JAX found only the CPU"):
        load(name).main(["--accelerator", "--json"])


def test_sft_case_falls_back_to_a_step_that_fits(monkeypatch, capsys):
    sft_step = load("sft_step")
    assert sft_step.fitting(4, "none") == [(4, "none"), (4, "dots"), (4, "full"), (2, "full"), (1, "full")]
    assert sft_step.fitting(1, "full") == [(1, "full")]
    calls = []

    def measure(warmup, steps, rows_per_device, remat):  # out of memory twice, then the real (tiny) step
        calls.append((rows_per_device, remat))
        if len(calls) < 3:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.00GiB")
        return sft_step.accelerator_mfu(warmup, steps, preset="tiny", rows_per_device=rows_per_device, seq=32,
                                        remat=remat, devices=jax.devices()[:2])

    monkeypatch.setattr(sft_step.jax, "default_backend", lambda: "gpu")
    args = argparse.Namespace(accelerator_rows=4, accelerator_remat="none", json=True)
    result = sft_step.accelerator_main(args, 1, 1, measure=measure)
    assert calls == [(4, "none"), (4, "dots"), (4, "full")]
    assert result["accelerator_remat"] == "full" and result["accelerator_batch"] == 8
    assert result["accelerator_out_of_memory"] == ["4 rows/device, remat none", "4 rows/device, remat dots"]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accelerator_devices"] == 2

    def fails(message):
        def measure(*args, **kwargs):
            raise RuntimeError(message)
        return measure

    with pytest.raises(SystemExit, match="does not fit in device memory even at 1 rows/device, remat full"):
        sft_step.accelerator_main(args, 1, 1, measure=fails("RESOURCE_EXHAUSTED"))
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):  # anything else is not retried
        sft_step.accelerator_main(args, 1, 1, measure=fails("INVALID_ARGUMENT: bad shape"))
