"""Heroku's text layouts (headings, aligned fields, tables, progress lines) and JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

APP_MARK = "⬢"


def app_label(app: str) -> str:
    return f"{APP_MARK} {app}"


def heading(out: TextIO, title: str) -> None:
    out.write(f"=== {title}\n")


def aligned(out: TextIO, fields: Iterable[tuple[str, str]]) -> None:
    """``Key: value`` lines with the values in one column."""
    rows = list(fields)
    if not rows:
        return
    width = max(len(key) for key, _ in rows) + 1
    for key, value in rows:
        out.write(f"{key + ':':<{width}} {value}".rstrip() + "\n")


def table(out: TextIO, rows: Iterable[Sequence[str]]) -> None:
    """Rows with each column padded to its widest cell, two spaces apart."""
    cells = [list(row) for row in rows]
    if not cells:
        return
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join(padded).rstrip() + "\n")


def write_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


@dataclass
class Outcome:
    """What an action reports after ``done``: ``done, v7``."""

    detail: str = ""


@contextmanager
def action(out: TextIO, text: str) -> Iterator[Outcome]:
    """``Creating ⬢ app... done``: the text first, ``done`` once the block succeeds.

    On failure the line ends with ``!`` and the error is reported below it, as Heroku's CLI does.
    """
    out.write(f"{text}... ")
    out.flush()
    outcome = Outcome()
    try:
        yield outcome
    except BaseException:
        out.write("!\n")
        raise
    out.write(f"done, {outcome.detail}\n" if outcome.detail else "done\n")


def human_bytes(size: int) -> str:
    """``12.3 MB``: sizes in powers of 1000, as Heroku shows slug sizes."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def slug_text(sha256: str, size: int) -> str:
    """``<sha256> (12.3 MB)``, or nothing when there is no slug."""
    return f"{sha256} ({human_bytes(size)})" if sha256 else ""


def short_version(source_version: str) -> str:
    """A git commit id shortened to 7 digits, as git shows it; anything else as it is."""
    if len(source_version) == 40 and all(c in "0123456789abcdef" for c in source_version):
        return source_version[:7]
    return source_version
