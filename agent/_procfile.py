"""Procfile parsing: `name: command` lines. A malformed line is an error with its number."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class ProcfileError(ValueError):
    def __init__(self, line_number: int, message: str) -> None:
        super().__init__(f"Procfile line {line_number}: {message}")
        self.line_number = line_number


def parse_procfile(text: str) -> dict[str, str]:
    """Returns process types in file order. Blank lines and `#` comments are allowed."""
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep:
            raise ProcfileError(number, f"expected `name: command`, got {raw.strip()!r}")
        if not _NAME.match(name):
            raise ProcfileError(
                number,
                f"invalid process type {name!r}: use letters, digits, '_' and '-' only",
            )
        if not command:
            raise ProcfileError(number, f"process type {name!r} has no command")
        if name in types:
            raise ProcfileError(number, f"process type {name!r} is defined twice")
        types[name] = command
    return types


def parse_release_yaml(text: str) -> dict[str, str]:
    """Reads `default_process_types` from a buildpack's bin/release output.

    bin/release prints a tiny, fixed subset of YAML (a mapping of mappings of plain scalars), so a
    strict reader of that subset is enough and saves a YAML dependency; anything else is an error.
    """
    types: dict[str, str] = {}
    in_defaults = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.strip().startswith("#") or raw.strip() in {"---", "--- {}"}:
            continue
        if not raw.startswith((" ", "\t")):
            key, _, rest = raw.partition(":")
            in_defaults = key.strip() == "default_process_types"
            if in_defaults and rest.strip() not in {"", "{}"}:
                raise ValueError(f"bin/release line {number}: expected a mapping after {key}:")
            continue
        if not in_defaults:
            continue
        name, sep, command = raw.strip().partition(":")
        if not sep or not _NAME.match(name.strip()):
            raise ValueError(f"bin/release line {number}: expected `name: command`")
        types[name.strip()] = _unquote(command.strip())
    return types


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner.replace('\\"', '"')
    return value
