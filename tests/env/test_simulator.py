"""The simulated instructor/reviewer: determinism, transformations, reply formats, accounting, latency,
and the property the demo relies on: the best operation depends on the state."""

import time

import numpy as np
import pytest

from teamsrl_jax.backends.base import BackendRequestError, SamplingParams
from teamsrl_jax.env.simulator import SimulatedBackend, heuristic_score, profile
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv
from teamsrl_jax.env.operations import OperationSet, parse_rewrite
from teamsrl_jax.env.reward import REVIEW_TEMPLATES, elimination_reason, parse_score, parse_verdict, RewardConfig
from teamsrl_jax.env.text import fill_template

OPS = OperationSet()
P = SamplingParams()
SEED_TEXT = "Describe the water cycle for children."
WITH_INPUT = "Find the average of the numbers.\n\n12, 7, 19, 4, 8"


def rewrite(backend, op, text, index=0):
    return backend.generate([OPS.render(op, text)], P, "instructor", [index])[0].text


def test_deterministic_in_seed_prompt_and_sample_index():
    a, b, c = SimulatedBackend(seed=1), SimulatedBackend(seed=1), SimulatedBackend(seed=2)
    prompts = [OPS.render(op, f"Explain topic number {i}.") for op in range(6) for i in range(4)]
    first = [x.text for x in a.generate(prompts, P, "instructor")]
    assert first == [x.text for x in b.generate(prompts, P, "instructor")]
    assert first != [x.text for x in c.generate(prompts, P, "instructor")]
    assert first != [x.text for x in a.generate(prompts, P, "instructor", [1] * len(prompts))]
    assert a.generate([prompts[0]] * 2, P, "instructor")[0].text == first[0]  # k-th repeat gets index k


def test_each_operation_is_recognised_and_applied():
    backend = SimulatedBackend(refusal_rate=0.0, echo_rate=0.0)
    before = profile(SEED_TEXT)
    after = {op: profile(parse_rewrite(rewrite(backend, OPS.index(op), SEED_TEXT)))
             for op in OPS.names}
    assert after["add_constraints"].constraints == before.constraints + 1
    assert after["deepening"].depth > before.depth
    assert after["concretizing"].specific > before.specific
    assert after["increase_reasoning_steps"].reasoning > before.reasoning
    assert after["complicate_input"].blocks == 1 and before.blocks == 0
    assert len(after["breadth"].content & before.content) < len(before.content) / 2
    for op in range(5):  # depth rewrites keep the attached input after a blank line
        assert parse_rewrite(rewrite(backend, op, WITH_INPUT)).split("\n\n")[1] == "12, 7, 19, 4, 8"


def test_every_reply_format_parses_to_the_transformed_text():
    backend = SimulatedBackend(refusal_rate=0.0, echo_rate=0.0)
    replies = [rewrite(backend, op, f"Explain how tool {i} works.", i) for op in range(6) for i in range(40)]
    assert len({r.split("\n")[0][:12] for r in replies}) >= 4  # several styles: tags, chatter, labels, fences
    parsed = [parse_rewrite(r) for r in replies]
    assert all(p and "Note" not in p and "Rewritten" not in p and "<new" not in p for p in parsed)


def test_refusals_and_echoes_are_caught_by_the_gates():
    text = "Explain how a refrigerator keeps food cold."
    refusing = SimulatedBackend(refusal_rate=1.0, echo_rate=0.0)
    echoing = SimulatedBackend(refusal_rate=0.0, echo_rate=1.0)
    config = RewardConfig()
    for op in range(6):
        r = parse_rewrite(rewrite(refusing, op, text))
        assert elimination_reason(text, r, OPS.templates[op], config) == "refusal"
        e = parse_rewrite(rewrite(echoing, op, text))
        assert elimination_reason(text, e, OPS.templates[op], config) == "copies_template"


