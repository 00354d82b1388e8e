"""PostgreSQL add-ons: a server of the node's own `postgres` (managed), or a database with its own
role on a server that already exists (external).

Managed: one server per add-on, in a sandbox as the add-on's own uid, its cluster in the
persistent /data. The role attached apps get is the cluster's bootstrap superuser of a server
that serves nothing else, so it can do no more than the apps could do with their own data.
initdb refuses to run as a uid with no passwd entry and the sandbox's /etc is the host's, read-only,
so the first start gives it one through nss_wrapper (Debian: libnss-wrapper); the server itself
needs none. The cluster is made in a side directory and renamed when complete, so a start that
dies half way is simply done again.

External: `psql` on the controller's host, as the server's admin, creates a role and a database
it owns, with CONNECT revoked from PUBLIC so other add-ons' roles on that server cannot reach it.

Backups are `pg_dump -Fc` from the controller's host and `pg_restore` back. Passwords go to the
programs in PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote, unquote, urlsplit

from waka.controller._addon_provider import (
    AddonFailed,
    AddonRecord,
    CommandResult,
    Plan,
    Provider,
    Runner,
    ServiceProcess,
    last_lines,
    run_command,
)
from waka.controller._errors import InvalidInput
from waka.v1.common_pb2 import DynoSize

DEFAULT_PORT = 5432
# pg_dump and pg_restore of a large database take as long as they take.
BACKUP_TIMEOUT = 6 * 3600.0
ADMIN_TIMEOUT = 60.0
PROBE_TIMEOUT = 3.0

PLANS = MappingProxyType(
    {
        "mini": Plan("mini", "mini", "256 MB of memory, up to 40 connections"),
        "basic": Plan("basic", "standard-1x", "512 MB of memory, up to 85 connections"),
        "standard": Plan("standard", "standard-2x", "1 GB of memory, up to 100 connections"),
        "premium": Plan("premium", "performance-m", "2.5 GB of memory, up to 100 connections"),
    }
)

# Runs in the add-on's sandbox as its uid, with WAKA_ADDON_USER, WAKA_ADDON_PASSWORD,
# WAKA_ADDON_DATABASE, WAKA_ADDON_SHARED_BUFFERS, WAKA_ADDON_MAX_CONNECTIONS and PORT set.
MANAGED_SCRIPT = r"""set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=/data/pgdata
if [ ! -s "$data/PG_VERSION" ]; then
  echo "Creating the database cluster (first start)"
  rm -rf "$data.init"
  nss=$(ls /usr/lib/*/libnss_wrapper.so 2>/dev/null | head -n 1) || true
  if [ -z "$nss" ]; then
    echo "libnss_wrapper.so is missing on this node (Debian package libnss-wrapper)" >&2
    exit 1
  fi
  printf '%s:x:%s:%s::/data:/bin/false\n' "$WAKA_ADDON_USER" "$(id -u)" "$(id -g)" > /tmp/passwd
  printf '%s:x:%s:\n' "$WAKA_ADDON_USER" "$(id -g)" > /tmp/group
  export LD_PRELOAD="$nss" NSS_WRAPPER_PASSWD=/tmp/passwd NSS_WRAPPER_GROUP=/tmp/group
  umask 077
  printf '%s' "$WAKA_ADDON_PASSWORD" > /tmp/pwfile
  "$bin/initdb" -D "$data.init" -U "$WAKA_ADDON_USER" --pwfile=/tmp/pwfile \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 > /dev/null
  rm -f /tmp/pwfile
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
    >> "$data.init/pg_hba.conf"
  printf 'CREATE DATABASE "%s";\n' "$WAKA_ADDON_DATABASE" \
    | "$bin/postgres" --single -D "$data.init" -c unix_socket_directories=/tmp postgres \
    > /dev/null
  unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
  mv "$data.init" "$data"
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c port="$PORT" \
  -c unix_socket_directories=/tmp -c shared_buffers="$WAKA_ADDON_SHARED_BUFFERS" \
  -c max_connections="$WAKA_ADDON_MAX_CONNECTIONS"
"""


@dataclass(frozen=True)
class Server:
    """An external server's admin connection, from its URL."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        return pg_env(self.host, self.port, self.user, self.password, self.database)


def parse_server_url(url: str) -> Server:
    """`postgres://admin[:password]@host[:port][/database]`; the password may instead come from
    the controller host's ~/.pgpass."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"postgres", "postgresql"}:
        raise InvalidInput(
            f"Invalid server URL: it must start with postgres:// (got {parts.scheme or 'none'}:)."
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InvalidInput("Invalid server URL: its port is not a number.") from None
    if not parts.hostname:
        raise InvalidInput("Invalid server URL: it names no host (postgres://admin@HOST/).")
    if not parts.username:
        raise InvalidInput("Invalid server URL: it names no admin user (postgres://USER@host/).")
    database = unquote(parts.path.lstrip("/")) or "postgres"
    return Server(
        parts.hostname, port, unquote(parts.username), unquote(parts.password or ""), database
    )


def pg_env(host: str, port: int, user: str, password: str, database: str) -> dict[str, str]:
    """libpq's environment for one connection: nothing on the command line."""
    env = {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGUSER": user,
        "PGDATABASE": database,
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": "waka",
    }
    if password:
        env["PGPASSWORD"] = password
    return env


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def startup_probe(host: str, port: int, user: str, database: str, timeout: float) -> bool:
    """Whether a PostgreSQL server accepts sessions: it answers a startup message by asking for
    authentication ('R'), not with an error such as "the database system is starting up"."""
    body = b"".join(part.encode() + b"\0" for part in ("user", user, "database", database)) + b"\0"
    message = struct.pack("!ii", 8 + len(body), 196608) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(message)
            return conn.recv(1) == b"R"
    except OSError:
        return False


class PostgresProvider(Provider):
    service = "postgresql"
    attachment = "DATABASE"
    plans = PLANS
    default_plan = "basic"
    supports_external = True
    supports_backups = True

    def __init__(
        self,
        runner: Runner = run_command,
        probe: Callable[[str, int, str, str, float], bool] = startup_probe,
    ) -> None:
        self._run = runner
        self._probe = probe

    def new_credentials(self, token: Callable[[int], str]) -> dict[str, str]:
        return {"user": "u" + token(7), "password": token(24), "database": "d" + token(7)}

    def credentials(self, record: AddonRecord) -> str:
        c = record.credentials
        user, password = quote(c["user"], safe=""), quote(c["password"], safe="")
        host = f"[{record.host}]" if ":" in record.host else record.host
        return f"postgres://{user}:{password}@{host}:{record.port}/{quote(c['database'])}"

    def service_process(self, record: AddonRecord, size: DynoSize) -> ServiceProcess:
        c = record.credentials
        return ServiceProcess(
            command=MANAGED_SCRIPT,
            env={
                "WAKA_ADDON_USER": c["user"],
                "WAKA_ADDON_PASSWORD": c["password"],
                "WAKA_ADDON_DATABASE": c["database"],
                "WAKA_ADDON_SHARED_BUFFERS": f"{max(16, size.memory_mb // 4)}MB",
                "WAKA_ADDON_MAX_CONNECTIONS": str(max(10, min(100, size.pids // 3))),
            },
        )

    def status(self, record: AddonRecord) -> bool:
        c = record.credentials
        return self._probe(record.host, record.port, c["user"], c["database"], PROBE_TIMEOUT)

    # ------------------------------------------------------------ external servers

    def check_server(self, url: str) -> tuple[str, int]:
        server = parse_server_url(url)
        self._admin(server, "SELECT 1;\n", "connect to the server")
        return server.host, server.port

    def server_address(self, url: str) -> tuple[str, int]:
        server = parse_server_url(url)
        return server.host, server.port

    def provision(self, record: AddonRecord) -> None:
        server = parse_server_url(record.server_url)
        c = record.credentials
        role, database = _ident(c["user"]), _ident(c["database"])
        # One statement per line: psql runs each in its own transaction, as CREATE DATABASE
        # requires. Granting the role to the admin lets a non-superuser admin make it owner.
        script = (
            f"CREATE ROLE {role} LOGIN PASSWORD {_literal(c['password'])};\n"
            f"GRANT {role} TO CURRENT_USER;\n"
            f"CREATE DATABASE {database} OWNER {role};\n"
            f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;\n"
            f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};\n"
        )
        try:
            self._admin(server, script, "create the database")
        except AddonFailed:
            self._drop(server, c["user"], c["database"])
            raise

    def deprovision(self, record: AddonRecord) -> None:
        c = record.credentials
        self._drop(parse_server_url(record.server_url), c["user"], c["database"], check=True)

    def _drop(self, server: Server, user: str, database: str, *, check: bool = False) -> None:
        script = (
            f"DROP DATABASE IF EXISTS {_ident(database)} WITH (FORCE);\n"
            f"DROP ROLE IF EXISTS {_ident(user)};\n"
        )
        if check:
            self._admin(server, script, "delete the database")
        else:
            self._run(_psql(), server.env(), script, ADMIN_TIMEOUT)

    def _admin(self, server: Server, script: str, what: str) -> CommandResult:
        result = self._run(_psql(), server.env(), script, ADMIN_TIMEOUT)
        if result.returncode != 0:
            raise AddonFailed(
                f"Could not {what} on {server.host}:{server.port} as {server.user}: "
                f"{last_lines(result.stderr) or f'psql exited with status {result.returncode}'}"
            )
        return result

    # ------------------------------------------------------------ backups

    def backup(self, record: AddonRecord, path: Path) -> None:
        result = self._run(
            ["pg_dump", "--format=custom", "--no-owner", "--no-acl", f"--file={path}"],
            self._env(record),
            "",
            BACKUP_TIMEOUT,
        )
        if result.returncode != 0:
            raise AddonFailed(f"pg_dump failed: {last_lines(result.stderr)}")

    def restore(self, record: AddonRecord, path: Path) -> None:
        result = self._run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-acl",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={record.credentials['database']}",
                str(path),
            ],
            self._env(record),
            "",
            BACKUP_TIMEOUT,
        )
        if result.returncode != 0:
            raise AddonFailed(
                f"pg_restore failed, nothing was changed: {last_lines(result.stderr)}"
            )

    @staticmethod
    def _env(record: AddonRecord) -> dict[str, str]:
        c: Mapping[str, str] = record.credentials
        return pg_env(record.host, record.port, c["user"], c["password"], c["database"])


def _psql() -> list[str]:
    # -X: no ~/.psqlrc; ON_ERROR_STOP: the first failing statement fails the run.
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]
