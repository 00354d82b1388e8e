"""What each node is sent: its complete assignment, built from the database, cheaply and exactly.

An assignment is the full list of a node's dynos, sent whole every time (level-triggered). At fleet
scale the same node is sent its list again and again as dynos are added to it, so building one
must not cost a full read and a new spec per dyno each time:

- A dyno's spec is made once and kept while the dyno stays assigned to the node. That is exact
  because nothing a spec is made of ever changes after it is written: a dyno row changes only in
  `desired` and `node_id` (which decide whether it is in the list at all), and releases and apps'
  name, uid and stack are immutable. The schema enforces this (migration m010's triggers), so a
  change that would make a kept spec stale fails loudly instead.
- Each push reads only the ids of the node's dynos, in order, and the full rows of the new ones.
- What was last sent to each session is remembered, so that the periodic resync sends nothing to
  a node that was sent exactly this and reports running exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from sqlite_utils import Database

from waka.controller._fleet import AgentSession
from waka.v1.agent_pb2 import Assignment, ControllerMessage, DynoSpec, SlugRef
from waka.v1.common_pb2 import DynoSize, WindowSize

# SQLite's default limit of host parameters is 999 (older builds); stay well below it.
_IN_CHUNK = 500
# Joined like _ROWS_SQL, so that both leave out the same dynos (none, while every dyno's release
# exists).
_IDS_SQL = (
    "SELECT d.id FROM dynos d JOIN apps a ON a.id = d.app_id"
    " JOIN releases r ON r.app_id = d.app_id AND r.version = d.release_version"
    " WHERE d.node_id = ? AND d.desired = 'run' ORDER BY d.seq"
)
# The columns a dyno's spec is made of (see _spec).
_ROWS_SQL = (
    "SELECT d.id, d.type, d.idx, d.release_version, d.size, d.oneoff, d.command, d.env,"
    " d.attach, d.tty, d.timeout_seconds, d.tty_cols, d.tty_rows, a.name, a.uid, a.stack,"
    " r.slug_sha256, r.slug_size, r.process_types, r.health_check_path, r.config, d.app_id,"
    " d.private_network"
    " FROM dynos d JOIN apps a ON a.id = d.app_id"
    " JOIN releases r ON r.app_id = d.app_id AND r.version = d.release_version"
    " WHERE d.id IN ({marks})"
)


@dataclass(frozen=True)
class NodeAssignment:
    """What one node's assignment is made of, read in one transaction."""

    # The node's dynos to run, in the order they were created.
    ids: tuple[str, ...]
    # Full rows of the dynos among them with no spec made yet, by id.
    rows: dict[str, tuple]
    # Long-running services (managed add-ons) the node also runs.
    services: list[DynoSpec]
    # Every dyno id this database knows on the node (to tell which reported ones are unknown).
    known: set[str]


