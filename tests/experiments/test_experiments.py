"""experiments/: every pipeline config builds every stage's config, the SFT configs load, paper_full.yaml holds
the paper's settings (as the stages will see them) and paper_smoke.yaml differs from it only in size,
costs.py gives hand-computed counts, and the launch scripts parse."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from teamsrl_jax.pipeline.config import SECTIONS, load
from teamsrl_jax.pipeline.stages import Pipeline
from teamsrl_jax.sft.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SFT_YAMLS = sorted(EXPERIMENTS.glob("sft_*.yaml"))
PIPELINE_YAMLS = sorted(set(EXPERIMENTS.glob("*.yaml")) - set(SFT_YAMLS))
SCRIPTS = sorted(EXPERIMENTS.glob("*/*.sh"))


def load_costs():
    spec = importlib.util.spec_from_file_location("experiments_costs", EXPERIMENTS / "costs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


costs = load_costs()


def built(path: Path, tmp_path: Path) -> Pipeline:
    """The pipeline of ``path`` with every stage's config built (the constructor validates them all)."""
    pipeline = Pipeline(load(path), tmp_path / "run", progress=False)
    pipeline.base_path = Path("base")
    return pipeline


def test_the_configs_are_found():
    names = {p.name for p in PIPELINE_YAMLS}
    assert {"paper_full.yaml", "paper_smoke.yaml", "quick.yaml", "server.yaml"} <= names
    assert {p.name for p in SFT_YAMLS} == {"sft_tiny.yaml", "sft_llama2_7b.yaml"}
    for path in PIPELINE_YAMLS:  # a pipeline config holds pipeline fields only (an SFT file would fail to load)
        assert set(yaml.safe_load(path.read_text())) <= {"name", "base_model", "seeds", "eval_data",
                                                         "holdout_fraction", "seed", *SECTIONS}, path.name


@pytest.mark.parametrize("path", PIPELINE_YAMLS, ids=lambda p: p.name)
def test_pipeline_config_validates(path, tmp_path):
    pipeline = built(path, tmp_path)
    pipeline.validate()
    assert pipeline._sft_config(False).model == "base"
    assert pipeline._mia_config().reference == "base"


def test_sft_configs_load():
    tiny = load_config(str(EXPERIMENTS / "sft_tiny.yaml"))
    assert tiny.preset == "tiny" and tiny.data
    # the paper's recipe takes the model and the data from the command line
    recipe = load_config(str(EXPERIMENTS / "sft_llama2_7b.yaml"), {"model": "Llama-2-7b-hf", "data": "train.jsonl"})
    assert (recipe.max_length, recipe.epochs, recipe.global_batch_size, recipe.learning_rate) == (512, 3, 256, 2e-5)


