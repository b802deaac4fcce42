"""The complexity rules on crafted instructions."""

import pytest

from teamsrl_jax.data_report.complexity import (constraint_count, has_numbered_list, is_structured, proxies,
                                                question_count, reasoning_count)


@pytest.mark.parametrize("text, count", [
    ("Write a poem of at least 100 words that must not mention the sea, and do not use rhyme.", 4),
    ("Keep it under $20, within 5-10 minutes and 50% shorter: a 2048-word limit.", 5),
    ("Describe a city while ensuring you include exactly three landmarks.", 4),   # while, ensuring, include, exactly
    ("No more than 3 sentences, only nouns, without adjectives.", 4),             # + "3 sentences"
    ("Tell me a joke.", 0),
    ("Onlyness and mustard are not cues.", 0),
])
def test_constraint_cues(text, count):
    assert constraint_count(text) == count


@pytest.mark.parametrize("text, count", [
    ("Explain step by step how to bake bread. List the steps and explain your reasoning.", 3),
    ("First boil the water, then add the pasta.", 1),
    ("Solve this multi-step problem and justify the answer.", 2),
    ("Answer the following:\n1. What is X?\n2. Why is Y?", 1),                  # a numbered list
    ("Answer (1) the first part and (2) the second.", 1),
    ("Add 1.5 and 2.5.", 0),
    ("Write a haiku.", 0),
])
def test_reasoning_cues(text, count):
    assert reasoning_count(text) == count


def test_numbered_list_needs_items_one_then_two():
    assert has_numbered_list("1. a\n2. b") and not has_numbered_list("2. b\n1. a") and not has_numbered_list("1. a")


@pytest.mark.parametrize("text, structured", [
    ("Sum the column.\n\n| a | b |\n|---|---|\n| 1 | 2 |", True),      # markdown table
    ("Fix it.\n\n```\nx = 1\n```", True),                              # fenced code
    ('Parse it:\n{"name": "x", "age": 3}', True),                      # JSON
    ("Load it.\n\nname,age,city\nbob,3,paris", True),                  # CSV
    ("Describe.\n\nMichelle Obama | author of | Becoming\nChicago | city in | Illinois", True),  # delimited triples
    ("Comment it.\n\ndef f(x):\n    return x + 1", True),              # code without fences
    ("Sort the list [10, 2, 5, -4].", True),                           # a bracketed list of numbers
    ("Fill the <mask>.\n<html><title>t</title></html>", True),         # XML/HTML
    ("Write, please, a poem, now.", False),
    ("Buy apples, pears.\nThen rest, sleep.", False),                  # sentences, not rows
    ("Load it.\n\nname,age\nbob,3,paris", False),                      # different field counts
    ("Replace <mask> with a word.", False),
])
def test_structured_input(text, structured):
    assert is_structured(text) is structured


def test_questions_and_all_proxies():
    assert question_count("What? Really?? Why?") == 3
    assert proxies("What is 2 + 2? You must answer in 1 word.") == {
        "constraints": 2, "reasoning": 0, "structured": 0, "questions": 1}
