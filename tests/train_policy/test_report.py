"""The rewrite report: per-iteration counts pooled into ranges and a total, in summary.json and as text."""

from teamsrl_jax.env.reward import ELIMINATION_REASONS
from teamsrl_jax.train_policy.report import format_rewrites, rewrite_summary
from teamsrl_jax.train_policy.rollout import rewrite_stats


def _row(iteration, eliminated, logprobs, text):
    """A metrics row of 10 rewrites: ``eliminated`` {reason: n}, the rest reviewed, some of them scored."""
    reviews = 10 - sum(eliminated.values())
    stats = rewrite_stats(10, reviews, eliminated, {"logprobs": logprobs, "text": text})
    return {"iteration": iteration, "episode_return": 0.0, **stats}


def test_rewrite_stats_list_every_reason_and_shares():
    stats = rewrite_stats(10, 6, {"fragment": 3, "parse_failure": 1}, {"logprobs": 4, "text": 1})
    assert list(stats["eliminated"]) == list(ELIMINATION_REASONS)
    assert (stats["kept_fraction"], stats["review_scored_fraction"]) == (0.6, 5 / 6)
    assert rewrite_stats(4, 0, {"empty": 4}, {})["review_scored_fraction"] is None  # nothing was reviewed


def test_summary_and_table_pool_iterations():
    rows = [_row(i, {"copies_template": i % 3, "fragment": 1}, logprobs=i % 2, text=2) for i in range(45)]
    rows.insert(0, {"iteration": -1, "episode_return": 0.0})  # a row from before these fields were logged
    summary = rewrite_summary(rows)
    assert len(summary["per_iteration"]) == 45 and summary["per_iteration"][3]["eliminated"]["copies_template"] == 0
    total = summary["total"]
    assert total["rewrites"] == 450 and total["eliminated"]["fragment"] == 45
    assert total["eliminated"]["copies_template"] == 45 and total["reviews"] == 450 - 90
    assert total["scored_by"] == {"logprobs": 22, "text": 90}
    assert total["review_scored_fraction"] == 112 / 360
    lines = format_rewrites(rows, max_lines=20).splitlines()
    assert lines[1].split() == ["iteration", "rewrites", "kept", "fragment", "copies_template", "reviews", "scored",
                                "logprobs", "text"]  # only the reasons that occurred
    body = [line.split() for line in lines[2:]]
    assert [b[0] for b in body[:2]] == ["0-2", "3-5"] and len(body) == 15 + 1  # 45 rows in ranges of 3, total
    assert body[0][1:6] == ["30", "80.0%", "3", "3", "24"] and body[-1][:2] == ["total", "450"]
    assert format_rewrites(rows[:4]).splitlines()[2].split()[0] == "0"  # few iterations: one line each
    assert format_rewrites([]) == "rewrites: none logged"
