"""Where the controller is and which token to show it, from the data dir or the environment.

This module is imported by ``auth:git-credential``, which git runs on every push: it must stay
free of grpc and the generated modules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from waka.cli._errors import CliError

DEFAULT_API_ADDRESS = "127.0.0.1:7400"
TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
CONTROLLER_FILE = "controller.json"
# The user name git sends along with the token (the token is what authenticates).
CREDENTIAL_USERNAME = "waka"


@dataclass(frozen=True)
class ApiTarget:
    """One controller's API address and the token that opens it."""

    address: str
    token: str
    # Named in messages, so a failed login says which file to look at.
    data_dir: Path


def data_dir(option: str | None, environ: Mapping[str, str]) -> Path:
    """``--data-dir``, else ``$WAKA_DATA_DIR``, else ``~/.local/share/waka``."""
    if option:
        return Path(option).expanduser().absolute()
    if environ.get("WAKA_DATA_DIR"):
        return Path(environ["WAKA_DATA_DIR"]).expanduser().absolute()
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "share" / "waka"


def api_token(directory: Path, environ: Mapping[str, str]) -> str:
    """``$WAKA_API_KEY``, else the controller's ``admin-token`` file."""
    if environ.get("WAKA_API_KEY"):
        return environ["WAKA_API_KEY"].strip()
    path = directory / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as error:
        raise CliError(f"cannot read the API token from {path}: {error.strerror}") from None
    if not token:
        raise CliError(
            f'no API token: set WAKA_API_KEY or run "waka up" on this machine (looked in {path})'
        )
    return token


def api_address(directory: Path, environ: Mapping[str, str]) -> str:
    """``$WAKA_API``, else the address the controller recorded, else the default port."""
    if environ.get("WAKA_API"):
        return environ["WAKA_API"].strip()
    path = directory / CONTROLLER_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DEFAULT_API_ADDRESS
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the controller's address from {path}: {error}") from None
    address = recorded.get("api") if isinstance(recorded, dict) else None
    if not isinstance(address, str) or not address:
        raise CliError(f'{path} has no "api" address')
    return address


def api_target(directory: Path, environ: Mapping[str, str]) -> ApiTarget:
    return ApiTarget(
        address=api_address(directory, environ),
        token=api_token(directory, environ),
        data_dir=directory,
    )