def test_reviewer_replies_parse_for_both_reward_kinds():
    backend = SimulatedBackend()
    old = "Explain how a refrigerator keeps food cold."
    new = old + " Use at least two concrete examples."
    scores = [parse_score(c.text)[0] for c in backend.generate(
        [fill_template(REVIEW_TEMPLATES["default"], old=old, new=new)] * 20, P, "reviewer")]
    assert all(3 <= s <= 5 for s in scores)  # heuristic 4.0 plus noise of at most 0.5, rounded
    verdicts = {parse_verdict(c.text)[0] for c in backend.generate(
        [fill_template(REVIEW_TEMPLATES["paper"], old=old, new=x) for x in (new, old)], P, "reviewer")}
    assert verdicts == {True, False}
    with pytest.raises(BackendRequestError, match="no review template"):
        backend.generate(["Rate this."], P, "reviewer")
    assert backend.accounting.get("reviewer")["errors"] == 1


def test_reviewer_logprobs_agree_with_the_text():
    """Asked for logprobs, the reviewer returns tokens that join to its reply, a peaked distribution whose
    likeliest score is the written one, and verdict probabilities that agree with the written verdict."""
    from teamsrl_jax.env.logprob_scores import score_from_logprobs, verdict_from_logprobs

    backend = SimulatedBackend()
    old = "Explain how a refrigerator keeps food cold."
    news = [old, old + " Avoid jargon.", old + " Use at least two concrete examples. Explain why each step matters.",
            "Write a haiku about rain.", old + "\n\n| a | b |\n|---|---|\n| 1 | 2 |"]
    params = SamplingParams(logprobs=20)
    for kind, read_text, read_tokens in (("default", parse_score, score_from_logprobs),
                                         ("paper", parse_verdict, verdict_from_logprobs)):
        prompts = [fill_template(REVIEW_TEMPLATES[kind], old=old, new=n) for n in news]
        out = backend.generate(prompts, params, "reviewer", list(range(len(prompts))))
        assert [c.text for c in out] == [c.text for c in backend.generate(prompts, P, "reviewer",
                                                                          list(range(len(prompts))))]
        for c in out:
            assert "".join(t.token for t in c.logprobs) == c.text
            assert all(t.top[0][1] == max(lp for _, lp in t.top) and len(t.top) <= 20 for t in c.logprobs)
            from_text, from_tokens = read_text(c.text)[0], read_tokens(c.logprobs)[0]
            if kind == "default":
                assert abs(from_tokens - from_text) < 0.75, c.text
            else:
                assert from_tokens is from_text, c.text
    with_ten = [c for c in backend.generate([fill_template(REVIEW_TEMPLATES["default"], old="Name a bird.",
                                                           new="Name a bird" + " Use at least two concrete examples. "
                                                           "Explain why each point holds, not just what it is. "
                                                           "Work through it step by step, showing each "
                                                           "intermediate result.\n\n| a | b |\n|---|---|\n| 1 | 2 |")]
                                            * 8, params, "reviewer") if parse_score(c.text)[0] == 10]
    assert with_ten and all(9 < score_from_logprobs(c.logprobs)[0] < 10 for c in with_ten)  # "1" then "0"
    plain = backend.generate([OPS.render(0, "Describe rain.")], SamplingParams(logprobs=2), "instructor")[0]
    assert "".join(t.token for t in plain.logprobs) == plain.text and all(t.logprob == 0 for t in plain.logprobs)
    assert backend.generate([OPS.render(0, "Describe rain.")], P, "instructor")[0].logprobs is None


