"""Test-wide settings. Set before JAX is imported anywhere: 8 simulated CPU devices for sharding
tests, no hub access, a headless plotting backend."""
import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pathlib

import pytest

SHARED_DATA = pathlib.Path(os.environ.get("TEAMSRL_SHARED_DATA", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The read-only shared data folder (seeds, ARC, HellaSwag); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set TEAMSRL_SHARED_DATA)")
    return SHARED_DATA
