"""Reviewer parsers on adversarial replies, elimination gates, novelty memory, and the reward of an env step."""

import json
import math

import numpy as np
import pytest

from teamsrl_jax.backends.accounting import QueryAccounting
from teamsrl_jax.backends.base import Backend, Completion, TokenLogprob
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv
from teamsrl_jax.env.operations import OperationSet
from teamsrl_jax.env.reward import (ELIMINATION_REASONS, NoveltyMemory, RewardConfig, copies_template,
                                    elimination_reason, parse_score, parse_verdict)
from teamsrl_jax.env.seeds import SeedPool

TEMPLATE = OperationSet().templates[0]


@pytest.mark.parametrize("reply, verdict", [
    ("Not Equal", True), ("Not Equal.", True), ("**Not equal**", True), ("They are not equal", True),
    ("Answer: Not Equal", True), ('"Not Equal"', True), ("NOT EQUAL", True), ("They aren't equal.", True),
    ("They are not the same.", True), ("The second is different.", True), ("Unequal", True),
    ("Not Equal. Although both are equal in length, the second adds a rule.", True),
    ("Equal", False), ("equal.", False), ("They are equal.", False), ("not unequal", False),
    ("They are not different.", False), ("They don't differ.", False), ("Verdict - Equal", False),
    ("Answer: Equal\nI first thought they were not equal.", False),
    ("Equal or Not Equal? Not Equal.", None), ("Hmm, hard to say.", None), ("", None),
])
def test_parse_verdict(reply, verdict):
    got, note = parse_verdict(reply)
    assert got is verdict
    assert (note == "") == (verdict is not None)


def test_parse_verdict_notes_explain_failures():
    assert parse_verdict("Equal or Not Equal?")[1] == "reviewer said both Equal and Not Equal"
    assert parse_verdict("no idea")[1] == "no Equal / Not Equal verdict in the reviewer reply"


@pytest.mark.parametrize("reply, score", [
    ("Score: 7", 7.0), ("7/10", 7.0), ("**8**", 8.0), ("Rating - 6 out of 10", 6.0), ("Score: 7.5", 7.5),
    ("10/10", 10.0), ("1", 1.0), ("Score: 10/10", 10.0), ("score of 6", 6.0), ("**Score:** 8", 8.0),
    ("Score: **8**", 8.0), ("Score (1-10): 7", 7.0), ("8. A solid rewrite.", 8.0),
    ("I'd give it 8/10. It adds 2 constraints and 3 steps.", 8.0),
    ("The rewrite adds 3 constraints; Score: 9", 9.0), ("Score: 7\nOn reflection, final score: 8", 8.0),
    ("Score: 12", None), ("Score: 0", None), ("4/5", None), ("It adds 3 steps.", None), ("no idea", None),
    ("", None),
])
def test_parse_score(reply, score):
    got, note = parse_score(reply)
    assert got == score
    assert (note == "") == (score is not None)


def test_parse_score_notes():
    assert parse_score("Score: 12")[1] == "score 12 outside 1-10"
    assert parse_score("4/5")[1] == "score 4/5 is not on the 1-10 scale"


OLD = "Explain how a refrigerator keeps food cold."


@pytest.mark.parametrize("rewrite, reason", [
    (None, "parse_failure"),
    ("The and of, to the!", "empty"),
    ("tags.", "fragment"),
    ("Kyoto, Japan", "fragment"),
    ("Do it now.", "fragment"),                      # one content word
    ("I hope this helps! Let me know if you need more.", "fragment"),
    ("I'm sorry, but I cannot rewrite this instruction.", "refusal"),
    ("As an AI language model I am unable to do that.", "refusal"),
    (OLD + " #Rewritten Prompt# must be harder.", "copies_template"),
    (OLD + " Keep any table, code, data or quoted input of the original exactly as it is.", "copies_template"),
    (OLD, "no_information_gain"),
    ("Explain how a refrigerator keeps food cold", "no_information_gain"),
    (OLD + " Use at least two concrete examples.", ""),
    ("Describe how bees navigate using the position of the sun.", ""),
])
def test_elimination_reason(rewrite, reason):
    assert elimination_reason(OLD, rewrite, TEMPLATE, RewardConfig()) == reason


