"""Reading the reviewer's score and verdict from token probabilities: the position, the renormalised mean,
"10" as "1" + "0", and the cases where there is nothing to read."""

import math

import pytest

from teamsrl_jax.backends.base import TokenLogprob
from teamsrl_jax.env.logprob_scores import score_from_logprobs, verdict_from_logprobs


def toks(*pieces):
    """Each piece is a token (certain) or (token, {alternative: probability}) with the token among them."""
    out = []
    for piece in pieces:
        token, probs = (piece, {piece: 1.0}) if isinstance(piece, str) else piece
        top = tuple(sorted(((t, math.log(p)) for t, p in probs.items()), key=lambda kv: -kv[1]))
        out.append(TokenLogprob(token, math.log(probs[token]), top))
    return out


def score(*pieces):
    return score_from_logprobs(toks(*pieces))[0]


def test_mean_over_the_score_tokens_renormalised():
    assert score("Score", ":", (" 7", {" 7": 0.5, " 8": 0.2, " 6": 0.1, " seven": 0.1, " N": 0.1})) == \
        pytest.approx((7 * 0.5 + 8 * 0.2 + 6 * 0.1) / 0.8)
    assert score((" 4", {" 4": 0.6, "4": 0.2, " 5": 0.2}), "/", "1", "0") == pytest.approx(4.2)  # " 4" and "4"
    assert score("Score", ":", " ", ("3", {"3": 0.9, "0": 0.05, "11": 0.05})) == pytest.approx(3.0)  # 0, 11: out


def test_ten_as_one_then_zero_is_split_by_the_next_position():
    # generated "1" then "0": P(1 or 10) = 0.5 splits 0.8 : 0.15 at the next position
    assert score("Score", ":", (" 1", {" 1": 0.5, " 9": 0.5}), ("0", {"0": 0.8, "\n": 0.15, "1": 0.05})) == \
        pytest.approx(10 * 0.5 * 0.8 / 0.95 + 1 * 0.5 * 0.15 / 0.95 + 9 * 0.5)  # "1" after "1": 11, dropped
    exact = score((" 1", {" 1": 0.5, " 9": 0.5}), ("0", {"0": 0.8, "/": 0.2}))
    assert exact == pytest.approx(10 * 0.4 + 1 * 0.1 + 9 * 0.5)
    # generated "1" that ended the number: the next position still gives the share of "0"
    assert score((" 1", {" 1": 0.9, " 2": 0.1}), ("/", {"/": 0.75, "0": 0.25}), "1", "0") == \
        pytest.approx(10 * 0.225 + 1 * 0.675 + 2 * 0.1)
    assert score("Score", ":", (" 1", {" 1": 1.0})) == 1.0  # the reply ends: 1


def test_an_unsplittable_one_goes_to_the_nearer_end_of_the_scale():
    assert score((" 9", {" 9": 0.7, " 1": 0.3}), "/", "1", "0") == pytest.approx(9 * 0.7 + 10 * 0.3)
    assert score((" 2", {" 2": 0.7, " 1": 0.3})) == pytest.approx(2 * 0.7 + 1 * 0.3)
    # a tokenizer with a "10" token of its own: "1" is 1
    assert score((" 10", {" 10": 0.6, " 9": 0.3, " 1": 0.1})) == pytest.approx(6 + 2.7 + 0.1)


@pytest.mark.parametrize("pieces, expected", [
    (("Score", " (", ("1", {"1": 1.0}), "-", "1", "0", "):", (" 7", {" 7": 0.5, " 9": 0.5})), 8.0),  # the scale
    (("It", " adds", (" 3", {" 3": 1.0}), " rules", ".", " Score", ":", (" 8", {" 8": 0.5, " 6": 0.5})), 7.0),
    ((("7", {"7": 0.5, "5": 0.5}), "/", "1", "0"), 6.0),                 # no label: a number out of 10
    (("Rating", ":", (" 6", {" 6": 0.5, " 7": 0.5}), " out", " of", " 1", "0"), 6.5),
    (("I", " count", (" 1", {" 1": 1.0}), "2", " steps", "."), None),    # 12 is no score
    (("Great", " rewrite", "!"), None),
    # prose with a number is not a score (a 135M reviewer wrote this), but a number opening the reply is
    (("The", " task", " is", " for", " a", " ", ("1", {"1": 1.0}), "0", "-", "year", "-", "old", "."), None),
    ((" ", (" 7", {" 7": 0.5, " 8": 0.5}), ".", " Good"), 7.5),
    ((), None),
])
def test_the_position_read(pieces, expected):
    got, note = score_from_logprobs(toks(*pieces))
    assert got == (None if expected is None else pytest.approx(expected))
    assert (note == "") == (expected is not None)


def test_verdicts_from_not_against_equal():
    def verdict(*pieces):
        return verdict_from_logprobs(toks(*pieces))[0]

    assert verdict(("Not", {"Not": 0.7, "Equal": 0.3}), " Equal") is True
    assert verdict(("Not", {"Not": 0.2, "Equal": 0.5, "NOT": 0.1}), " Equal") is False  # the probabilities decide
    assert verdict("They", " are", (" not", {" not": 0.6, " equal": 0.4}), " equal", ".") is True
    assert verdict("*", "*", ("Equal", {"Equal": 0.9, "Not": 0.1}), "*", "*") is False
    assert verdict("I", " thought", " not", ".", " Answer", ":", ("Equal", {"Equal": 0.8, "Not": 0.2})) is False
    assert verdict_from_logprobs(toks("Hard", " to", " say")) == (
        None, "no Equal / Not token among the reviewer's tokens")
    assert verdict_from_logprobs(None)[0] is None


def test_an_opened_reply_is_read_at_its_first_position_whatever_was_generated():
    # after a "Score:" prefill a small model wrote " N", but ranked the scores at that position
    tokens = toks((" ", {" ": 0.9, " N": 0.1}), ("N", {"N": 0.5, "7": 0.3, "8": 0.1, "1": 0.1}), "\n")
    got, _ = score_from_logprobs(tokens, opened=True)
    assert got == pytest.approx((7 * 0.3 + 8 * 0.1 + 10 * 0.1) / 0.5)  # "1" beside 7 and 8 stands for 10
    assert score_from_logprobs(tokens)[0] is None  # not opened: no number was written
    # nothing to read at the opening: the usual rules apply
    later = toks(("The", {"The": 1.0}), " score", " is", (" 6", {" 6": 1.0}), "/", "1", "0")
    assert score_from_logprobs(later, opened=True)[0] == pytest.approx(6.0)
    verdict = toks((" Equal", {" Equal": 0.4, " Not": 0.35, " not": 0.2}), ".")
    assert verdict_from_logprobs(verdict, opened=True) == (True, "")
    assert verdict_from_logprobs(toks((" Both", {" Both": 1.0}), " equal", "."), opened=True)[0] is False
