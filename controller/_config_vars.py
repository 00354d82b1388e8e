"""Config var rules: each broken rule has its own message."""

from __future__ import annotations

import re
from collections.abc import Mapping

from waka.controller._errors import InvalidInput

MAX_CONFIG_BYTES = 32 * 1024
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_]+$")


def check_config_name(name: str) -> str:
    if not name:
        raise InvalidInput("Config var names cannot be empty.")
    if not _NAME_CHARS.match(name):
        raise InvalidInput(
            f"Invalid config var name {name!r}: use only letters, digits and underscores."
        )
    if name[0].isdigit():
        raise InvalidInput(f"Invalid config var name {name!r}: it cannot start with a digit.")
    if name.startswith("__"):
        raise InvalidInput(f"Invalid config var name {name!r}: it cannot start with '__'.")
    if name.upper().startswith("WAKA_"):
        raise InvalidInput(
            f"Invalid config var name {name!r}: names starting with WAKA_ are reserved for "
            "the platform."
        )
    return name


def config_size(config: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in config.items())


def check_config_size(config: Mapping[str, str]) -> None:
    size = config_size(config)
    if size > MAX_CONFIG_BYTES:
        raise InvalidInput(
            f"Config vars would take {size} bytes; an app's config vars may take at most "
            f"{MAX_CONFIG_BYTES} bytes (32 kB) in all."
        )
