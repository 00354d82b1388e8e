"""The routing table as Traefik dynamic configuration, for Traefik's HTTP provider.

Traefik polls an endpoint (`providers.http.endpoint`) that returns this JSON; the controller serves
`traefik_config(table)` there. Each app becomes a router named `waka-APP` whose rule matches its
hosts (`APP.DOMAIN` and its custom domains), and a service of the same name whose load balancer
lists the app's web dynos that may take requests (up and not draining). An app in maintenance,
or without such dynos, keeps its router with an empty server list, so Traefik answers 503 rather
than passing the host on to another rule. Traefik v3 rule syntax; wildcard custom domains
(`*.example.com`) become `HostRegexp`.

What Traefik does not do, compared with waka's own router: Heroku's H-code pages and router log
lines, X-Request-Start/X-Request-Id, and the wait for a starting dyno.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from waka.controller._router_table import RoutingTable


def traefik_config(
    table: RoutingTable, *, entry_points: Sequence[str] = (), scheme: str = "http"
) -> dict[str, Any]:
    """`{"http": {"routers": {...}, "services": {...}}}` for every app in `table`."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for route in sorted(table.routes(), key=lambda r: r.app):
        name = f"waka-{route.app}"
        router: dict[str, Any] = {
            "rule": " || ".join(_host_rule(host) for host in table.hosts_for(route.app)),
            "service": name,
        }
        if entry_points:
            router["entryPoints"] = list(entry_points)
        routers[name] = router
        servers = []
        if not route.maintenance:
            servers = [
                {"url": f"{scheme}://{backend.address}"}
                for backend in route.backends
                if table.is_live(backend.address)
            ]
        services[name] = {"loadBalancer": {"servers": servers, "passHostHeader": True}}
    return {"http": {"routers": routers, "services": services}}


def _host_rule(host: str) -> str:
    if host.startswith("*."):
        return f"HostRegexp(`^[^.]+{re.escape(host[1:])}$`)"
    return f"Host(`{host}`)"