def test_paper_full_holds_the_papers_settings(tmp_path):
    from teamsrl_jax.generate.run import generation_env_config
    from teamsrl_jax.train_policy.loop import env_config

    pipeline = built(EXPERIMENTS / "paper_full.yaml", tmp_path)
    train = pipeline._train_config()
    env = env_config(train)
    assert (train.preset, train.iterations, train.episodes_per_update, env.num_chains, env.horizon) == \
        ("paper", 200, 1, 1, 6)
    assert env.reset_chains == "persistent_chain" and env.reward.kind == "paper"
    for role in (env.instructor, env.reviewer):  # WizardLM-13B's sampling in the original
        assert (role.temperature, role.top_p, role.top_k, role.max_tokens) == (1.0, 0.95, 40, 2048)
    assert train.backend.kind == "openai" and "13B" in train.backend.model

    gen = pipeline._generate_config()
    gen_env = generation_env_config(train, gen, gen.chains)
    assert (gen.schedule, gen.steps, gen.max_examples) == ("paper", 6, 17878)
    assert (gen_env.instructor.temperature, gen_env.instructor.top_p, gen_env.instructor.max_tokens) == \
        (0.7, 0.95, 2048)
    assert gen.backend.kind == gen.responder_backend.kind == "openai"
    assert pipeline.cfg.seeds.endswith("alpaca_data.json")

    sft = pipeline._sft_config(False)
    assert (sft.max_length, sft.epochs, sft.global_batch_size, sft.learning_rate, sft.warmup_steps) == \
        (512, 3, 256, 2e-5, 2)
    assert (sft.lr_schedule, sft.adam_b1, sft.adam_b2, sft.adam_eps, sft.weight_decay) == \
        ("cosine", 0.9, 0.999, 1e-8, 0.0)
    assert (sft.dtype, sft.param_dtype, sft.remat, sft.mesh, sft.max_steps) == \
        ("bfloat16", "float32", "full", "fsdp=-1", 0)

    tasks, evaluate = pipeline._evaluate_args()
    assert tasks == ["arc_challenge"] and evaluate["num_fewshot"] == 25 and evaluate["limit"] is None
    mia = pipeline._mia_config()
    assert mia.max_length == sft.max_length and mia.limit == 0


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_paper_smoke_differs_from_paper_full_only_in_size():
    full, smoke = (flat(yaml.safe_load((EXPERIMENTS / f"paper_{n}.yaml").read_text())) for n in ("full", "smoke"))
    assert full.keys() == smoke.keys()
    changed = {k for k in full if full[k] != smoke[k]}
    assert changed == {"name", "train_policy.iterations", "train_policy.checkpoint_every",
                       "train_policy.eval_episodes", "train_policy.eval_chains", "generate.max_examples",
                       "sft.max_steps", "sft.checkpoint_every", "evaluate.limit", "mia.bootstrap",
                       "data_report.limit"}


# ---------------------------------------------------------------------------------------------- costs.py

SMALL = {
    "name": "small", "base_model": "tiny", "holdout_fraction": 0.2,
    "train_policy": {"iterations": 3, "episodes_per_update": 2, "num_chains": 2, "horizon": 4,
                     "eval_episodes": 1, "eval_chains": 5, "eval_fixed": True, "instructor_max_tokens": 100,
                     "reviewer_max_tokens": 10},
    "generate": {"max_examples": 50, "responder_max_tokens": 300},
    "sft": {"global_batch_size": 8, "epochs": 2, "max_length": 256, "packing": False},
    "mia": {"max_length": 256},
}


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def estimate(config: Path, *flags: str) -> dict:
    args = costs.build_parser().parse_args([str(config), *flags])
    return costs.estimate(str(config), args)


def test_costs_counts_by_hand(small, tmp_path):
    est = estimate(small, "--params", "1000", "--benchmarks", str(tmp_path / "none.json"))
    policy = est["policy_training"]
    per_role = 3 * 2 * 2 * 4 + 1 * 5 * 4 * (2 + 6)  # training + held-out (policy, uniform, 6 fixed) = 48 + 160
    assert policy["training_queries"] == 96 and policy["held_out_queries"] == 320
    assert {r: v["queries"] for r, v in policy["roles"].items()} == {"instructor": per_role, "reviewer": per_role}
    assert policy["roles"]["instructor"]["completion_tokens_max"] == per_role * 100
    assert policy["roles"]["reviewer"]["completion_tokens_max"] == per_role * 10

    gen = est["generation"]
    assert gen["expert_queries"] == 100 and gen["roles"]["responder"]["completion_tokens_max"] == 50 * 300

    sft = est["sft"]  # 50 examples, 10 held out; 40 rows a epoch = 5 steps of 8, 2 epochs
    assert (sft["examples"], sft["steps"], sft["computed_tokens"]) == (40, 10, 10 * 8 * 256)
    assert sft["flops"] == 6 * 1000 * 10 * 8 * 256
    assert sft["device_hours"] is None and "sft_step" in sft["missing"]
    assert est["mia"]["tokens_max"] == 50 * 256 * 2

    text = costs.format_table(est)
    assert "1.229e+08" in text and "not computed" in text


