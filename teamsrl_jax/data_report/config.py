"""The report's settings, shared by the CLI (its ``--help``) and the code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    dedup_threshold: float = 0.7
    """ROUGE-L F at or above which an instruction is a near-duplicate of one kept before it (the generation
    stage's filter and threshold)."""
    limit: int | None = None
    """Analyse a seeded random sample of this many records per dataset, kept in file order (default: all)."""
    seed: int = 0
    """Seed of the --limit sample (the same sample for the same file size and seed)."""

    def __post_init__(self):
        if not 0 < self.dedup_threshold <= 1:
            raise ValueError(f"--dedup-threshold must be in (0, 1], got {self.dedup_threshold!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit!r}")
