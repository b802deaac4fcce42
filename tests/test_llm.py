"""teamsrl_jax.llm: make_backend and BackendConfig for every kind, and the one-way imports it makes possible."""

import subprocess
import sys
import textwrap
import types

import pytest

from teamsrl_jax.backends import CachedBackend
from teamsrl_jax.backends.openai_backend import OpenAIBackend
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.llm import KINDS, BackendConfig, make_backend


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown backend kind 'gpt'; expected one of: openai, simulated, jax"):
        make_backend("gpt")
    with pytest.raises(ValueError, match="BackendConfig.kind must be one of openai, simulated, jax, got 'gpt'"):
        BackendConfig(kind="gpt")


@pytest.mark.parametrize("cache", [False, True])
def test_config_passes_concurrency_to_the_simulated_backend(tmp_path, cache):
    config = BackendConfig(kind="simulated", concurrency=5, cache_path=str(tmp_path / "c.sqlite") if cache else None)
    with config.build() as backend:
        inner = backend.inner if cache else backend
        assert isinstance(backend, CachedBackend) == cache and isinstance(inner, SimulatedBackend)
        assert inner.concurrency == 5 and len(inner.slots._free_at) == 5  # five latency slots
    with BackendConfig(kind="simulated", concurrency=5, extra={"concurrency": 2}).build() as backend:
        assert backend.concurrency == 2  # an explicit constructor argument wins


def test_config_builds_a_cached_openai_backend(tmp_path, monkeypatch):
    monkeypatch.delenv("TEAMSRL_NO_SUCH_KEY", raising=False)
    config = BackendConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="llama", concurrency=3,
                           api_key_env="TEAMSRL_NO_SUCH_KEY", cache_path=str(tmp_path / "c.sqlite"), top_k=40)
    with config.build() as backend:
        assert isinstance(backend, CachedBackend) and isinstance(backend.inner, OpenAIBackend)
        assert (backend.name, backend.model, backend.inner.concurrency) == ("openai", "llama", 3)
    assert config.sampling(system="judge").top_k == 40 and config.sampling(system="judge").system == "judge"
    with pytest.raises(ValueError, match="model must be set"):
        BackendConfig(kind="openai", base_url="http://127.0.0.1:9/v1").build()


class FakeJaxBackend(SimulatedBackend):
    """Stands in for ``backends.jax_backend.JaxBackend`` (same constructor), recording its arguments."""

    name = "jax"

    def __init__(self, model: str, *, dtype: str = "float32", mesh: str = "", batch_slots: int = 16, seed: int = 0):
        super().__init__(seed, model=model)
        self.args = dict(model=model, dtype=dtype, mesh=mesh, batch_slots=batch_slots, seed=seed)


@pytest.fixture
def fake_jax_backend(monkeypatch):
    """The factory imports the JAX backend lazily; these tests do not depend on the real one."""
    module = types.ModuleType("teamsrl_jax.backends.jax_backend")
    module.JaxBackend = FakeJaxBackend
    monkeypatch.setitem(sys.modules, "teamsrl_jax.backends.jax_backend", module)
    return module


def test_kind_jax_gets_model_dtype_mesh_slots_and_seed(tmp_path, fake_jax_backend):
    assert "jax" in KINDS
    config = BackendConfig(kind="jax", model="m.gguf", dtype="bfloat16", mesh="fsdp=-1", batch_slots=4, seed=3,
                           cache_path=str(tmp_path / "c.sqlite"), concurrency=7)
    with config.build() as backend:
        assert isinstance(backend, CachedBackend) and isinstance(backend.inner, FakeJaxBackend)
        assert backend.inner.args == dict(model="m.gguf", dtype="bfloat16", mesh="fsdp=-1", batch_slots=4, seed=3)
        assert (backend.name, backend.model) == ("jax", "m.gguf")
    with BackendConfig(kind="jax", model="folder").build() as backend:  # defaults; no seed given: the backend's
        assert backend.args == dict(model="folder", dtype="float32", mesh="", batch_slots=16, seed=0)
    with make_backend("jax", model="x.gguf", batch_slots=2) as backend:
        assert backend.args["batch_slots"] == 2


def test_kind_jax_requires_a_model_in_one_line(fake_jax_backend):
    with pytest.raises(ValueError) as info:
        BackendConfig(kind="jax")
    assert str(info.value).startswith("BackendConfig.model must name") and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="model must be set for kind 'jax'"):
        make_backend("jax")
    with pytest.raises(ValueError, match="BackendConfig.batch_slots must be an integer >= 1, got 0"):
        BackendConfig(kind="jax", model="m.gguf", batch_slots=0)


IMPORT_CHECK = textwrap.dedent("""
    import importlib, pkgutil, sys
    import teamsrl_jax.{package} as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{{package.__name__}}.{{info.name}}")
    print(" ".join(sorted(m for m in sys.modules if m.startswith("teamsrl_jax."))))
""")


def _modules_loaded_by(package: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK.format(package=package)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


def test_imports_point_one_way():
    """backends (interface, cache, clients, models) never load the environment; the environment never loads
    the factory above both; every module of each package imports in a fresh interpreter."""
    backends = _modules_loaded_by("backends")
    assert {f"teamsrl_jax.backends.{m}" for m in ("base", "cache", "openai_backend")} <= backends
    assert not [m for m in backends if m.startswith(("teamsrl_jax.env", "teamsrl_jax.llm"))]
    env = _modules_loaded_by("env")
    assert "teamsrl_jax.env.simulator" in env and "teamsrl_jax.llm" not in env
