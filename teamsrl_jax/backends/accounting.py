"""Per-role query accounting: what each LLM role cost (external queries, cache hits, tokens, failures).

Counters, per role:
- ``queries``: completions obtained from the model (external queries that succeeded; what a paid API bills
  and what the paper's query count compares);
- ``cache_hits``: completions served from the cache instead (no query made);
- ``prompt_tokens`` / ``completion_tokens``: token usage where the server reports it;
- ``errors``: failed attempts (timeouts, dropped connections, 429/5xx, malformed replies, refusals);
- ``retries``: attempts re-sent after a failure.
"""

from __future__ import annotations

import os
import threading

from teamsrl_jax.fileio import atomic_write_json

COUNTERS: tuple[str, ...] = ("queries", "cache_hits", "prompt_tokens", "completion_tokens", "errors", "retries")
ACCOUNTED_ROLES: tuple[str, ...] = ("instructor", "reviewer", "responder")  # = base.ROLES (no import cycle)


class QueryAccounting:
    """Thread-safe per-role counters. Roles outside the three standard ones are accepted and listed too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {r: dict.fromkeys(COUNTERS, 0) for r in ACCOUNTED_ROLES}

    def record(self, role: str, *, queries: int = 0, cache_hits: int = 0, prompt_tokens: int = 0,
               completion_tokens: int = 0, errors: int = 0, retries: int = 0) -> None:
        """Add to the counters of ``role``."""
        add = dict(queries=queries, cache_hits=cache_hits, prompt_tokens=prompt_tokens,
                   completion_tokens=completion_tokens, errors=errors, retries=retries)
        with self._lock:
            counts = self._counts.setdefault(role, dict.fromkeys(COUNTERS, 0))
            for k, v in add.items():
                counts[k] += int(v)

    def get(self, role: str) -> dict[str, int]:
        """A copy of one role's counters (zeros for a role never recorded)."""
        with self._lock:
            return dict(self._counts.get(role, dict.fromkeys(COUNTERS, 0)))

    def total(self) -> dict[str, int]:
        """Counters summed over all roles."""
        with self._lock:
            return {k: sum(c[k] for c in self._counts.values()) for k in COUNTERS}

    def to_dict(self) -> dict[str, dict[str, int]]:
        """``{role: {counter: n}}`` for every role, plus ``"total"``."""
        with self._lock:  # one snapshot, so the total is the sum of the rows even while others record
            out = {role: dict(c) for role, c in self._counts.items()}
        out["total"] = {k: sum(c[k] for c in out.values()) for k in COUNTERS}
        return out

    def format_table(self) -> str:
        """A plain-text table, one row per role and a total row, for the end of a run."""
        rows = self.to_dict()
        headers = ("role",) + COUNTERS
        body = [[role] + [str(c[k]) for k in COUNTERS] for role, c in rows.items()]
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

        def fmt(cells: list[str] | tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        lines = [fmt(headers), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in body[:-1]] + [fmt(["-" * w for w in widths]), fmt(body[-1])]
        return "\n".join(lines)

    def write_json(self, path: str | os.PathLike) -> None:
        """Write ``to_dict()`` as JSON atomically (temp file in the same folder, fsync, rename)."""
        atomic_write_json(path, self.to_dict())

    def __repr__(self) -> str:
        t = self.total()
        return f"QueryAccounting(queries={t['queries']}, cache_hits={t['cache_hits']}, errors={t['errors']})"
