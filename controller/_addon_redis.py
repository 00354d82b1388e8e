"""Redis add-ons: the node's own `redis-server` (Debian: redis-server), managed only.

The password reaches redis through a config file in the sandbox's private /tmp rather than
`--requirepass` on its command line, which every user of the host could read. Data is kept in
/data with the append-only file on, so a restart (or a crash) loses at most a second of writes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import MappingProxyType
from urllib.parse import quote

from waka.controller._addon_provider import AddonRecord, Plan, Provider, ServiceProcess
from waka.v1.common_pb2 import DynoSize

PROBE_TIMEOUT = 3.0

PLANS = MappingProxyType(
    {
        "mini": Plan("mini", "mini", "up to 128 MB of data"),
        "basic": Plan("basic", "standard-1x", "up to 256 MB of data"),
        "standard": Plan("standard", "standard-2x", "up to 512 MB of data"),
        "premium": Plan("premium", "performance-m", "up to 1.25 GB of data"),
    }
)

# Runs in the add-on's sandbox as its uid, with WAKA_ADDON_PASSWORD, WAKA_ADDON_MAXMEMORY and
# PORT set. maxmemory is half the sandbox's memory: an append-only rewrite forks the server.
MANAGED_SCRIPT = r"""set -euo pipefail
umask 077
{
  printf 'port %s\n' "$PORT"
  printf 'bind * -::*\n'
  printf 'protected-mode no\n'
  printf 'requirepass %s\n' "$WAKA_ADDON_PASSWORD"
  printf 'dir /data\n'
  printf 'appendonly yes\n'
  printf 'maxmemory %s\n' "$WAKA_ADDON_MAXMEMORY"
  printf 'daemonize no\n'
} > /tmp/redis.conf
exec redis-server /tmp/redis.conf
"""


def ping(host: str, port: int, password: str, timeout: float) -> bool:
    """Whether redis answers an authenticated PING (RESP, by hand: two commands)."""
    command = f"*2\r\n$4\r\nAUTH\r\n${len(password.encode())}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(command.encode())
            reply = b""
            while b"PONG" not in reply and not reply.startswith(b"-") and len(reply) < 512:
                chunk = conn.recv(512)
                if not chunk:
                    break
                reply += chunk
            return reply.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


class RedisProvider(Provider):
    service = "redis"
    attachment = "REDIS"
    plans = PLANS
    default_plan = "basic"

    def __init__(self, probe: Callable[[str, int, str, float], bool] = ping) -> None:
        self._probe = probe

    def new_credentials(self, token: Callable[[int], str]) -> dict[str, str]:
        return {"password": token(24)}

    def credentials(self, record: AddonRecord) -> str:
        host = f"[{record.host}]" if ":" in record.host else record.host
        password = quote(record.credentials["password"], safe="")
        return f"redis://default:{password}@{host}:{record.port}"

    def service_process(self, record: AddonRecord, size: DynoSize) -> ServiceProcess:
        return ServiceProcess(
            command=MANAGED_SCRIPT,
            env={
                "WAKA_ADDON_PASSWORD": record.credentials["password"],
                "WAKA_ADDON_MAXMEMORY": f"{max(16, size.memory_mb // 2)}mb",
            },
        )

    def status(self, record: AddonRecord) -> bool:
        return self._probe(record.host, record.port, record.credentials["password"], PROBE_TIMEOUT)