class Assignments:
    def __init__(
        self, sizes: Mapping[str, DynoSize], stop_grace_seconds: int, boot_timeout_seconds: int
    ) -> None:
        self._sizes = sizes
        self._stop_grace = stop_grace_seconds
        self._boot_timeout = boot_timeout_seconds
        # Per node, the specs of the dynos it was last sent, by id.
        self._specs: dict[str, dict[str, DynoSpec]] = {}
        # Per node, the session it was last sent an assignment on, and what that assignment was
        # made of (ids, services, keep): compared whole, so no digest can collide.
        self._sent: dict[str, tuple[AgentSession, tuple]] = {}

    def read(
        self,
        db: Database,
        node_ids: Collection[str],
        services: Callable[[Database, str], list[DynoSpec]],
    ) -> dict[str, NodeAssignment]:
        """Reads the nodes' assignments (in a worker thread, inside one read transaction; the
        spec cache is only changed on the trio thread, which waits for this)."""
        out: dict[str, NodeAssignment] = {}
        missing: list[str] = []
        conn = db.conn
        for node_id in node_ids:
            node_services = services(db, node_id)
            ids = tuple(r[0] for r in conn.execute(_IDS_SQL, (node_id,)))
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM dynos WHERE node_id = ? UNION SELECT id FROM dyno_tombstones"
                    " WHERE node_id = ?",
                    (node_id, node_id),
                )
            }
            known.update(spec.id for spec in node_services)
            cached = self._specs.get(node_id, {})
            missing.extend(dyno_id for dyno_id in ids if dyno_id not in cached)
            out[node_id] = NodeAssignment(ids, {}, node_services, known)
        rows: dict[str, tuple] = {}
        for start in range(0, len(missing), _IN_CHUNK):
            chunk = missing[start : start + _IN_CHUNK]
            sql = _ROWS_SQL.format(marks=",".join("?" * len(chunk)))
            rows.update((row[0], row) for row in conn.execute(sql, chunk))
        for assignment in out.values():
            assignment.rows.update(
                (dyno_id, rows[dyno_id]) for dyno_id in assignment.ids if dyno_id in rows
            )
        return out

    def message(
        self,
        node_id: str,
        session: AgentSession,
        assignment: NodeAssignment,
        keep: list[str],
        *,
        unless_unchanged: bool,
        decoded: dict[tuple[str, int], tuple[dict, dict]],
    ) -> ControllerMessage | None:
        """The message to send the node, or None when `unless_unchanged` and the session was
        already sent exactly this and reports running exactly that. `decoded` caches each
        release's process types and config for the caller's whole push."""
        services = tuple(s.SerializeToString(deterministic=True) for s in assignment.services)
        made_of = (assignment.ids, services, tuple(keep))
        sent = self._sent.get(node_id)
        if (
            unless_unchanged
            and sent is not None
            and sent[0] is session
            and sent[1] == made_of
            and _runs_exactly(session, assignment, keep)
        ):
            return None
        before = self._specs.get(node_id, {})
        now: dict[str, DynoSpec] = {}
        for dyno_id in assignment.ids:
            spec = before.get(dyno_id)
            if spec is None:
                # Both queries ran in one read transaction: every new id has its row.
                spec = self._spec(assignment.rows[dyno_id], decoded)
            now[dyno_id] = spec
        self._specs[node_id] = now
        specs = [*now.values(), *assignment.services]
        self._sent[node_id] = (session, made_of)
        return ControllerMessage(assignment=Assignment(dynos=specs, keep=keep))

    def forget(self, node_id: str) -> None:
        """The node's session is gone (or a message to it was lost): the next push sends all."""
        self._specs.pop(node_id, None)
        self._sent.pop(node_id, None)

    def nodes(self) -> set[str]:
        return set(self._specs) | set(self._sent)

    def _spec(self, row: tuple, decoded: dict[tuple[str, int], tuple[dict, dict]]) -> DynoSpec:
        (
            dyno_id,
            ptype,
            idx,
            release,
            size_name,
            oneoff,
            command,
            extra_env,
            attach,
            tty,
            timeout_seconds,
            tty_cols,
            tty_rows,
            app,
            uid,
            stack,
            slug_sha256,
            slug_size,
            process_types_json,
            health_check_path,
            config_json,
            app_id,
            private_network,
        ) = row
        release_data = decoded.get((app_id, release))
        if release_data is None:
            release_data = (json.loads(process_types_json), json.loads(config_json))
            decoded[(app_id, release)] = release_data
        process_types, config = release_data
        env = dict(config)
        env.update(json.loads(extra_env))
        env.update(
            {
                "WAKA_APP_NAME": app,
                "WAKA_RELEASE_VERSION": f"v{release}",
                "WAKA_DYNO_ID": dyno_id,
            }
        )
        size = self._sizes.get(size_name) or self._sizes["standard-1x"]
        return DynoSpec(
            id=dyno_id,
            app=app,
            name=f"{ptype}.{idx}",
            type=ptype,
            release=release,
            slug=SlugRef(sha256=slug_sha256 or "", size=slug_size or 0),
            command=command or process_types.get(ptype, ""),
            env=env,
            size=size,
            uid=uid,
            oneoff=bool(oneoff),
            stack=stack,
            stop_grace_seconds=self._stop_grace,
            boot_timeout_seconds=self._boot_timeout,
            attach=bool(attach),
            tty=bool(tty),
            window=WindowSize(cols=tty_cols, rows=tty_rows),
            timeout_seconds=timeout_seconds,
            health_check_path=health_check_path if ptype == "web" else "",
            private_network=bool(private_network),
            app_id=app_id,
        )


def _runs_exactly(session: AgentSession, assignment: NodeAssignment, keep: list[str]) -> bool:
    """The node reports every dyno it is assigned, and nothing else but the ones it keeps."""
    assigned = set(assignment.ids) | {spec.id for spec in assignment.services}
    reported = session.dynos.keys()
    return assigned <= reported <= assigned | set(keep)
