"""benchmarks/run_all.py on a folder of fake benchmarks (good, failing, silent, too slow), and a static check
that the real registry names real benchmarks and keys their code writes."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_all = load_run_all()

FAKES = {
    "good": "import json, sys\nprint('a table')\nprint(json.dumps({'ours': 30.0, 'theirs': 10.0, 'speedup': 3.0, "
            "'same': True, 'quick': '--quick' in sys.argv, 'extra': {'kept': [1, 2]}}))\n",
    "slow_peer": "import json\nprint(json.dumps({'ours': 10.0, 'theirs': 20.0}))\n",
    "crashes": "import sys\nprint('partial table')\nprint('Traceback: ...', file=sys.stderr)\n"
               "print('ValueError: bad | input', file=sys.stderr)\nsys.exit(1)\n",
    "silent": "print('a table but no JSON')\n",
    "sleeps": "import time\ntime.sleep(60)\n",
}
REGISTRY = {
    "good": [{"name": "items/s", "ours": "ours", "peer": "the peer", "theirs": "theirs", "ratio": "speedup",
              "target": ">= 2x"},
             {"name": "same answers", "ours": "same", "target": "== true"},
             {"name": "GPU only", "ours": "gpu.tokens_per_s", "optional": True}],
    "slow_peer": [{"name": "per s", "ours": "ours", "peer": "p", "theirs": "theirs", "target": ">= 1x"}],
}


@pytest.fixture
def suite(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    for name, code in FAKES.items():
        (bench / f"{name}.py").write_text(code)
    (bench / "run_all.py").write_text("raise SystemExit('run_all must not run itself')\n")
    (tmp_path / "registry.json").write_text(json.dumps(REGISTRY))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Benchmarks\n\n{run_all.README_START}\nold\n{run_all.README_END}\n\n## Next\n")

    def run(*extra):
        return run_all.main(["--bench-dir", str(bench), "--registry", str(tmp_path / "registry.json"),
                             "--out-json", str(tmp_path / "r.json"), "--out-md", str(tmp_path / "r.md"),
                             "--readme", str(readme), "--timeout", "3", *extra])
    return run, tmp_path


def test_failures_are_rows_and_the_suite_finishes(suite, capsys):
    run, tmp = suite
    assert run("--update-readme") == 0
    out = capsys.readouterr().out
    results = json.loads((tmp / "r.json").read_text())
    b = {x["name"]: x for x in results["benchmarks"]}
    assert list(b) == ["good", "slow_peer", "crashes", "silent", "sleeps"]  # registry order, then alphabetical
    assert [b[n]["status"] for n in b] == ["ok", "ok", "failed", "failed", "failed"]
    assert b["crashes"]["reason"] == "exit 1: ValueError: bad | input"
    assert b["silent"]["reason"] == "no JSON object on the last stdout line"
    assert b["sleeps"]["reason"] == "timed out after 3 s" and b["sleeps"]["seconds"] < 10
    assert b["good"]["raw"]["extra"] == {"kept": [1, 2]} and b["good"]["raw"]["quick"] is False
    good = b["good"]["figures"]
    assert [f["figure"] for f in good] == ["items/s", "same answers"]  # the optional GPU figure is absent
    assert (good[0]["ratio"], good[0]["met"], good[1]["met"]) == (3.0, True, True)
    slow = b["slow_peer"]["figures"][0]
    assert slow["ratio"] == pytest.approx(0.5) and slow["met"] is False  # no ratio key: ours / theirs
    assert results["failed"] == ["crashes", "silent", "sleeps"]
    assert results["missed_targets"] == ["slow_peer: per s"]
    m = results["machine"]
    assert m["cores"] >= 1 and m["backend"] == "cpu" and m["jax"][0].isdigit() and results["mode"] == "full"

    md = (tmp / "r.md").read_text()
    assert "| good | items/s | the peer | 30.0 | 10.0 | 3.00x | >= 2x | yes |" in md
    assert "| good | same answers | - | yes | - | - | == true | yes |" in md
    assert "| slow_peer | per s | p | 10.0 | 20.0 | 0.50x | >= 1x | **no** |" in md
    assert "| crashes | FAILED: exit 1: ValueError: bad \\| input |" in md
    assert "| sleeps | FAILED: timed out after 3 s |" in md
    assert len(b["good"]["load_avg_1min"]) == 2 and re.search(r"good 0 s \(load \d+\.\d\)", md)
    assert "[3/5] crashes ... failed" in out and md.split("\n", 2)[2] in out  # progress, then the table
    readme = (tmp / "README.md").read_text()
    assert "old" not in readme and "| good | items/s |" in readme and readme.endswith("\n\n## Next\n")


@pytest.fixture
def no_probe(monkeypatch):
    """Skip the JAX probe (a child process importing JAX) where a test does not read the machine."""
    monkeypatch.setattr(run_all, "machine", lambda: {"cpu": "test", "cores": 2, "python": "3", "date": "today",
                                                     "commit": "", "jax": "0", "backend": "cpu"})


def test_strict_only_quick(suite, no_probe, capsys):
    run, tmp = suite
    assert run("--strict", "--skip", "sleeps") == 1
    assert run("--strict", "--only", "good", "--quick", "--update-readme") == 0
    results = json.loads((tmp / "r.json").read_text())
    [good] = results["benchmarks"]
    assert good["name"] == "good" and good["raw"]["quick"] is True
    assert results["mode"] == "quick" and results["partial"]
    assert "old" in (tmp / "README.md").read_text()  # a quick subset leaves the README alone
    assert "README not updated" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no such benchmark nope"):
        run("--only", "nope")


def test_from_results_rerenders_without_running(suite, no_probe):
    run, tmp = suite
    run("--only", "good,slow_peer")
    (tmp / "registry.json").write_text(json.dumps({**REGISTRY, "good": [{"name": "renamed", "ours": "ours"}]}))
    assert run("--from-results", str(tmp / "r.json"), "--strict") == 1  # slow_peer still misses its target
    md = (tmp / "r.md").read_text()
    assert "| good | renamed | - | 30.0 | - | - | - | n/a |" in md and "items/s" not in md


DEVICE_FAKE = """import json, os, sys
where = os.environ.get("JAX_PLATFORMS", "default")
if "--accelerator" in sys.argv:
    if "fails" in sys.argv[0]:
        sys.exit("error: out of device memory")
    print(json.dumps({"device": {"tokens_per_s": 500.0, "jax_platforms": where}}))
