"""Small pieces every command-line entry point shares.

- ``field_docs(cls)``: the one-line docstrings under a dataclass's fields, so ``--help`` explains itself
  from the same text the code documents.
- ``main_guard(fn)``: runs ``fn()``; a ``ValueError``/``OSError`` (bad input, missing file) or a
  ``BackendError`` (an LLM endpoint unreachable after its retries, a refused request) becomes one line
  ``error: ...`` on stderr and exit code 2 instead of a traceback; Ctrl-C exits 130.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
from typing import Callable


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` from the string literal that follows each field in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def main_guard(fn: Callable[[], int | None]) -> int:
    """Run a CLI body; turn bad input and unreachable backends into a one-line error and exit code 2."""
    from teamsrl_jax.backends.base import BackendError  # light: no SDK, no JAX

    try:
        return int(fn() or 0)
    except (ValueError, OSError, BackendError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
