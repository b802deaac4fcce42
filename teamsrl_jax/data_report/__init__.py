"""Instruction datasets side by side: ``python -m teamsrl_jax.data_report``.

``readers`` (every file format as ``Example`` records, with provenance where the generation stage wrote it),
``complexity`` (the rule-based complexity proxies), ``stats`` (every figure of one dataset), ``report`` (the
Markdown table and report.json), ``plots`` (lengths, diversity, complexity, operations), ``config``.
"""
