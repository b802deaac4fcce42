"""Command-line flags from a config dataclass: one ``--field-name`` per field, help from its docstring.

    cfg = parse_config(MyConfig, argv)   # --seed 3 --total-steps 1000 --flag/--no-flag --hidden 64 64

Supported field types: int, float, str, bool, ``tuple[int, ...]``/``tuple[float, ...]`` and ``X | None``
(the flag then takes a value of X; not given means the default).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from types import NoneType, UnionType

from teamsrl_jax.cli import field_docs


def _add_argument(parser: argparse.ArgumentParser, name: str, tp, default, doc: str) -> None:
    flag = "--" + name.replace("_", "-")
    if isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not NoneType)
    help_text = f"{doc} (default: {default})"
    if tp is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    elif typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        parser.add_argument(flag, dest=name, type=item, nargs="*", default=default, help=help_text)
    else:
        parser.add_argument(flag, dest=name, type=tp, default=default, help=help_text)


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or (cls.__doc__ or "").strip())
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        _add_argument(parser, f.name, hints[f.name], default, docs.get(f.name, ""))
    return parser


def parse_config(cls: type, argv: list[str] | None = None, description: str | None = None):
    """An instance of the dataclass ``cls`` from ``argv``; its own validation errors exit with a one-line message."""
    parser = build_parser(cls, description)
    values = vars(parser.parse_args(argv))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except ValueError as err:
        parser.error(str(err))
