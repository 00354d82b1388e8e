"""Add-on and attachment names, and an add-on's state: the pure rules, each with its message.

An add-on has a global name (`postgresql-shiny-12345`); each attachment of it to an app has a
name that makes the app's config var: DATABASE -> DATABASE_URL.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from dataclasses import dataclass

from waka.controller._config_vars import check_config_name
from waka.controller._errors import InvalidInput
from waka.controller._names import random_app_name
from waka.v1.common_pb2 import DynoState

ATTACHMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,29}$")
ADDON_NAME = re.compile(r"^[a-z][a-z0-9-]{1,49}$")


def config_var(attachment: str) -> str:
    return f"{attachment}_URL"


def check_attachment_name(name: str) -> str:
    """`--as NAME`: upper-case letters, digits and underscores; its config var is NAME_URL."""
    value = name.strip().upper()
    if value.endswith("_URL"):
        value = value.removesuffix("_URL")
    if not ATTACHMENT_NAME.match(value):
        raise InvalidInput(
            f"Invalid attachment name {name!r}: use up to 30 letters, digits and underscores,"
            " starting with a letter (its config var is NAME_URL)."
        )
    check_config_name(config_var(value))
    return value


def random_addon_name(service: str, rng: random.Random) -> str:
    # An app name is adjective-noun-number; an add-on's is service-adjective-number.
    adjective = random_app_name(rng).partition("-")[0]
    return f"{service}-{adjective}-{rng.randrange(10_000, 100_000)}"


def alternate_attachment(addon_name: str) -> str:
    """The attachment name used when the default one is taken: postgresql-shiny-12345 ->
    POSTGRESQL_SHINY (Heroku says HEROKU_POSTGRESQL_PINK)."""
    stem = addon_name.rpartition("-")[0] or addon_name
    return re.sub(r"[^A-Z0-9_]", "_", stem.upper())[:30]


def default_attachment(default: str, addon_name: str, taken: Collection[str]) -> str:
    """The provider's name (DATABASE) unless the app has it already."""
    if default not in taken:
        return default
    alternate = alternate_attachment(addon_name)
    if alternate not in taken:
        return alternate
    raise InvalidInput(
        f"{addon_name} would be attached as {default} or {alternate}, and the app has both"
        " already: choose a name with --as."
    )


@dataclass(frozen=True)
class AddonState:
    state: str  # `available`, `starting`, `crashed`, `unavailable`
    message: str = ""


def managed_state(
    node_name: str | None, node_state: str | None, dyno_state: int | None, dyno_message: str = ""
) -> AddonState:
    """A managed add-on's state from its node's and its service process's.

    node_name None: the node was removed; node_state None: it is not connected. Either way the
    data is on that node, so the add-on is unavailable until it comes back; nothing re-creates
    it elsewhere with empty data.
    """
    if node_name is None:
        return AddonState(
            "unavailable", "its node was removed; its data was on that node and is lost"
        )
    if node_state is None or node_state == "down":
        return AddonState(
            "unavailable", f"its node {node_name} is down; its data stays there until it returns"
        )
    if node_state == "suspect":
        return AddonState("unavailable", f"its node {node_name} is not answering")
    if dyno_state == DynoState.DYNO_STATE_UP:
        return AddonState("available")
    if dyno_state == DynoState.DYNO_STATE_CRASHED:
        return AddonState("crashed", dyno_message or "its server process exited; restarting")
    return AddonState("starting")
