"""Fixtures for the RL-core tests: float64 inside a context, so x64 does not leak into other tests."""
import contextlib

import jax
import pytest


def enable_x64():
    """jax.enable_x64 (jax >= 0.9) or the older jax.experimental.enable_x64, as a context manager."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as legacy  # pragma: no cover - older jax

    return legacy()


@pytest.fixture
def x64():
    with enable_x64():
        yield


@contextlib.contextmanager
def no_x64():
    with jax.enable_x64(False) if hasattr(jax, "enable_x64") else contextlib.nullcontext():
        yield
