"""Drain URLs: what is accepted, what it means, and the errors for what is not.

syslog://host[:port]        RFC 5424 over TCP (port 601 by default, as Logplex)
syslog+tls://host[:port]    the same over TLS, the server's certificate verified
http://[user:pass@]host[:port][/path][?query]    logplex-1 batches by POST (basic auth
https://...                                      from the URL, as Heroku does)
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from waka.controller._errors import InvalidInput

MAX_DRAINS_PER_APP = 5
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"syslog": 601, "syslog+tls": 601, "http": 80, "https": 443}
_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


@dataclass(frozen=True)
class Drain:
    """One configured drain of an app: its id (for drains:remove), URL and token `d.<uuid>`."""

    id: str
    url: str
    token: str


@dataclass(frozen=True)
class DrainTarget:
    scheme: str
    host: str
    port: int
    tls: bool
    # For HTTP drains: the request target (path and query) and basic-auth credentials.
    target: str = "/"
    username: str | None = None
    password: str | None = None

    @property
    def is_http(self) -> bool:
        return self.scheme in ("http", "https")

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def redacted(self) -> str:
        """The URL without its password, for logs and listings."""
        user = f"{self.username}:***@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.target if self.is_http else ""
        return f"{self.scheme}://{user}{host}:{self.port}{path}"


def new_drain_token() -> str:
    return f"d.{uuid.uuid4()}"


def _invalid(url: str, why: str) -> InvalidInput:
    return InvalidInput(f"Invalid drain URL {url!r}: {why}")


def _check_host(url: str, host: str) -> None:
    if not host:
        raise _invalid(url, "it names no host.")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _invalid(url, f"{host!r} is not a valid host name.")


def parse_drain_url(url: str) -> DrainTarget:
    """Checks a drain URL; raises InvalidInput naming what is wrong."""
    url = url.strip()
    if not url:
        raise InvalidInput("A drain needs a URL, e.g. syslog+tls://logs.example.com:6514.")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(url[:60] + "...", f"it is longer than {MAX_URL_LENGTH} characters.")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise _invalid(url, "it contains spaces or control characters.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _invalid(url, "the scheme must be syslog://, syslog+tls://, http:// or https://.")
    try:
        port = parts.port
    except ValueError:
        raise _invalid(url, "the port must be a number from 1 to 65535.") from None
    if port == 0:
        raise _invalid(url, "the port must be a number from 1 to 65535.")
    host = parts.hostname or ""
    _check_host(url, host)
    if parts.fragment:
        raise _invalid(url, "a drain URL has no #fragment.")
    if scheme.startswith("syslog"):
        if parts.path not in ("", "/") or parts.query:
            raise _invalid(url, "a syslog drain has no path or query: syslog://host:port.")
        if parts.username is not None:
            raise _invalid(url, "a syslog drain takes no user name or password.")
        return DrainTarget(scheme, host, port or DEFAULT_PORTS[scheme], tls=scheme == "syslog+tls")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return DrainTarget(
        scheme,
        host,
        port or DEFAULT_PORTS[scheme],
        tls=scheme == "https",
        target=target,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password or "") if parts.username is not None else None,
    )


def check_drain_count(existing: int) -> None:
    """Raises when an app already has as many drains as it may."""
    if existing >= MAX_DRAINS_PER_APP:
        raise InvalidInput(
            f"An app may have at most {MAX_DRAINS_PER_APP} drains; remove one first."
        )
