"""Per-role counters, the end-of-run table and the atomic JSON file."""

import json

from teamsrl_jax.backends.accounting import QueryAccounting


def test_record_totals_and_table():
    acc = QueryAccounting()
    acc.record("instructor", queries=3, prompt_tokens=30, completion_tokens=12)
    acc.record("instructor", queries=1, errors=2, retries=2)
    acc.record("reviewer", cache_hits=5)
    assert acc.get("instructor") == dict(queries=4, cache_hits=0, prompt_tokens=30, completion_tokens=12,
                                         errors=2, retries=2)
    assert acc.get("responder")["queries"] == 0
    assert acc.total()["queries"] == 4 and acc.total()["cache_hits"] == 5
    lines = acc.format_table().splitlines()
    assert lines[0].split() == ["role", "queries", "cache_hits", "prompt_tokens", "completion_tokens", "errors",
                                "retries"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if not line.startswith("-")}
    assert rows["instructor"] == ["4", "0", "30", "12", "2", "2"]
    assert rows["reviewer"][:2] == ["0", "5"]
    assert rows["total"][:2] == ["4", "5"]


def test_write_json_is_complete_and_leaves_no_temp_files(tmp_path):
    acc = QueryAccounting()
    acc.record("responder", queries=2, completion_tokens=9)
    path = tmp_path / "sub" / "accounting.json"
    acc.write_json(path)
    acc.record("responder", queries=1)
    acc.write_json(path)  # replaces the old file
    data = json.loads(path.read_text())
    assert data["responder"]["queries"] == 3 and data["total"]["completion_tokens"] == 9
    assert set(data) == {"instructor", "reviewer", "responder", "total"}
    assert [p.name for p in path.parent.iterdir()] == ["accounting.json"]


def test_to_dict_total_is_the_sum_of_its_rows_while_others_record():
    acc = QueryAccounting()
    acc.record("instructor", queries=2)

    class RecordAfterFirstRelease:  # another thread's record() lands right after to_dict's snapshot
        def __init__(self, lock):
            self.lock, self.armed = lock, True

        def __enter__(self):
            self.lock.acquire()

        def __exit__(self, *exc):
            self.lock.release()
            if self.armed:
                self.armed = False
                acc.record("reviewer", queries=5)

    acc._lock = RecordAfterFirstRelease(acc._lock)
    rows = acc.to_dict()
    assert rows["total"]["queries"] == sum(r["queries"] for role, r in rows.items() if role != "total") == 2
    assert acc.total()["queries"] == 7  # the late record counted from then on
