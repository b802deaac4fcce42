"""Each figure of one dataset against hand computation on small hand-made datasets."""

import pytest

from teamsrl_jax.data_report.readers import Dataset, Example
from teamsrl_jax.data_report.stats import (dataset_stats, distinct_n, length_summary, near_duplicates,
                                           operation_mix)
from teamsrl_jax.env.text import words


def test_distinct_n_counts_ngrams_within_each_instruction():
    tokens = [words(t) for t in ["The cat sat.", "the CAT ran", "Hi"]]
    # unigrams: the cat sat the cat ran hi -> 5 distinct of 7; bigrams: the-cat cat-sat the-cat cat-ran -> 3 of 4
    # (no "sat the": n-grams never span two instructions); trigrams: the-cat-sat the-cat-ran -> 2 of 2
    assert distinct_n(tokens, 1) == pytest.approx(5 / 7)
    assert distinct_n(tokens, 2) == pytest.approx(3 / 4)
    assert distinct_n(tokens, 3) == 1.0
    assert distinct_n([["hi"], ["yo"]], 2) is None


def test_length_summary_by_hand():
    s = length_summary([3, 10, 1, 3])
    # sorted 1 3 3 10; p10 at rank 0.3: 1 + 0.3 * 2; p90 at rank 2.7: 3 + 0.7 * 7
    assert s == {"n": 4, "mean": 4.25, "median": 3.0, "p10": pytest.approx(1.6), "p90": pytest.approx(7.9),
                 "max": 10}
    assert length_summary([])["mean"] is None


BASE = "write a short poem about the sea and the sky at night"  # 12 tokens


def test_near_duplicate_rate_with_known_near_copies():
    texts = [
        BASE,
        BASE.replace("poem", "song"),                                   # LCS 11 of 12: F 0.917, dropped
        "list three prime numbers greater than one hundred",
        "List three prime numbers greater than one hundred!",           # the same tokens: F 1, dropped
        "write a long essay about the war and the peace in winter",     # LCS 7 of 12: F 0.583, kept
    ]
    assert near_duplicates(texts, 0.7) == {"count": 2, "rate": 0.4}
    assert near_duplicates(texts, 0.95) == {"count": 1, "rate": 0.2}


def test_operation_mix_from_provenance():
    examples = [Example("a", operation="deepen", step=1), Example("b", operation="breadth", step=1),
                Example("c", operation="deepen", step=2), Example("d")]
    mix = operation_mix(examples)
    assert mix["records"] == 3 and mix["share_of_records"] == 0.75
    assert mix["count"] == {"deepen": 2, "breadth": 1}
    assert mix["share"] == {"deepen": pytest.approx(2 / 3), "breadth": pytest.approx(1 / 3)}
    assert mix["by_step"] == {"1": {"records": 2, "share": {"deepen": 0.5, "breadth": 0.5}},
                              "2": {"records": 1, "share": {"deepen": 1.0}}}
    assert operation_mix([Example("a"), Example("b")]) is None


def test_dataset_stats_reads_instruction_with_input_and_outputs_that_exist():
    ds = Dataset("toy", "toy.jsonl", "alpaca", (
        Example("Summarize the text.", "alpha beta gamma delta epsilon zeta eta theta iota kappa", "Short."),
        Example("Summarize the text.", "one two three four five six seven eight nine ten", ""),
        Example("Is it safe? Explain step by step.", output="Yes it is"),
    ), 3)
    s = dataset_stats(ds)
    assert s["records"] == 3 and s["with_input"] == pytest.approx(2 / 3) and s["with_output"] == pytest.approx(2 / 3)
    assert s["instruction_words"]["mean"] == pytest.approx((13 + 13 + 7) / 3)
    assert s["output_words"] == length_summary([1, 3])
    assert s["near_duplicates"]["count"] == 0  # same instruction, different inputs: not near-duplicates
    assert s["complexity"]["reasoning"] == {"mean": pytest.approx(1 / 3), "share": pytest.approx(1 / 3)}
    assert s["complexity"]["questions"]["mean"] == pytest.approx(1 / 3)
    assert s["operations"] is None