else:
    print(json.dumps({"ours": 2.0, "theirs": 1.0, "jax_platforms": where}))
"""


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_accelerator_cases_run_on_the_device_and_comparisons_on_the_cpu(tmp_path, monkeypatch, backend):
    monkeypatch.setattr(run_all, "machine", lambda: {"cpu": "test", "cores": 2, "python": "3", "date": "today",
                                                     "commit": "", "jax": "0", "backend": backend,
                                                     "device": "Fake GPU" if backend == "gpu" else "cpu"})
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    for name in ("device_ok", "device_fails"):
        (bench / f"{name}.py").write_text(DEVICE_FAKE)
    figures = [{"name": "per s", "ours": "ours", "peer": "p", "theirs": "theirs"},
               {"name": "where the comparison ran", "ours": "jax_platforms"},
               {"name": "device tokens/s", "ours": "device.tokens_per_s", "accelerator": True},
               {"name": "where the device case ran", "ours": "device.jax_platforms", "accelerator": True}]
    (tmp_path / "registry.json").write_text(json.dumps({"device_ok": figures, "device_fails": figures}))
    assert run_all.main(["--bench-dir", str(bench), "--registry", str(tmp_path / "registry.json"),
                         "--out-json", str(tmp_path / "r.json"), "--out-md", str(tmp_path / "r.md"),
                         "--timeout", "30", "--strict"]) == (1 if backend == "gpu" else 0)
    results = json.loads((tmp_path / "r.json").read_text())
    b = {x["name"]: x for x in results["benchmarks"]}
    md = (tmp_path / "r.md").read_text()
    assert b["device_ok"]["raw"]["jax_platforms"] == "cpu"  # the side-by-side run is pinned to the CPU
    assert "| device_ok | where the comparison ran | - | cpu |" in md
    if backend == "cpu":
        assert "accelerator_run" not in b["device_ok"] and "device tokens/s" not in md and results["failed"] == []
        return
    assert b["device_ok"]["raw"]["device"] == {"tokens_per_s": 500.0, "jax_platforms": "default"}
    assert "| device_ok | device tokens/s | - | 500 |" in md
    assert "| device_ok | where the device case ran | - | default |" in md
    assert b["device_fails"]["status"] == "ok" and b["device_fails"]["accelerator_run"]["status"] == "failed"
    assert "| device_fails | FAILED (GPU/TPU case): exit 1: error: out of device memory |" in md
    assert "device tokens/s" not in md.split("| device_fails |", 1)[1]
    assert results["failed"] == ["device_fails (GPU/TPU case)"]
    assert "on gpu (Fake GPU)" in md and "Side-by-side comparisons ran on the CPU" in md


def test_targets_and_formats():
    assert run_all.parse_target(">= 50%") == (">=", 0.5) and run_all.parse_target("== true") == ("==", True)
    assert run_all.meets(0.49, ">= 50%") is False and run_all.meets(None, ">= 2x") is False
    assert run_all.meets(1, "== true") is False  # a number is not a boolean
    with pytest.raises(ValueError, match="bad target"):
        run_all.parse_target("at least 2")
    assert [run_all.fmt(v, u) for v, u in [(1234.5, ""), (0.123, "%"), (3.14159, "ms"), (None, ""), (False, "")]] \
        == ["1,234", "12.3%", "3.14 ms", "-", "no"]
    assert run_all.pull({"a": {"512": {"b": 2}}}, "a.512.b") == 2 and run_all.pull({"a": None}, "a.b") is None


def test_real_registry_names_real_benchmarks_and_keys():
    """Every registered benchmark exists and writes every key the registry reads (digits in a key may come
    from an f-string: ``ours_20k_per_s`` from ``f"ours_{n // 1000}k_per_s"``)."""
    for name, registered in run_all.REGISTRY.items():
        source = (BENCHMARKS / f"{name}.py").read_text()
        assert "--json" in source and "--quick" in source, name
        for figure in registered:
            if figure.target:
                run_all.parse_target(figure.target)
            for key in filter(None, (figure.ours, figure.theirs, figure.ratio)):
                for part in key.split("."):
                    pattern = re.sub(r"\d+", lambda m: r"(?:\d+|\{[^{}]*\})", re.escape(part))
                    assert re.search(pattern, source), f"{name}: {key!r} ({part!r}) not in {name}.py"
    unregistered = set(run_all.discover(BENCHMARKS, run_all.REGISTRY)) - set(run_all.REGISTRY)
    assert not unregistered, f"add {unregistered} to run_all.REGISTRY"
