"""A small trained policy (the offline simulator, a few TRPO iterations) for the dataset-stage tests."""

from __future__ import annotations

import pytest

from teamsrl_jax.llm import BackendConfig
from teamsrl_jax.train_policy.__main__ import train_and_report
from teamsrl_jax.train_policy.config import TrainConfig


@pytest.fixture(scope="session")
def policy_run(tmp_path_factory):
    """A ``train_policy`` run folder (default preset) with a checkpoint."""
    out = tmp_path_factory.mktemp("policy")
    cfg = TrainConfig(iterations=2, num_chains=8, eval_episodes=0, checkpoint_every=2,
                      backend=BackendConfig(kind="simulated", cache_path=str(out / "cache.sqlite")))
    train_and_report(cfg, out, progress=False)
    return out