def test_gates_off_keeps_everything_but_format_failures():
    config = RewardConfig(eliminate=False)
    assert elimination_reason(OLD, OLD, TEMPLATE, config) == ""
    assert elimination_reason(OLD, "I'm sorry, but I cannot rewrite this instruction.", TEMPLATE, config) == ""
    assert elimination_reason(OLD, None, TEMPLATE, config) == "parse_failure"
    assert elimination_reason(OLD, "...", TEMPLATE, config) == "empty"
    assert elimination_reason(OLD, "tags.", TEMPLATE, config) == "fragment"
    assert elimination_reason(OLD, "Define entropy.", TEMPLATE, RewardConfig(min_words=2)) == ""


def test_template_copy_ignores_wording_the_old_instruction_had():
    old = "Quote the line: keep any table, code, data or quoted input of the original exactly as it is."
    assert not copies_template(old, old + " Then explain it.", TEMPLATE)


def test_novelty_memory_jaccard_and_ring_buffer():
    memory = NoveltyMemory(capacity=2, dim=256)
    assert memory.max_similarity(["anything"]).tolist() == [0.0]
    memory.add(["red green blue"])
    # unigrams {red, green, blue} + bigrams {red green, green blue} vs {red, green} + {red green}: 3/5
    assert memory.max_similarity(["red green blue", "red green", "violet"]) == pytest.approx([1.0, 0.6, 0.0])
    memory.add(["one"])
    memory.add(["two"])  # evicts "red green blue"
    assert memory.max_similarity(["red green blue", "two"]) == pytest.approx([0.0, 1.0])


class Scripted(Backend):
    """The instructor returns ``rewrites`` (one per chain, in answer tags unless ``raw``; None: an empty reply,
    which fails to parse); the reviewer replies ``review`` (a text, or a Completion) to every prompt. Records
    every call."""

    name, model = "scripted", "scripted"

    def __init__(self, rewrites, review, raw=False):
        self.rewrites, self.review, self.raw, self.calls, self.accounting = rewrites, review, raw, [], QueryAccounting()

    def generate(self, prompts, params, role, sample_indices=None):
        self.calls.append((role, list(prompts), params))
        if role == "instructor":
            return [Completion("" if r is None else r if self.raw else f"<new_instruction>{r}</new_instruction>")
                    for r in self.rewrites]
        return [self.review if isinstance(self.review, Completion) else Completion(self.review) for _ in prompts]


def reward_env(reward, rewrites, review, raw=False, **config):
    """An environment whose chains all start from OLD and take operation 0 (whose template is TEMPLATE)."""
    backend = Scripted(rewrites, review, raw)
    config = EnvConfig(num_chains=len(rewrites), horizon=1, reward=reward, **config)
    return InstructionEnv(config, backend, seeds=SeedPool([OLD])), backend


def reward_step(env):
    """One episode of one step; (rewards, info)."""
    env.reset()
    _, rewards, _, info = env.step(np.zeros(env.config.num_chains, np.int64))
    assert info["parents"] == [OLD] * env.config.num_chains
    return rewards, info


def test_default_reward_gates_one_call_and_novelty():
    env, backend = reward_env(RewardConfig(novelty_weight=0.1),
                              [OLD + " Use at least two concrete examples.", None, OLD], "Score: 10")
    rewards, info = reward_step(env)
    reviews = [prompts for role, prompts, _ in backend.calls if role == "reviewer"]
    assert len(reviews) == 1 and len(reviews[0]) == 1
    assert info["eliminated"] == ["", "parse_failure", "no_information_gain"]
    assert rewards.tolist() == pytest.approx([1.1, 0.0, 0.0])
    assert info["reward_components"]["kept"].tolist() == [1.0, 0.0, 0.0]
    assert info["reward_components"]["score"][0] == 10.0 and math.isnan(info["reward_components"]["score"][1])
    assert info["reviewer_replies"] == ["Score: 10", None, None]
    rewards, info = reward_step(env)  # the next episode: the same rewrite is now remembered
    assert info["reward_components"]["novelty"][0] == 0.0 and rewards[0] == pytest.approx(1.0)


