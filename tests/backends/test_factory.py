"""make_backend and BackendConfig."""

import pytest

from teamsrl_jax.backends import BackendConfig, CachedBackend, make_backend
from teamsrl_jax.backends.openai_backend import OpenAIBackend
from teamsrl_jax.backends.simulated import SimulatedBackend


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown backend kind 'gpt'; expected one of: openai, simulated"):
        make_backend("gpt")


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
