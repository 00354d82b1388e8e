""".env files for ``config:push`` and ``config:pull``: real quoting rules, errors with line numbers.

Accepted, one variable per line (blank lines and ``#`` comments are fine):

    KEY=value                  unquoted: trimmed; `` #`` starts a comment
    export KEY=value           the shell's ``export`` prefix is allowed
    KEY='literal $value'       single quotes: nothing inside is special
    KEY="a \\"b\\" \\n c"         double quotes: \\\\ \\" \\n \\r \\t escapes; may span lines
    KEY=first\\                 an unquoted value ending in a backslash continues on the next line

Anything else is an error naming the line, never a silent skip.
"""

from __future__ import annotations

import re

from waka.cli._errors import CliError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(CliError):
    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path} line {line}: {message}")


def parse_dotenv(text: str, path: str = ".env") -> dict[str, str]:
    result: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key_match = _KEY.match(line)
        if key_match is None:
            raise DotenvError(path, number, f"expected KEY=value, got {line[:40]!r}")
        key = key_match.group()
        rest = line[key_match.end() :].lstrip()
        if not rest.startswith("="):
            raise DotenvError(path, number, f"expected KEY=value, got {line[:40]!r}")
        raw = rest[1:].lstrip()
        if raw.startswith("'"):
            end = raw.find("'", 1)
            if end < 0:
                raise DotenvError(path, number, f"the single quote opened for {key} is not closed")
            value, after = raw[1:end], raw[end + 1 :]
        elif raw.startswith('"'):
            value, after, i = _double_quoted(raw, lines, i, path, number, key)
        else:
            value, i = _unquoted(raw, lines, i)
            after = ""
        after = after.strip()
        if after and not after.startswith("#"):
            raise DotenvError(path, number, f"unexpected text after the value of {key}: {after!r}")
        result[key] = value
    return result


def _double_quoted(
    raw: str, lines: list[str], i: int, path: str, number: int, key: str
) -> tuple[str, str, int]:
    chunks: list[str] = []
    text, pos = raw, 1
    while True:
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text):
                chunks.append(_ESCAPES.get(text[pos + 1], "\\" + text[pos + 1]))
                pos += 2
                continue
            if char == '"':
                return "".join(chunks), text[pos + 1 :], i
            chunks.append(char)
            pos += 1
        if i >= len(lines):
            raise DotenvError(path, number, f"the double quote opened for {key} is not closed")
        # A newline inside double quotes is part of the value.
        chunks.append("\n")
        text, pos = lines[i], 0
        i += 1


def _unquoted(raw: str, lines: list[str], i: int) -> tuple[str, int]:
    value = raw
    comment = re.search(r"\s#", value)
    if comment:
        value = value[: comment.start()]
    value = value.rstrip()
    while value.endswith("\\") and i < len(lines):
        value = value[:-1] + "\n" + lines[i].strip()
        i += 1
    return value, i


def format_dotenv(variables: dict[str, str]) -> str:
    """KEY="value" lines that parse_dotenv reads back exactly."""
    lines = []
    for key, value in variables.items():
        escaped = (
            value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("$", "\\$")
        )
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines)
