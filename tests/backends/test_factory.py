"""make_backend and BackendConfig."""

import sys

import pytest

from teamsrl_jax.backends import BackendConfig, CachedBackend, make_backend
from teamsrl_jax.backends.openai_backend import OpenAIBackend


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown backend kind 'gpt'; expected one of: openai, simulated"):
        make_backend("gpt")


def test_missing_simulated_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "teamsrl_jax.backends.simulated", None)  # as if the file did not exist
    with pytest.raises(ValueError, match="'simulated' is unavailable"):
        make_backend("simulated")


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
