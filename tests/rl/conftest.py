"""Fixtures for the RL-core tests: float64 inside a context, so x64 does not leak into other tests."""
import jax
import pytest


def enable_x64():
    return jax.enable_x64(True)


@pytest.fixture
def x64():
    with enable_x64():
        yield


def no_x64():
    return jax.enable_x64(False)
