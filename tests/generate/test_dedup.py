"""ROUGE-L near-duplicate filter: rouge_score's numbers, and the indexed filter against the all-pairs one on real
instructions with near-copies mixed in (Self-Instruct and Alpaca seeds, TeaMs-RL's generated set, WizardLM's set)."""

import json
import math
import random

import numpy as np
import pytest

from teamsrl_jax.generate.dedup import NearDuplicateFilter, all_pairs_filter, rouge_l_f, rouge_tokens

SOURCES = [  # (file, field, how many to sample)
    ("seeds/self_instruct_seed_tasks.jsonl", "instruction", 80),
    ("seeds/alpaca_sample_999.json", "instruction", 120),
    ("seeds/self_instruct_user_oriented_252.jsonl", "instruction", 50),
    ("reference/teams_rl_original_generated_1386.jsonl", "instruction", 100),
    ("reference/wizardlm_testset_218.jsonl", "Instruction", 25),
]
FILLERS = ["please", "the", "new", "short", "data", "text", "list", "very", "and", "a"]


def read_instructions(path, field):
    if path.suffix == ".json":
        records = json.loads(path.read_text())
    else:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(r[field] for r in records))


def near_copy(text, rng):
    """Drop, insert or substitute a few words, change a word's case or add punctuation."""
    words = text.split() or ["empty"]
    for _ in range(rng.randint(1, 3)):
        op, i = rng.randrange(5), rng.randrange(len(words))
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(FILLERS))
        elif op == 2:
            words[i] = rng.choice(FILLERS)
        elif op == 3:
            words[i] = words[i].upper()
        else:
            words[i] += rng.choice(",.;:!?")
    return " ".join(words)


@pytest.fixture(scope="module")
def seed_texts(shared_data):
    return read_instructions(shared_data / SOURCES[0][0], SOURCES[0][1])


@pytest.fixture(scope="module")
def stream(shared_data):
    """~600 real instructions in shuffled order, each followed with probability 0.4 (repeatedly) by a near-copy of
    an earlier item, so that many are dropped."""
    rng = random.Random(0)
    base = []
    for name, field, count in SOURCES:
        texts = read_instructions(shared_data / name, field)
        base += rng.sample(texts, count)
    rng.shuffle(base)
    out = []
    for text in base:
        out.append(text)
        while rng.random() < 0.4:
            out.append(near_copy(rng.choice(out[-20:]), rng))
    return out


@pytest.fixture(scope="module")
def scores(stream):
    """scores[i, j] = rouge_l_f(stream i, stream j) for j < i: every pair once."""
    tokens = [rouge_tokens(t) for t in stream]
    out = np.zeros((len(stream), len(stream)))
    for i in range(len(stream)):
        for j in range(i):
            out[i, j] = rouge_l_f(tokens[i], tokens[j])
    return out


def expected(scores, threshold):
    """Per item: (kept, max score against the kept ones, position of the first maximum in the kept list)."""
    kept, out = [], []
    for i in range(len(scores)):
        row = scores[i, kept]
        best = float(row.max()) if kept else 0.0
        out.append((best < threshold, best, int(row.argmax()) if kept else None))
        if best < threshold:
            kept.append(i)
    return out


def test_tokens_and_scores_equal_rouge_score(stream):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="rouge-score not installed (test extra)")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tokenizer = scorer._tokenizer
    odd = ["", "!!!", "你好，世界", "İstanbul ŞEHRİ", "Kelvin: 5 \u212a", "ＡＢＣ full-width", "Straße n°5", "tab\tnew\nline",
           "don't re-use e-mail_addresses x2", "Ⅻ roman, α-beta 3.14"]
    for text in stream + odd:
        assert rouge_tokens(text) == tokenizer.tokenize(text)
    rng = random.Random(1)
    short = [t for t in stream if len(t) < 250]
    pairs = list(zip(short, short[1:])) + [(a, near_copy(a, rng)) for a in short[:150]]
    pairs += [tuple(rng.sample(short, 2)) for _ in range(300)] + [(a, b) for a in odd for b in odd[:4] + short[:3]]
    wants = [scorer.score(a, b)["rougeL"].fmeasure for a, b in pairs]
    for (a, b), want in zip(pairs, wants):
        assert rouge_l_f(rouge_tokens(b), rouge_tokens(a)) == want == rouge_l_f(rouge_tokens(a), rouge_tokens(b))
    assert len(set(wants)) > 100 and sum(w >= 0.7 for w in wants) > 100