def test_default_reward_unparseable_score_is_zero_with_note():
    rewards, info = reward_step(reward_env(RewardConfig(), [OLD + " Avoid jargon."], "Great!")[0])
    assert rewards.tolist() == [0.0] and info["reviewer_notes"] == ["no score in the reviewer reply"]


def test_paper_reward_counts_not_equal_with_full_stop():
    rewards, info = reward_step(reward_env(RewardConfig(kind="paper", eliminate=False), [OLD, None],
                                           "Not Equal.")[0])
    assert rewards.tolist() == [1.0, 0.0]  # the original's exact match would have scored 0
    assert set(info["reward_components"]) == {"kept", "not_equal", "verdict_parsed", "from_logprobs"}


def test_no_reviewer_call_when_everything_is_eliminated():
    env, backend = reward_env(RewardConfig(), [None], "Score: 9")
    rewards, _ = reward_step(env)
    assert [role for role, _, _ in backend.calls] == ["instructor"] and rewards.tolist() == [0.0]


def test_reward_config_validation():
    with pytest.raises(ValueError, match="reward.kind"):
        RewardConfig(kind="graded")
    with pytest.raises(ValueError, match="reward.max_overlap"):
        RewardConfig(max_overlap=0)
    with pytest.raises(ValueError, match="reward.novelty_weight"):
        RewardConfig(novelty_weight=-1)
    with pytest.raises(ValueError, match=r"reward.max_overlap must be in \(0, 1\], got nan"):
        RewardConfig(max_overlap=math.nan)
    with pytest.raises(ValueError, match="reward.novelty_weight must be >= 0, got nan"):
        RewardConfig(novelty_weight=math.nan)
    with pytest.raises(ValueError, match="reward.novelty_memory must be >= 1, got 0"):
        RewardConfig(novelty_memory=0)
    with pytest.raises(ValueError, match="reward.refusal_max_words must be >= 0, got -1"):
        RewardConfig(refusal_max_words=-1)
    with pytest.raises(ValueError, match="reward.min_words must be an integer >= 1, got 0"):
        RewardConfig(min_words=0)
    with pytest.raises(ValueError, match="reward.score_from must be one of logprobs, text, got 'tokens'"):
        RewardConfig(score_from="tokens")
    assert RewardConfig(max_overlap=1.0, refusal_max_words=0, novelty_weight=0.0, novelty_memory=1).max_overlap == 1.0


@pytest.mark.parametrize("name, key", [("teams_rl_original_generated_1386.jsonl", "instruction"),
                                       ("wizardlm_testset_218.jsonl", "Instruction")])
def test_gates_keep_real_evolved_instructions(shared_data, name, key):
    """No false eliminations on real, clean evolved instructions (against an unrelated short parent)."""
    import json
    rows = [json.loads(line)[key] for line in (shared_data / "reference" / name).read_text().splitlines()]
    templates = OperationSet().templates
    flagged = [(t[:60], elimination_reason("Write a poem.", t, templates[i % 6], RewardConfig()))
               for i, t in enumerate(rows)]
    assert [f for f in flagged if f[1]] == []


def test_novelty_memory_batched_encode_and_add_equal_one_at_a_time():
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(list("abcdefghij"), rng.integers(1, 8))) for _ in range(40)] + ["", "!!"]
    batched, single = NoveltyMemory(capacity=5, dim=128), NoveltyMemory(capacity=5, dim=128)
    codes = batched.encode(texts)
    assert np.array_equal(codes, np.concatenate([single.encode([t]) for t in texts]))
    start = 0
    for k in (1, 3, 0, 7, 2, 12, 17):  # batches smaller and larger than the ring
        batched.add_encoded(codes[start:start + k])
        for text in texts[start:start + k]:
            single.add([text])
        start += k
        assert all(np.array_equal(a, b) for a, b in zip(batched.state_dict().values(), single.state_dict().values()))
        assert np.array_equal(batched.max_similarity(texts), single.max_similarity(texts))


