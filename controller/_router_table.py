"""The router's routing table: which hosts belong to which app, and which dynos may take requests.

The controller owns the truth (SQLite and the agents' reports) and pushes it here; the router never
asks anyone per request. Everything runs on the controller's trio thread, so there are no locks:
`update_app` and a request choosing a backend never interleave mid-way.

Choosing a backend is least-in-flight, ties broken round robin. The router sees every request it
sends, so its in-flight counts are exact; sending the next request to the least busy dyno keeps a
slow request from queueing others behind it on a dyno whose web server handles few requests at once
(a sync gunicorn worker handles one), the failure random routing is known for. Round robin among
equals spreads an idle app's requests evenly. A dyno whose connection was refused is skipped for a
short quarantine (as Heroku's router does), unless nothing else is left.

Draining: `drain(address)` stops new requests to a dyno while its in-flight ones finish;
`in_flight(address)` and `wait_drained(address)` tell the controller when it may send SIGTERM. The
mark lasts until the address leaves every app's route, so a late `update_app` that still lists the
dyno as up does not revive it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import trio

APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,29}")

MAX_RESOLVED = 4096  # hosts whose app `resolve` remembers

# Dyno states as the controller reports them (Heroku's words).
UP = "up"
CRASHED = "crashed"


@dataclass(frozen=True)
class Backend:
    """One web dyno that may take requests."""

    dyno: str  # "web.1"
    address: str  # "host:port"
    release: int = 0


@dataclass(frozen=True)
class WebDyno:
    """A web dyno as the controller knows it, whatever its state: the input of `AppRoute.build`."""

    name: str
    state: str  # "up", "starting", "crashed", "down", "pending"
    address: str = ""  # "host:port", meaningful when up
    release: int = 0


@dataclass(frozen=True)
class AppRoute:
    """Everything the router needs to know about one app."""

    app: str
    backends: tuple[Backend, ...] = ()
    maintenance: bool = False
    # The formation asks for web dynos (some may still be starting); false means H14.
    has_web_dynos: bool = False
    # Some web dyno has crashed; with no backend up, requests get H10.
    crashed: bool = False

    @classmethod
    def build(
        cls, app: str, web_dynos: Iterable[WebDyno], *, maintenance: bool = False
    ) -> AppRoute:
        """The route for an app from the states of its web dynos (one place decides H10/H14)."""
        dynos = list(web_dynos)
        return cls(
            app=app,
            backends=tuple(
                Backend(d.name, d.address, d.release)
                for d in sorted(dynos, key=lambda d: d.name)
                if d.state == UP and d.address
            ),
            maintenance=maintenance,
            has_web_dynos=bool(dynos),
            crashed=any(d.state == CRASHED for d in dynos),
        )


@dataclass
class _BackendState:
    in_flight: int = 0
    draining: bool = False
    quarantined_until: float = float("-inf")
    # Made only while someone waits for the dyno to drain (most requests never need one).
    idle: trio.Event | None = None


class RoutingTable:
    """Hosts to apps, apps to routes, and per-dyno request accounting."""

    def __init__(self, *, domain: str = "localhost") -> None:
        self.domain = normalize_host(domain)
        self._domain_suffix = "." + self.domain
        self._routes: dict[str, AppRoute] = {}
        self._custom: dict[str, str] = {}
        self._states: dict[str, _BackendState] = {}
        self._listed: set[str] = set()
        self._next: dict[str, int] = {}
        self._resolved: dict[str, str | None] = {}
        # Requests waiting for a starting dyno wake up on any change.
        self._changed = trio.Event()

    # -- what the controller calls --------------------------------------------------------------

    def update_app(self, route: AppRoute) -> None:
        """Replaces an app's route (the complete current picture, not a patch)."""
        self._routes[route.app] = route
        self._forget_unlisted()
        self._notify()

    def remove_app(self, app: str) -> None:
        """The app was destroyed: its hosts answer 404 from now on."""
        self._routes.pop(app, None)
        self._next.pop(app, None)
        self._forget_unlisted()
        self._notify()

    def set_domains(self, mapping: Mapping[str, str]) -> None:
        """Custom domains: host -> app (all of them; a host may be `*.example.com`)."""
        self._custom = {normalize_host(host): app for host, app in mapping.items()}
        self._notify()

    def drain(self, address: str) -> None:
        """No new requests to this dyno; requests already in flight finish."""
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = _BackendState()
        state.draining = True
        self._notify()

    def in_flight(self, address: str) -> int:
        """Requests (and WebSocket sessions) this router has open on the dyno at `address`."""
        state = self._states.get(address)
        return state.in_flight if state else 0

    def in_flight_by_address(self) -> dict[str, int]:
        return {address: s.in_flight for address, s in self._states.items() if s.in_flight}

    async def wait_drained(self, address: str) -> None:
        """Returns once nothing is in flight on `address` (wrap it in a timeout)."""
        state = self._states.get(address)
        while state is not None and state.in_flight:
            if state.idle is None:
                state.idle = trio.Event()
            await state.idle.wait()
            state = self._states.get(address)

    # -- what the router calls ------------------------------------------------------------------

    def resolve(self, host: str) -> str | None:
        """The app serving `host` (already normalized), or None."""
        # Remembered until the table changes: a host's clients ask for it again and again.
        resolved = self._resolved
        if host in resolved:
            return resolved[host]
        if len(resolved) >= MAX_RESOLVED:
            resolved.clear()  # hosts are the clients' choice: keep the memory bounded
        app = resolved[host] = self._resolve(host)
        return app

    def _resolve(self, host: str) -> str | None:
        app = self._custom.get(host)
        if app is None:
            dot = host.find(".")
            if dot > 0:
                app = self._custom.get("*" + host[dot:])
            if app is None and host.endswith(self._domain_suffix):
                name = host[: -len(self._domain_suffix)]
                if APP_NAME.fullmatch(name):
                    app = name
        return app if app is not None and app in self._routes else None

    def route(self, app: str) -> AppRoute | None:
        return self._routes.get(app)

    def routes(self) -> list[AppRoute]:
        return list(self._routes.values())

    def domains(self) -> dict[str, str]:
        return dict(self._custom)

    def hosts_for(self, app: str) -> list[str]:
        """Every host that routes to `app`: its default host, then its custom domains."""
        return [f"{app}.{self.domain}", *sorted(h for h, a in self._custom.items() if a == app)]

    def choose(self, route: AppRoute, now: float, exclude: Collection[str] = ()) -> Backend | None:
        """The backend for the next request: least in flight, ties round robin; None if none."""
        # One pass over the backends with their states (this runs for every request).
        states = self._states
        candidates: list[tuple[Backend, _BackendState | None]] = []
        healthy: list[tuple[Backend, _BackendState | None]] = []
        for backend in route.backends:
            if exclude and backend.address in exclude:
                continue
            state = states.get(backend.address)
            if state is None:
                healthy.append((backend, None))
            elif not state.draining:
                candidates.append((backend, state))
                if state.quarantined_until <= now:
                    healthy.append((backend, state))
        # When every dyno is quarantined, trying one beats refusing the request outright.
        pool = healthy or candidates
        if not pool:
            return None
        start = self._next.get(route.app, 0)
        self._next[route.app] = start + 1
        count = len(pool)
        if count == 1:
            return pool[0][0]
        best: Backend | None = None
        best_load = 0
        for i in range(count):
            backend, state = pool[(start + i) % count]
            load = state.in_flight if state is not None else 0
            if best is None or load < best_load:
                best, best_load = backend, load
        return best

    def acquire(self, address: str) -> None:
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = _BackendState()
        state.in_flight += 1

    def release(self, address: str) -> None:
        state = self._states.get(address)
        if state is None or state.in_flight <= 0:
            raise RuntimeError(f"release() of {address} without a matching acquire()")
        state.in_flight -= 1
        if state.in_flight == 0:
            if state.idle is not None:
                state.idle.set()
                state.idle = None
            if address not in self._listed:
                del self._states[address]

    def quarantine(self, address: str, until: float) -> None:
        """The dyno refused a connection: prefer others until `until` (trio time)."""
        state = self._states.get(address)
        if state is None and address in self._listed:
            state = self._states[address] = _BackendState()
        if state is not None:
            state.quarantined_until = until

    def is_live(self, address: str) -> bool:
        """Still listed and not draining: idle upstream connections to it may be kept."""
        return address in self._listed and not self._is_draining(address)

    def live_addresses(self) -> set[str]:
        return {a for a in self._listed if not self._is_draining(a)}

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -- internals ------------------------------------------------------------------------------

    def _is_draining(self, address: str) -> bool:
        state = self._states.get(address)
        return state is not None and state.draining

    def _quarantined_until(self, address: str) -> float:
        state = self._states.get(address)
        return state.quarantined_until if state else float("-inf")

    def _forget_unlisted(self) -> None:
        self._listed = {b.address for r in self._routes.values() for b in r.backends}
        for address in [
            a for a, s in self._states.items() if a not in self._listed and not s.in_flight
        ]:
            del self._states[address]

    def _notify(self) -> None:
        self._resolved.clear()
        self._changed.set()
        self._changed = trio.Event()


def normalize_host(host: str) -> str:
    """`Hello.Example.COM.:8080` -> `hello.example.com` (the port and a final dot dropped)."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal keeps its brackets and loses its port
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    host = host.partition(":")[0]
    return host[:-1] if host.endswith(".") else host