def test_all_pairs_filter_is_the_greedy_rule(stream, scores):
    want = [kept for kept, _, _ in expected(scores, 0.7)]
    assert all_pairs_filter(stream, 0.7) == want
    assert 0.2 < 1 - np.mean(want) < 0.6  # many drops


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
@pytest.mark.parametrize("vocabulary", ["none", "seeds", "stream"])
def test_filter_equals_all_pairs(stream, scores, seed_texts, threshold, vocabulary):
    corpus = {"none": None, "seeds": seed_texts, "stream": stream}[vocabulary]
    dedup = NearDuplicateFilter(threshold, vocabulary=corpus)
    for text, (kept, best, first) in zip(stream, expected(scores, threshold)):
        got_kept, score, match = dedup.offer(text)
        assert got_kept == kept
        if not kept:  # exact score and the first kept text reaching it
            assert (score, match) == (best, first)
        else:
            assert score <= best and score < threshold
    assert len(dedup) == sum(k for k, _, _ in expected(scores, threshold))


def test_filter_method_and_thresholds_one_and_low(stream, scores):
    head = stream[:250]
    for threshold in (0.3, 1.0):
        want = [kept for kept, _, _ in expected(scores[:250, :250], threshold)]
        assert NearDuplicateFilter(threshold).filter(head) == want
        assert NearDuplicateFilter(threshold).filter(head, progress=True) == want


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8])
def test_filter_equals_all_pairs_on_repetitive_token_lists(threshold):
    """Few distinct words, many repeats: the (token, k-th occurrence) elements and the LCS < overlap cases."""
    rng = random.Random(threshold)
    texts = [" ".join(rng.choices("abcdef"[:rng.randint(2, 6)], k=rng.randint(1, 16))) for _ in range(300)]
    want = all_pairs_filter(texts, threshold)
    assert NearDuplicateFilter(threshold).filter(texts) == want and 20 < sum(want) < 280


def test_exactly_at_the_threshold_is_a_duplicate():
    a, b = "a b c d e f g h i j", "a b c d e f g x y z"  # LCS 7 of 10 and 10: rouge_score gives exactly 0.7
    assert rouge_l_f(rouge_tokens(a), rouge_tokens(b)) == 0.7
    assert NearDuplicateFilter(0.7).filter([a, b]) == all_pairs_filter([a, b], 0.7) == [True, False]
    assert NearDuplicateFilter(0.7000001).filter([a, b]) == [True, True]
    # 7 of 7 and 13 tokens: exactly 0.7 in reals, 0.7000000000000001 in rouge_score's floats
    short, long = "a b c d e f g", "a x b c y d e z f g u v w"
    assert rouge_l_f(rouge_tokens(short), rouge_tokens(long)) == 0.7000000000000001
    assert NearDuplicateFilter(0.7).filter([long, short]) == [True, False]


def test_hand_computed_scores():
    f = rouge_l_f(rouge_tokens("The cat sat on the mat."), rouge_tokens("the cat LAY on the mat"))
    assert f == 2 * (5 / 6) * (5 / 6) / (5 / 6 + 5 / 6)
    # repeated tokens: the multiset overlap is 4 but the LCS only 3
    a, b = "a a a b", "a b a a"
    assert rouge_l_f(rouge_tokens(a), rouge_tokens(b)) == 0.75
    assert NearDuplicateFilter(0.75).filter([a, b]) == [True, False]
    assert NearDuplicateFilter(0.76).filter([a, b]) == [True, True]
    dedup = NearDuplicateFilter(0.9)
    assert dedup.add("x x x x x") == 0 and dedup.add("y") == 1 and len(dedup) == 2
    assert dedup.check("x x x x x x") == (2 * (5 / 6) * 1 / (5 / 6 + 1), 0)  # 0.909...
    assert dedup.offer("x x x x x x x x x x x") == (True, 0.0, None)  # 11 tokens: out of the size range


def test_empty_token_texts_are_never_duplicates():
    texts = ["", "!!!", "你好，世界", "你好，世界", "...", "Write a poem.", "write a poem"]
    assert NearDuplicateFilter(0.7).filter(texts) == all_pairs_filter(texts) == [True] * 6 + [False]
    dedup = NearDuplicateFilter(0.7)
    dedup.add("")
    assert dedup.check("") == (0.0, None) and dedup.check("Write a poem.") == (0.0, None)
    assert rouge_l_f([], ["a"]) == rouge_l_f(["a"], []) == 0.0


@pytest.mark.parametrize("threshold", [0, -0.5, 1.5, math.nan])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        NearDuplicateFilter(threshold)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        all_pairs_filter(["a"], threshold)