def test_costs_uses_measured_runs(small, tmp_path):
    run = tmp_path / "run"
    (run / "policy").mkdir(parents=True)
    (run / "data").mkdir()
    (run / "policy" / "queries.json").write_text(json.dumps(
        {"instructor": {"queries": 10, "prompt_tokens": 1000, "completion_tokens": 300}}))
    (run / "data" / "report.json").write_text(json.dumps({"examples": 10, "requests": {
        "instructor": {"requests": 16, "prompt_tokens": 1600, "completion_tokens": 800},
        "responder": {"requests": 10, "prompt_tokens": 500, "completion_tokens": 2000}}}))
    est = estimate(small, "--run", str(run), "--params", "1000", "--tokens-per-s", "2048", "--devices", "4")
    assert est["policy_training"]["roles"]["instructor"]["prompt_tokens"] == 208 * 100
    assert est["policy_training"]["roles"]["reviewer"]["prompt_tokens"] is None
    gen = est["generation"]["roles"]
    assert (gen["instructor"]["queries"], gen["responder"]["queries"]) == (80, 50)  # 1.6 and 1.0 per example
    assert (gen["instructor"]["prompt_tokens"], gen["responder"]["completion_tokens"]) == (80 * 100, 50 * 200)
    sft = est["sft"]
    assert sft["tokens_per_example"] == 250 and sft["trained_tokens"] == 40 * 250 * 2
    assert math.isclose(sft["wall_hours"], 20480 / 2048 / 3600) and math.isclose(sft["device_hours"],
                                                                                 4 * sft["wall_hours"])

    (run / "sft").mkdir()  # an SFT run's metrics: the first step (compilation) logs no tokens_per_s
    (run / "sft" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 1, "loss": 2.0}, {"step": 2, "tokens_per_s": 1000.0}, {"step": 3, "tokens_per_s": 3000.0},
        {"step": 4, "tokens_per_s": 2000.0})))
    sft = estimate(small, "--run", str(run), "--params", "1000")["sft"]
    assert math.isclose(sft["wall_hours"], 20480 / 2000 / 3600) and sft["device_hours"] is None


def test_costs_hours_from_a_measured_mfu(small, tmp_path):
    flops = 6 * 1000 * 20480
    est = estimate(small, "--params", "1000", "--mfu", "0.5", "--peak-tflops", "1e-6", "--devices", "2")
    assert math.isclose(est["sft"]["device_hours"], flops / (1e6 * 0.5) / 3600)
    assert math.isclose(est["sft"]["wall_hours"], est["sft"]["device_hours"] / 2)

    results = tmp_path / "results.json"  # what benchmarks/run_all.py writes after sft_step on a GPU
    raw = {"accelerator_mfu": 0.25, "accelerator_device": "NVIDIA H100 80GB HBM3", "accelerator_model": "1b",
           "accelerator_seq_len": 2048, "accelerator_devices": 1}
    results.write_text(json.dumps({"machine": {"date": "d"},
                                   "benchmarks": [{"name": "sft_step", "status": "ok", "raw": raw}]}))
    est = estimate(small, "--params", "1000", "--benchmarks", str(results))
    assert math.isclose(est["sft"]["device_hours"], flops / (989e12 * 0.25) / 3600)
    assert "H100" in est["sft"]["throughput"]["source"]
    results.write_text(json.dumps({"benchmarks": [{"name": "sft_step", "status": "ok",
                                                   "raw": {"jax_backend": "cpu"}}]}))
    est = estimate(small, "--params", "1000", "--benchmarks", str(results))
    assert est["sft"]["device_hours"] is None and "cpu" in est["sft"]["missing"]


def test_costs_json_on_paper_full(capsys):
    assert costs.main([str(EXPERIMENTS / "paper_full.yaml"), "--model-config", "llama2-7b", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["policy_training"]["training_queries"] == 200 * 6 * 2  # the paper's 2,400
    assert est["generation"]["expert_queries"] == 35_756  # the paper's 17,878 x 2
    assert est["params"] == 6_738_415_616 and est["sft"]["steps"] == 3 * math.ceil((17_878 - 1_788) / 256)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_launch_script_parses(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_there_are_launch_scripts():
    assert {p.parent.name for p in SCRIPTS} == {"tpu", "gpu"}


def test_costs_cli_runs():
    out = subprocess.run([sys.executable, str(EXPERIMENTS / "costs.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--tokens-per-s" in out.stdout