# What SmolLM2-135M-Instruct, served by llama.cpp, answered to our instructor prompts (and variants of it).
REAL_MODEL_REPLIES = [
    ("<<< Explain how a refrigerator keeps food cold. >>", "no_information_gain"),          # the parent, echoed
    ("<<<\nExplain how a refrigerator keeps food cold.\n>>>\n\n<new_instruction></new_instruction>",
     "no_information_gain"),
    ("Explain how a refrigerator keeps food cold. >>", "no_information_gain"),
    ("<new_instruction> tags.", "parse_failure"),                                            # was kept as "tags."
    ("<new_instruction>tags.</new_instruction>", "parse_failure"),
    ("<new_instruction>>></new_instruction>", "parse_failure"),
    ("Reply with the new instruction only, enclosed in <new_instruction> tags.", "copies_template"),
    (OperationSet().render(0, OLD), "copies_template"),                                      # the whole prompt
    ("<new_instruction>Refrigerator.</new_instruction>", "fragment"),
    ("<new_instruction>Kyoto</new_instruction>", "fragment"),
    ("I hope this helps!", "fragment"),
    ("Sure! Here is the rewritten instruction:", "parse_failure"),
    ("<<< Explain how a refrigerator keeps food cold, naming the two phase changes of its refrigerant. >>\n"
     "A refrigerator works by pumping heat out of the box.", ""),                           # an answer follows
    ("<new_instruction>Explain how a refrigerator keeps food cold without electricity.</new_instruction>", ""),
]


@pytest.mark.parametrize("kind", ["default", "paper"])
def test_real_model_replies_are_eliminated_with_a_named_reason(kind):
    """Every reply that fails the format is counted with its reason; none is kept as a fragment. The paper
    preset (no quality gates) still drops the format failures."""
    replies, expected = zip(*REAL_MODEL_REPLIES)
    reward = RewardConfig(kind=kind, eliminate=kind == "default")
    env, _ = reward_env(reward, list(replies), "Score: 6" if kind == "default" else "Not Equal", raw=True)
    rewards, info = reward_step(env)
    format_failures = ("parse_failure", "empty", "fragment")
    want = [e if kind == "default" or e in format_failures else "" for e in expected]
    assert info["eliminated"] == want
    assert set(info["eliminated"]) - {""} <= set(ELIMINATION_REASONS)
    kept = [i for i, e in enumerate(want) if not e]
    assert [info["rewrites"][i] for i in kept][-1] == "Explain how a refrigerator keeps food cold without electricity."
    assert all(rewards[i] > 0 for i in kept) and all(rewards[i] == 0 for i in range(len(want)) if want[i])


def lp(*pieces):
    """TokenLogprobs from (token, {alternative: probability}) pairs or certain tokens."""
    out = []
    for piece in pieces:
        token, probs = (piece, {piece: 1.0}) if isinstance(piece, str) else piece
        out.append(TokenLogprob(token, math.log(probs[token]), tuple((t, math.log(p)) for t, p in probs.items())))
    return out


NEW = OLD + " Use at least two concrete examples."


def test_default_score_from_logprobs_with_text_fallback():
    peaked = Completion("Score: 7", logprobs=lp("Score", ":", (" 7", {" 7": 0.5, " 8": 0.5})))
    rewards, info = reward_step(reward_env(RewardConfig(novelty_weight=0.0), [NEW], peaked)[0])
    assert info["reward_components"]["score"][0] == pytest.approx(7.5)
    assert info["reward_components"]["from_logprobs"][0] == 1.0 and info["score_sources"] == ["logprobs"]
    assert rewards[0] == pytest.approx(6.5 / 9)
    # the same completion read as text
    _, info = reward_step(reward_env(RewardConfig(score_from="text"), [NEW], peaked)[0])
    assert info["reward_components"]["score"][0] == 7.0 and info["score_sources"] == ["text"]
    assert info["reward_components"]["from_logprobs"][0] == 0.0
    # probabilities with no score position: the text decides; neither: no score, with the text's note
    for text, source, score in (("Score: 9", "text", 9.0), ("Great!", "", math.nan)):
        reply = Completion(text, logprobs=lp("Great", "!"))
        _, info = reward_step(reward_env(RewardConfig(), [NEW], reply)[0])
        assert info["score_sources"] == [source]
        np.testing.assert_equal(info["reward_components"]["score"][0], np.float32(score))
    assert info["reviewer_notes"] == ["no score in the reviewer reply"]


