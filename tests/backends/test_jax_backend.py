"""The ``jax`` backend on the real SmolLM2 GGUF: chat-rendered prompts, OpenAI-style counts and finish reasons,
per-role accounting, logprobs, reproducible sampling, the completion cache, and reviewer scores from the
model's probabilities."""

import dataclasses

import pytest

from teamsrl_jax.backends import CachedBackend, SamplingParams
from teamsrl_jax.env.reward import REVIEW_PREFILLS, REVIEW_TEMPLATES, Reward, RewardConfig
from teamsrl_jax.env.text import fill_template
from teamsrl_jax.llm import BackendConfig


@pytest.fixture(scope="module")
def backend(smollm2_gguf, tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-backend") / "cache.sqlite"
    with BackendConfig(kind="jax", model=str(smollm2_gguf), batch_slots=4, cache_path=str(cache)).build() as b:
        yield b


def test_real_answers_counts_and_accounting(backend):
    assert isinstance(backend, CachedBackend) and backend.name == "jax" and backend.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    params = SamplingParams(temperature=0.0, max_tokens=24)
    prompts = ["What is the capital of France?", "Name the largest planet in the solar system.", "Say hello."]
    replies = backend.generate(prompts, params, role="responder")
    assert "Paris" in replies[0].text and "planet" in replies[1].text
    for reply in replies:
        assert reply.finish_reason in ("stop", "length") and 0 < reply.completion_tokens <= 24
        assert reply.prompt_tokens > 10 and not reply.cached  # the chat template wraps the prompt
    counts = backend.accounting.get("responder")
    assert counts["queries"] == 3 and counts["completion_tokens"] == sum(r.completion_tokens for r in replies)
    # the same request again: from the cache, no query
    again = backend.generate(prompts[:1], params, role="responder")
    assert again[0].cached and again[0].text == replies[0].text
    assert backend.accounting.get("responder")["cache_hits"] == 1
    # a system message changes the rendered prompt, and max_tokens bounds the answer
    short = backend.generate(prompts[:1], SamplingParams(temperature=0.0, max_tokens=2, system="Answer in French."),
                             role="responder")[0]
    assert short.finish_reason == "length" and short.completion_tokens == 2


def test_sampling_is_reproducible_and_repeats_are_distinct_samples(backend):
    params = SamplingParams(temperature=1.0, top_p=0.95, top_k=40, max_tokens=16, seed=3)
    prompt = "Write one sentence about the sea."
    a = backend.inner.generate([prompt, prompt], params, role="instructor")
    b = backend.inner.generate([prompt], params, role="instructor", sample_indices=[1])
    assert a[0].text != a[1].text  # sample index 0 and 1
    assert b[0].text == a[1].text  # the same sample, alone


def test_logprobs_and_stop_strings(backend):
    params = SamplingParams(temperature=0.0, max_tokens=16, logprobs=5)
    [reply] = backend.inner.generate(["What is the capital of France?"], params, role="reviewer")
    assert len(reply.logprobs) == reply.completion_tokens - (reply.finish_reason == "stop")
    assert "".join(t.token for t in reply.logprobs) == reply.text
    for t in reply.logprobs:
        assert len(t.top) == 5 and t.top[0] == (t.token, pytest.approx(t.logprob))
        assert [lp for _, lp in t.top] == sorted((lp for _, lp in t.top), reverse=True)
    [cut] = backend.inner.generate(["What is the capital of France?"],
                                   SamplingParams(temperature=0.0, max_tokens=16, stop=("Paris",)), role="responder")
    assert cut.finish_reason == "stop" and cut.text == reply.text[:reply.text.index("Paris")]


@pytest.mark.parametrize("kind", ["default", "paper"])
def test_reviews_yield_scores_from_the_model_probabilities(backend, kind):
    """A 135M reviewer does not answer in the format asked for (it restates the instructions), so nothing can be
    read from its free text. Opened with the label ("Score:" / "Answer:"), its first token is the score or
    verdict, and the reward reads it from the probabilities over the score tokens."""
    reward = Reward(RewardConfig(kind=kind, novelty_weight=0.0))
    old = "Explain photosynthesis."
    new = ("Explain photosynthesis to a ten-year-old in exactly three steps, naming the two inputs and the two "
           "outputs, and end with one question that checks understanding.")
    prompt = fill_template(REVIEW_TEMPLATES[kind], old=old, new=new)
    free = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=24, logprobs=20)
    [reply] = backend.inner.generate([prompt], free, role="reviewer")
    assert reward.score([new], [""], [reply]).notes == [reward.read(reply)[1]] != [""], reply.text
    opened = dataclasses.replace(free, prefix=REVIEW_PREFILLS[kind])
    [reply] = backend.inner.generate([prompt], opened, role="reviewer")
    result = reward.score([new], [""], [reply])
    assert result.components["from_logprobs"][0] == 1.0, reply.text
    if kind == "default":
        assert 1.0 <= result.components["score"][0] <= 10.0
    else:
        assert result.components["verdict_parsed"][0] == 1.0