def test_heuristic_is_state_dependent():
    seed = "Describe the water cycle for children."
    constrained = seed + " Use at least two concrete examples."
    steps = " Work through it step by step, showing each intermediate result."
    assert heuristic_score(constrained, constrained + steps) > heuristic_score(seed, seed + steps) + 2
    twice = constrained + " Avoid technical jargon throughout."
    assert heuristic_score(seed, constrained) > heuristic_score(constrained, twice) + 1  # diminishing returns
    table = "\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert heuristic_score(seed, seed + table) > 4 > heuristic_score(seed + table, seed + table + table)
    long = seed + " " + " ".join(["It must cover evaporation and rainfall and why clouds form."] * 6)
    fresh = "Explain how tardigrades survive complete dehydration."
    assert heuristic_score(long, fresh) > 6 > 2 > heuristic_score(seed, fresh)


def test_accounting_latency_and_responder():
    backend = SimulatedBackend(latency_s=0.05, concurrency=2)
    start = time.perf_counter()
    out = backend.generate([OPS.render(0, f"Task {i}.") for i in range(5)], P, "instructor")
    assert time.perf_counter() - start >= 0.15  # ceil(5 / 2) * 0.05
    counts = backend.accounting.get("instructor")
    assert counts["queries"] == 5 and counts["completion_tokens"] == sum(c.completion_tokens for c in out) > 0
    answer = SimulatedBackend().generate(["Explain tides."], P, "responder")[0].text
    assert answer.startswith("[simulated response]")
    assert SimulatedBackend.name == "simulated" and SimulatedBackend.simulated is True


def rule_policy(text):
    """A hand-written state-aware policy: long -> breadth; else fill the first missing dimension."""
    p = profile(text)
    if p.prose_words >= 45:
        return 5
    for needed, op in ((p.blocks == 0, 4), (p.constraints == 0, 0), (p.reasoning == 0, 3),
                       (p.specific == 0, 2), (p.depth < 2, 1)):
        if needed:
            return op
    return 5


def mean_episode_reward(policy, episodes, kind="default", n=64):
    env = InstructionEnv(EnvConfig.from_preset("default", num_chains=n, features="paper", reward={"kind": kind}),
                         SimulatedBackend())
    rng = np.random.default_rng(0)
    totals = []
    for _ in range(episodes):
        env.reset()
        total = np.zeros(n)
        for _ in range(env.config.horizon):
            if policy == "rule":
                actions = np.array([rule_policy(t) for t in env.texts])
            elif policy == "random":
                actions = rng.integers(0, env.num_actions, n)
            else:
                actions = np.full(n, policy)
            total += env.step(actions)[1]
        totals.append(total.mean())
    return float(np.mean(totals))


@pytest.mark.parametrize("kind", ["default", "paper"])
def test_state_aware_beats_random_beats_any_fixed_operation(kind):
    rule = mean_episode_reward("rule", 2, kind)
    random = mean_episode_reward("random", 2, kind)
    best_fixed = max(mean_episode_reward(op, 1, kind) for op in range(6))
    # measured (64 chains, these episode counts): default 2.20 > 1.48 > 0.66, paper 4.57 > 2.43 > 0.98
    assert rule > 1.3 * random and random > 1.8 * best_fixed


def test_latency_slots_are_shared_by_concurrent_callers():
    """Two batches of 64 in flight together on 64 slots take two latencies, not one; alone, one does."""
    import threading

    backend = SimulatedBackend(latency_s=0.2, concurrency=64)
    prompts = [OPS.render(0, f"Task {i}.") for i in range(64)]

    def finish_times(*batches):
        start, ends = time.perf_counter(), []
        threads = [threading.Thread(target=lambda b=b: (backend.generate(b, P, "instructor"),
                                                        ends.append(time.perf_counter() - start))) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(ends)

    alone, = finish_times(prompts)
    first, second = finish_times(prompts, prompts)
    assert 0.2 <= alone < 0.35 and 0.2 <= first < 0.35 and 0.4 <= second < 0.6  # first come, first served
    assert finish_times(prompts[:32], prompts[32:])[1] < 0.35  # 32 + 32 requests fit the 64 slots at once
    assert backend.accounting.get("instructor")["queries"] == 64 * 4
