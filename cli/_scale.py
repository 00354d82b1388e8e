"""Reading ``ps:scale`` arguments: ``web=2``, ``web+1``, ``worker-1``, ``web=2:standard-2x``,
``web=standard-2x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from waka.cli._errors import CliError

# A size has a letter somewhere (`standard-2x`, `2X`), which tells `web=2X` from `web=2`.
_SIZE = r"[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*"
# The type is matched lazily so `my-worker-1` reads as type `my-worker`, one fewer.
_QUANTITY = re.compile(
    rf"(?P<type>[A-Za-z0-9_-]+?)(?P<operator>[=+-])(?P<quantity>\d+)(?::(?P<size>{_SIZE}))?"
)
_SIZE_ONLY = re.compile(rf"(?P<type>[A-Za-z0-9_-]+)=(?P<size>{_SIZE})")
FORMS = "TYPE=N, TYPE+N, TYPE-N, TYPE=N:SIZE or TYPE=SIZE"


@dataclass(frozen=True)
class Change:
    """One process type's new quantity (absolute, or a delta) and/or size."""

    type: str
    # None keeps the quantity (a size-only change).
    quantity: int | None
    relative: bool = False
    # Empty keeps the size.
    size: str = ""


def parse_change(text: str) -> Change:
    match = _QUANTITY.fullmatch(text)
    if match:
        operator = match["operator"]
        amount = int(match["quantity"])
        return Change(
            type=match["type"],
            quantity=-amount if operator == "-" else amount,
            relative=operator != "=",
            size=(match["size"] or "").lower(),
        )
    match = _SIZE_ONLY.fullmatch(text)
    if match:
        return Change(type=match["type"], quantity=None, size=match["size"].lower())
    raise CliError(f'invalid scale argument "{text}": expected {FORMS}')


def parse_changes(texts: list[str]) -> list[Change]:
    changes = [parse_change(text) for text in texts]
    seen: set[str] = set()
    for change in changes:
        if change.type in seen:
            raise CliError(f'process type "{change.type}" is scaled more than once')
        seen.add(change.type)
    return changes
