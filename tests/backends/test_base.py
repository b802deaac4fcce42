"""SamplingParams validation and canonical keys; sample-index defaults; role checks."""

import pytest

from teamsrl_jax.backends.base import SamplingParams, check_role, resolve_sample_indices


@pytest.mark.parametrize("kwargs, field", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.01), "top_p"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=2.5), "max_tokens"),
    (dict(top_k=0), "top_k"),
    (dict(stop="###"), "stop"),
])
def test_sampling_params_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as info:
        SamplingParams(**kwargs)
    message = str(info.value)
    assert f"SamplingParams.{field}" in message and "\n" not in message


def test_sampling_params_edges_are_accepted():
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=1, top_k=1)  # raises if a bound is off by one
    assert (params.temperature, params.top_p, params.max_tokens, params.top_k) == (0.0, 1.0, 1, 1)


def test_cache_key_is_canonical_and_covers_every_field():
    base = SamplingParams()
    assert SamplingParams(stop=["a", "b"]).cache_key() == SamplingParams(stop=("a", "b")).cache_key()
    assert SamplingParams().cache_key() == base.cache_key()
    variants = [dict(temperature=0.0), dict(top_p=0.5), dict(max_tokens=7), dict(top_k=40), dict(stop=("x",)),
                dict(system="be brief"), dict(seed=1)]
    keys = {SamplingParams(**v).cache_key() for v in variants} | {base.cache_key()}
    assert len(keys) == len(variants) + 1


def test_default_sample_indices_count_repeats():
    assert resolve_sample_indices(["a", "b", "a", "a", "b"], None) == [0, 0, 1, 2, 1]
    assert resolve_sample_indices(["a", "a"], [5, 9]) == [5, 9]
    with pytest.raises(ValueError, match="2 prompts"):
        resolve_sample_indices(["a", "a"], [1])


def test_check_role():
    for role in ("instructor", "reviewer", "responder"):
        check_role(role)
    with pytest.raises(ValueError, match="'critic'"):
        check_role("critic")
