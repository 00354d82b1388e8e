"""What an add-on service is to waka: the provider interface, and the registry of providers.

A provider knows one service (postgresql, redis): its plans, the credentials it needs, the
process that serves it when waka runs it itself (managed mode), what to do on a server that
already exists (external mode), how to tell whether it answers, and how to back it up. Nothing
else in the controller knows about any particular service: attaching, releasing, placing,
listing and destroying are the same for all of them, so a new service is one new provider.

Provider methods that touch the network or run programs are blocking; the add-ons service calls
them in worker threads. They run programs through a `Runner`, so tests replace it.
"""

from __future__ import annotations

import abc
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from waka.controller._errors import Conflict, InvalidInput, NotFound, WakaError
from waka.v1.common_pb2 import DynoSize


class AddonFailed(WakaError):
    """A provider could not do what was asked (a server refused, a program failed)."""

    code = Conflict.code


@dataclass(frozen=True)
class Plan:
    name: str
    # The dyno size of the service process (managed mode).
    size: str
    summary: str


@dataclass(frozen=True)
class AddonRecord:
    """What a provider needs to know about one add-on."""

    id: str
    name: str
    service: str
    plan: str
    mode: str  # `managed` or `external`
    host: str
    port: int
    # Provider-defined, e.g. user, password, database; secret.
    credentials: Mapping[str, str] = field(default_factory=dict)
    # External mode: the server's admin URL (with its credentials); secret.
    server_url: str = ""


@dataclass(frozen=True)
class ServiceProcess:
    """The process that serves a managed add-on, run by an agent like a dyno: `command` is a
    bash script run with `env` (plus $PORT) as an unprivileged uid, with /data persistent."""

    command: str
    env: dict[str, str]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


# (argv, extra environment, stdin, timeout in seconds) -> result. Secrets travel in the
# environment or on stdin, never in argv (any user on the host can read a command line).
Runner = Callable[[Sequence[str], Mapping[str, str], str, float], CommandResult]


def run_command(
    argv: Sequence[str], env: Mapping[str, str], stdin: str, timeout: float
) -> CommandResult:
    """The real Runner: a subprocess with a timeout; its exit code is the caller's to check."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as error:
        raise AddonFailed(
            f"{argv[0]} is not installed on the controller's host ({error.strerror})."
        ) from None
    except subprocess.TimeoutExpired:
        raise AddonFailed(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s.") from None
    return CommandResult(done.returncode, done.stdout, done.stderr)


def last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:])


class Provider(abc.ABC):
    """One add-on service. Subclasses set the class attributes and implement the methods."""

    # The name users give: `waka addons:create postgresql`.
    service: str
    # The default attachment name; its config var is NAME_URL (DATABASE_URL).
    attachment: str
    plans: Mapping[str, Plan]
    default_plan: str
    # Whether add-ons of this service can live on a registered external server.
    supports_external: bool = False
    supports_backups: bool = False

    def plan(self, name: str) -> Plan:
        chosen = name or self.default_plan
        if chosen not in self.plans:
            raise InvalidInput(
                f"{self.service} has no plan {chosen!r}; plans are: {', '.join(self.plans)}."
            )
        return self.plans[chosen]

    @abc.abstractmethod
    def new_credentials(self, token: Callable[[int], str]) -> dict[str, str]:
        """Fresh credentials for a new add-on; `token(n)` gives n random bytes as hex."""

    @abc.abstractmethod
    def credentials(self, record: AddonRecord) -> str:
        """The URL attached apps get as NAME_URL."""

    @abc.abstractmethod
    def service_process(self, record: AddonRecord, size: DynoSize) -> ServiceProcess:
        """Managed mode: the process that serves the add-on."""

    @abc.abstractmethod
    def status(self, record: AddonRecord) -> bool:
        """Whether the add-on answers (blocking, a few seconds at most)."""

    def provision(self, record: AddonRecord) -> None:
        """External mode: create the add-on's resources on its server. Managed add-ons need
        nothing here: their process (`service_process`) sets itself up on first start."""
        raise AddonFailed(f"{self.service} add-ons cannot live on an external server.")

    def deprovision(self, record: AddonRecord) -> None:
        """External mode: delete what `provision` made (the data included)."""
        raise AddonFailed(f"{self.service} add-ons cannot live on an external server.")

    def check_server(self, url: str) -> tuple[str, int]:
        """External mode: validates a server's admin URL and connects once; returns host, port."""
        raise InvalidInput(f"{self.service} add-ons cannot live on an external server.")

    def server_address(self, url: str) -> tuple[str, int]:
        """External mode: the host and port in a server's admin URL (no connection)."""
        raise InvalidInput(f"{self.service} add-ons cannot live on an external server.")

    def backup(self, record: AddonRecord, path: Path) -> None:
        """Writes a backup of the add-on's data to path."""
        raise InvalidInput(f"{self.service} add-ons have no backups.")

    def restore(self, record: AddonRecord, path: Path) -> None:
        """Replaces the add-on's data with the backup at path."""
        raise InvalidInput(f"{self.service} add-ons have no backups.")


class Providers:
    """The registry: every service waka offers, built-in or not, is registered here."""

    def __init__(self, providers: Sequence[Provider] = ()) -> None:
        self._by_service: dict[str, Provider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: Provider) -> None:
        if provider.service in self._by_service:
            raise ValueError(f"a provider for {provider.service!r} is already registered")
        if provider.default_plan not in provider.plans:
            raise ValueError(f"{provider.service}: default plan {provider.default_plan!r} unknown")
        self._by_service[provider.service] = provider

    def get(self, service: str) -> Provider:
        provider = self._by_service.get(service.strip().lower())
        if provider is None:
            known = ", ".join(sorted(self._by_service)) or "none"
            raise NotFound(f"Unknown add-on service {service!r}; services are: {known}.")
        return provider

    def all(self) -> list[Provider]:
        return [self._by_service[name] for name in sorted(self._by_service)]