def test_paper_verdict_from_logprobs():
    unsure = Completion("Not Equal", logprobs=lp(("Not", {"Not": 0.4, "Equal": 0.6}), " Equal"))
    rewards, info = reward_step(reward_env(RewardConfig(kind="paper", eliminate=False), [NEW, NEW], unsure)[0])
    assert rewards.tolist() == [0.0, 0.0] and info["score_sources"] == ["logprobs"] * 2  # "Equal" is likelier
    assert info["reward_components"]["verdict_parsed"].tolist() == [1.0, 1.0]
    rewards, info = reward_step(reward_env(RewardConfig(kind="paper", score_from="text"), [NEW], unsure)[0])
    assert rewards.tolist() == [1.0] and info["reward_components"]["from_logprobs"].tolist() == [0.0]


def test_reviewer_logprobs_are_asked_for_through_the_config():
    env, backend = reward_env(RewardConfig(), [NEW], "Score: 5", reviewer={"logprobs": 20})
    reward_step(env)
    assert [(role, params.logprobs) for role, _, params in backend.calls] == [("instructor", None), ("reviewer", 20)]


def test_a_resumed_run_reads_the_same_probabilities_from_the_cache(tmp_path):
    """Rewards scored from probabilities are the same when every reviewer reply comes from the cache."""
    from teamsrl_jax.backends.cache import CachedBackend, CompletionCache
    from teamsrl_jax.env.simulator import SimulatedBackend

    class Unreachable(SimulatedBackend):
        def generate(self, *args, **kwargs):
            raise AssertionError("a resumed run must not query the model")

    def run(inner):
        backend = CachedBackend(inner, CompletionCache(tmp_path / "cache.sqlite"))
        config = EnvConfig.from_preset("default", num_chains=6, horizon=3, reviewer={"logprobs": 20})
        env = InstructionEnv(config, backend)
        env.reset()
        steps = [env.step(np.arange(6) % 6)[1:] for _ in range(3)]
        backend.close()
        return [(r.tolist(), i["score_sources"], {k: v.tolist() for k, v in i["reward_components"].items()})
                for r, _, i in steps]

    first = run(SimulatedBackend())
    sources = [s for _, step_sources, _ in first for s in step_sources]
    assert sources.count("logprobs") > 6 and "text" not in sources
    scores = [x for _, _, c in first for x in c["score"] if not math.isnan(x)]
    assert any(x != round(x) for x in scores)  # probability-weighted means, not the written integers
    assert json.dumps(run(Unreachable())) == json.dumps(first)


@pytest.mark.parametrize("kind,label", [("default", "Score:"), ("paper", "Answer:")])
def test_prefill_opens_the_review_with_its_label(kind, label):
    """With ``prefill`` the reviewer's reply starts after the label its template asks for, so a model that would
    not follow the format still answers with a score or verdict first (the simulator continues it so)."""
    from teamsrl_jax.env.simulator import SimulatedBackend

    env, backend = reward_env(RewardConfig(kind=kind, prefill=True), [NEW], " 8\nBetter.", reviewer={"logprobs": 5})
    reward_step(env)
    assert [(role, params.prefix) for role, _, params in backend.calls] == [("instructor", None), ("reviewer", label)]
    config = EnvConfig.from_preset("default" if kind == "default" else "paper", num_chains=4, horizon=2,
                                   reward={"prefill": True}, reviewer={"logprobs": 20})
    real = InstructionEnv(config, SimulatedBackend())
    real.reset()
    _, _, _, info = real.step(np.arange(4) % 6)
    replies = [r for r in info["reviewer_replies"] if r is not None]
    assert replies and all(not r.lower().startswith(label.lower()) for r in replies)  # the continuation only
    assert info["score_sources"].count("logprobs") == len(replies)
