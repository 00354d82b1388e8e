"""Add-ons: provision a service for an app, attach it (a config var, a release), share, detach,
destroy.

The same for every service: the provider (see _addon_provider) knows the service, this module
knows add-ons. Managed add-ons are service processes that the reconciler's `services` hook puts
into their node's assignment, like dynos with a persistent volume and a fixed port; they stay on
their node, because that is where their data is. External ones are databases on a registered
server. Either way the URL reaches apps only through their config vars, each change a release.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio
from sqlite_utils import Database

from waka.controller._addon_backups import Backups
from waka.controller._addon_names import (
    AddonState,
    check_attachment_name,
    config_var,
    default_attachment,
    managed_state,
    random_addon_name,
)
from waka.controller._addon_postgresql import PostgresProvider
from waka.controller._addon_provider import Provider, Providers
from waka.controller._addon_records import (
    AddonRow,
    Attachment,
    addon_not_found,
    allocate_port,
    attachment_names,
    attachments_of,
    find_addon,
    load_addons,
    node_name,
    retire_attachment_var,
    rollback_config,
    set_attachment_var,
)
from waka.controller._addon_redis import RedisProvider
from waka.controller._apps import AppRow, _allocate_uid, find_app
from waka.controller._convert import timestamp
from waka.controller._errors import AlreadyExists, Conflict, InvalidInput, NotFound
from waka.controller._fleet import Fleet
from waka.controller._logs import LogHub
from waka.controller._reconcile import FleetView, Reconciler
from waka.controller._releaser import Releaser
from waka.controller._releases import current_slug
from waka.controller._sizes import DEFAULT_SIZES
from waka.controller._store import Store
from waka.v1 import platform_pb2 as pb
from waka.v1.agent_pb2 import ControllerMessage, DeleteVolume, DynoSpec
from waka.v1.common_pb2 import DynoSize

log = logging.getLogger("waka.controller")

EXTERNAL_PLAN = "external"
ADDON_TYPE = "addon"
STOP_GRACE_SECONDS = 30
# How long `addons:create` waits for a new managed add-on to answer before attaching it
# (within the CLI's 30 s deadline for a call).
READY_TIMEOUT = 20.0
READY_POLL = 0.2
# How often volumes of destroyed add-ons are looked at (their node may have been away).
CLEANUP_INTERVAL = 5.0
CLEANUP_POLL = 0.5


@dataclass(frozen=True)
class Change:
    """A release an add-on change made: (app, config var, version or 0, attach|detach)."""

    app: str
    config_var: str
    version: int
    action: str


def _token(size: int) -> str:
    return secrets.token_hex(size)


class Addons:
    def __init__(
        self,
        store: Store,
        hub: LogHub,
        reconciler: Reconciler,
        releaser: Releaser,
        fleet: Fleet,
        providers: Providers,
        *,
        port_free: Callable[[str, int], bool] = lambda _host, _port: True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        token: Callable[[int], str] = _token,
        sizes: Mapping[str, DynoSize] = DEFAULT_SIZES,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._store = store
        self._hub = hub
        self._reconciler = reconciler
        self._releaser = releaser
        self._fleet = fleet
        self.providers = providers
        self._port_free = port_free
        self._clock = clock
        self._rng = rng or random.Random()
        self._token = token
        self._sizes = sizes
        self._ready_timeout = ready_timeout
        self._cleanup_wanted = trio.Event()
        self._mirrors_lock = trio.Lock()
        # Called with an add-on's id once it is destroyed (backups delete their files).
        self.destroyed_hooks: list[Callable[[str], Awaitable[None]]] = []

    # ------------------------------------------------------------ hooks for the rest

    def services(self, db: Database, node_id: str) -> list[DynoSpec]:
        """The reconciler's `services` hook: the managed add-ons this node runs."""
        specs = []
        for row in load_addons(db, "WHERE a.mode = 'managed' AND a.node_id = ?", (node_id,)):
            size = self._size_of(row.name, row.service, row.plan)
            if size is None:
                continue
            process = self.providers.get(row.service).service_process(row.record(), size)
            specs.append(
                DynoSpec(
                    id=row.instance,
                    app=row.name,
                    name=row.service,
                    type=ADDON_TYPE,
                    command=process.command,
                    env={**process.env, "WAKA_ADDON_NAME": row.name},
                    size=size,
                    uid=row.uid,
                    stack="host",
                    stop_grace_seconds=STOP_GRACE_SECONDS,
                    volume=row.id,
                    fixed_port=row.port,
                )
            )
        return specs

    def service_memory(self, db: Database) -> dict[str, int]:
        """The reconciler's `service_memory` hook: MB the managed add-ons take, by node (their
        plans' sizes), so placement does not count that memory as free."""
        committed: dict[str, int] = {}
        for name, service, plan, node_id in db.execute(
            "SELECT name, service, plan, node_id FROM addons"
            " WHERE mode = 'managed' AND node_id IS NOT NULL"
        ):
            size = self._size_of(name, service, plan)
            if size is not None:
                committed[node_id] = committed.get(node_id, 0) + size.memory_mb
        return committed

    def _size_of(self, name: str, service: str, plan: str) -> DynoSize | None:
        """The dyno size a managed add-on's plan runs at; None (logged) if unknown here."""
        try:
            return self._sizes[self.providers.get(service).plan(plan).size]
        except (NotFound, InvalidInput, KeyError):
            log.error("add-on %s: no provider or plan for %s:%s", name, service, plan)
            return None

    def rollback_config(
        self, db: Database, app: AppRow, target: dict[str, str]
    ) -> tuple[dict[str, str], list[str]]:
        """The releaser's rollback hook: add-ons are not rolled back (see _addon_records)."""
        return rollback_config(db, app.id, target)

    # ------------------------------------------------------------ reading

    def state(self, row: AddonRow, node: str | None) -> AddonState:
        if row.mode != "managed":
            return AddonState("available")
        session = self._fleet.session(row.node_id)
        node_state = None
        if session is not None and not session.closed:
            node_state = self._fleet.states.get(row.node_id, "ready")
        status = self._fleet.dyno_status(row.instance)
        return managed_state(
            node,
            node_state,
            status.state if status is not None else None,
            status.message if status is not None else "",
        )

    def _message(self, loaded: _Loaded) -> pb.Addon:
        """On the trio thread: the state comes from what the agents report."""
        row, node = loaded.row, loaded.node
        state = self.state(row, node)
        addon = pb.Addon(
            name=row.name,
            id=row.id,
            service=row.service,
            plan=row.plan,
            state=state.state,
            message=state.message,
            mode=row.mode,
            node=(node or "(removed)") if row.mode == "managed" else "",
            server=row.server_name,
            app=row.owner,
            port=row.port,
            attachments=[
                pb.AddonAttachment(app=a.app, name=a.name, config_var=a.config_var)
                for a in loaded.attachments
            ],
        )
        addon.created_at.CopyFrom(timestamp(row.created_at))
        return addon

    async def _messages(self, find: Callable[[Database], list[AddonRow]]) -> list[pb.Addon]:
        def read(db: Database) -> list[_Loaded]:
            return [
                _Loaded(
                    row,
                    node_name(db, row.node_id) if row.mode == "managed" else None,
                    attachments_of(db, row.id),
                )
                for row in find(db)
            ]

        return [self._message(loaded) for loaded in await self._store.read(read)]

    async def list(self, app: str) -> list[pb.Addon]:
        def find(db: Database) -> list[AddonRow]:
            if not app:
                return load_addons(db)
            found = find_app(db, app)
            return load_addons(
                db,
                "WHERE a.id IN (SELECT addon_id FROM addon_attachments WHERE app_id = ?)"
                " OR a.owner_app_id = ?",
                (found.id, found.id),
            )

        return await self._messages(find)

    async def get(self, ref: str, app: str) -> pb.Addon:
        (addon,) = await self._messages(lambda db: [find_addon(db, ref, app)])
        return addon

    def service_list(self) -> list[pb.AddonService]:
        return [
            pb.AddonService(
                name=p.service,
                attachment=p.attachment,
                external=p.supports_external,
                backups=p.supports_backups,
                plans=[
                    pb.AddonPlan(
                        name=plan.name, summary=plan.summary, default=name == p.default_plan
                    )
                    for name, plan in p.plans.items()
                ],
            )
            for p in self.providers.all()
        ]

    # ------------------------------------------------------------ create

    async def create(
        self, app: str, service: str, plan: str, as_name: str, node: str, user: str
    ) -> tuple[pb.Addon, list[Change], str]:
        service, _, plan_in_service = service.strip().partition(":")
        if plan and plan_in_service and plan != plan_in_service:
            raise InvalidInput(f"Two plans given: {plan_in_service} and {plan}; give one.")
        provider = self.providers.get(service)
        plan = (plan or plan_in_service).strip().lower()
        wanted_name = check_attachment_name(as_name) if as_name.strip() else ""
        if plan == EXTERNAL_PLAN and not provider.supports_external:
            raise InvalidInput(f"{provider.service} add-ons cannot live on an external server.")
        # What the agents report is read here, on the trio thread, for the transaction to use.
        view = self._reconciler.fleet_view()
        addresses = {s.node_id: s.inventory.address for s in self._fleet.sessions()}
        addon_id = uuid.uuid4().hex
        chosen_names: list[str] = []

        def insert(db: Database) -> AddonRow:
            owner = find_app(db, app)
            server = self._external_server(db, provider, plan)
            chosen_plan = EXTERNAL_PLAN if server else provider.plan(plan).name
            name = self._unique_name(db, provider.service)
            taken = attachment_names(db, owner.id)
            attach_as = wanted_name or default_attachment(provider.attachment, name, taken)
            _check_free(db, owner, attach_as, taken)
            chosen_names.append(attach_as)
            credentials = provider.new_credentials(self._token)
            common = (addon_id, name, provider.service, chosen_plan, owner.id, self._clock())
            if server:
                if node.strip():
                    raise InvalidInput("--node is for managed add-ons; this one is external.")
                host, port = provider.server_address(server[1])
                db.execute(
                    "INSERT INTO addons (id, name, service, plan, mode, owner_app_id, created_at,"
                    " server_id, host, port, credentials)"
                    " VALUES (?, ?, ?, ?, 'external', ?, ?, ?, ?, ?, ?)",
                    (*common, server[0], host, port, json.dumps(credentials)),
                )
            else:
                size = provider.plan(chosen_plan).size
                node_id = self._place(db, view, addon_id, size, node.strip())
                address = addresses.get(node_id) or _stored_address(db, node_id)
                port = allocate_port(db, node_id, lambda p: self._port_free(address, p))
                db.execute(
                    "INSERT INTO addons (id, name, service, plan, mode, owner_app_id, created_at,"
                    " node_id, port, uid, instance, host, credentials)"
                    " VALUES (?, ?, ?, ?, 'managed', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        *common,
                        node_id,
                        port,
                        _allocate_uid(db),
                        uuid.uuid4().hex,
                        address,
                        json.dumps(credentials),
                    ),
                )
            return load_addons(db, "WHERE a.id = ?", (addon_id,))[0]

        row = await self._store.write(insert)
        await self.route_logs()  # its first lines say whether it starts
        self._hub.emit(app, f"Provisioning {row.name} ({row.service}:{row.plan}) by {user}")
        note = ""
        try:
            if row.mode == "external":
                await trio.to_thread.run_sync(provider.provision, row.record())
            else:
                await self._reconciler.push_node(row.node_id)
                if not await self._wait_ready(provider, row):
                    note = (
                        f"{row.name} did not answer within {int(self._ready_timeout)}s; it is"
                        " attached and will be usable once its server is up (`waka addons`)."
                    )
            change = await self._attach(row, app, chosen_names[0], user)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._forget(row)
            raise
        addon = await self.get(row.name, "")
        return addon, [change], note

    @staticmethod
    def _external_server(db: Database, provider: Provider, plan: str) -> tuple[str, str] | None:
        """The server an external add-on goes to: with --plan external, or by default once a
        server for the service is registered. Returns (id, admin URL)."""
        if plan and plan != EXTERNAL_PLAN:
            return None
        row = db.execute(
            "SELECT id, url FROM addon_servers WHERE service = ? ORDER BY created_at LIMIT 1",
            (provider.service,),
        ).fetchone()
        if row is None:
            if plan == EXTERNAL_PLAN:
                raise Conflict(
                    f"No external {provider.service} server is registered: add one with"
                    f" `waka addons:servers:add {provider.service} URL`."
                )
            return None
        return row[0], row[1]

    def _unique_name(self, db: Database, service: str) -> str:
        for _ in range(50):
            name = random_addon_name(service, self._rng)
            taken = db.execute("SELECT 1 FROM addons WHERE name = ?", (name,)).fetchone()
            if (
                not taken
                and not db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone()
            ):
                return name
        raise Conflict("Could not find a free add-on name; try again.")

    def _place(self, db: Database, view: FleetView, addon_id: str, size: str, wanted: str) -> str:
        """The node for a new managed add-on: the one asked for, else placement's choice."""
        if not wanted:
            chosen, reason = self._reconciler.place_one(db, view, addon_id, ADDON_TYPE, size)
            if chosen is None:
                raise Conflict(f"Cannot place the add-on: {reason}.")
            return chosen
        row = db.execute("SELECT id FROM nodes WHERE name = ?", (wanted,)).fetchone()
        if row is None:
            raise NotFound(f"No node named {wanted!r}; `waka nodes` lists them.")
        if not any(n.node_id == row[0] and n.schedulable for n in view.nodes):
            raise Conflict(f"Node {wanted} is not ready for new work (down, cordoned or draining).")
        return str(row[0])

    async def _wait_ready(self, provider: Provider, row: AddonRow) -> bool:
        with trio.move_on_after(self._ready_timeout):
            # Nothing announces that a server is ready, so this asks (every 200 ms).
            while not await trio.to_thread.run_sync(provider.status, row.record()):  # noqa: ASYNC110
                await trio.sleep(READY_POLL)
            return True
        return False

    async def _forget(self, row: AddonRow) -> None:
        """Undoes a create that failed before its first attachment."""
        if row.mode == "external":
            try:
                await trio.to_thread.run_sync(
                    self.providers.get(row.service).deprovision, row.record()
                )
            except Exception:
                log.exception(
                    "add-on %s: cannot delete its database after a failed create", row.name
                )
        await self._store.write(lambda db: self._delete(db, row))
        await self.route_logs()
        if row.mode == "managed":
            await self._reconciler.push_node(row.node_id)
            self._cleanup_wanted.set()

    # ------------------------------------------------------------ attach, detach

    async def attach(self, ref: str, app: str, as_name: str, user: str) -> tuple[pb.Addon, Change]:
        wanted = check_attachment_name(as_name) if as_name.strip() else ""

        def find(db: Database) -> tuple[AddonRow, str]:
            row = find_addon(db, ref)
            target = find_app(db, app)
            taken = attachment_names(db, target.id)
            name = wanted or default_attachment(
                self.providers.get(row.service).attachment, row.name, taken
            )
            _check_free(db, target, name, taken)
            return row, name

        row, name = await self._store.read(find)
        change = await self._attach(row, app, name, user)
        return await self.get(row.name, ""), change

    async def _attach(self, row: AddonRow, app: str, name: str, user: str) -> Change:
        url = self.providers.get(row.service).credentials(row.record())

        def apply(db: Database, target: AppRow) -> None:
            if not db.execute("SELECT 1 FROM addons WHERE id = ?", (row.id,)).fetchone():
                raise addon_not_found(row.name)
            _check_free(db, target, name, attachment_names(db, target.id))
            db.execute(
                "INSERT INTO addon_attachments (addon_id, app_id, name, created_at)"
                " VALUES (?, ?, ?, ?)",
                (row.id, target.id, name, self._clock()),
            )
            set_attachment_var(db, target.id, config_var(name), url)

        version = await self._release(app, apply, f"Attach {name} ({row.name})", user)
        await self.route_logs()
        self._hub.emit(app, f"Attached {row.name} as {name} by {user}")
        return Change(app, config_var(name), version, "attach")

    async def detach(self, ref: str, app: str, user: str) -> tuple[pb.Addon, list[Change]]:
        def find(db: Database) -> tuple[AddonRow, list[str]]:
            target = find_app(db, app)
            row = find_addon(db, ref, app)
            names = [a.name for a in attachments_of(db, row.id) if a.app_id == target.id]
            wanted = ref.strip().upper().removesuffix("_URL")
            if wanted in names:
                names = [wanted]
            if not names:
                raise NotFound(f"{row.name} is not attached to {app}.")
            return row, names

        row, names = await self._store.read(find)
        changes = [await self._detach(row, app, name, user) for name in names]
        return await self.get(row.name, ""), changes

    async def _detach(self, row: AddonRow, app: str, name: str, user: str) -> Change:
        def apply(db: Database, target: AppRow) -> None:
            db.execute(
                "DELETE FROM addon_attachments WHERE addon_id = ? AND app_id = ? AND name = ?",
                (row.id, target.id, name),
            )
            retire_attachment_var(db, target.id, config_var(name))

        version = await self._release(app, apply, f"Detach {name} ({row.name})", user)
        await self.route_logs()
        self._hub.emit(app, f"Detached {row.name} ({name}) by {user}")
        return Change(app, config_var(name), version, "detach")

    async def _release(
        self,
        app: str,
        apply: Callable[[Database, AppRow], None],
        description: str,
        user: str,
    ) -> int:
        """Applies a config change; with a slug it is a new release (0 without one), as
        config changes are (see Apps.update_config)."""
        slug = await self._store.read(lambda db: current_slug(db, find_app(db, app).id))
        if slug is None:
            await self._store.write(lambda db: apply(db, find_app(db, app)))
            return 0
        version, _ = await self._releaser.release(
            app, slug=slug, description=description, user=user, prepare=apply, wait=False
        )
        return version

    # ------------------------------------------------------------ destroy

    async def destroy(self, ref: str, confirm: str, user: str) -> tuple[pb.Addon, list[Change]]:
        def find(db: Database) -> tuple[AddonRow, list[tuple[str, str]]]:
            row = find_addon(db, ref)
            return row, [(a.app, a.name) for a in attachments_of(db, row.id)]

        row, attached = await self._store.read(find)
        before = await self.get(row.name, "")
        expected = row.owner or row.name
        if confirm.strip() != expected:
            raise InvalidInput(
                f"Destroying {row.name} deletes its data: re-run with --confirm {expected}."
            )
        changes = [await self._detach(row, app, name, user) for app, name in attached]
        if row.mode == "external":
            await trio.to_thread.run_sync(self.providers.get(row.service).deprovision, row.record())
        await self._store.write(lambda db: self._delete(db, row))
        await self.route_logs()
        self._hub.forget(row.name)  # its own stream; the apps keep the lines they were sent
        if row.mode == "managed":
            await self._reconciler.push_node(row.node_id)
            self._cleanup_wanted.set()
        for hook in self.destroyed_hooks:
            await hook(row.id)
        if row.owner:
            self._hub.emit(row.owner, f"Destroyed {row.name} by {user}")
        before.state = "destroyed"
        before.message = ""
        del before.attachments[:]
        return before, changes

    async def app_destroyed(self, app: str, user: str) -> None:
        """Before an app goes: the add-ons it owns go with it (as on Heroku), detached from
        every app they were shared with; attachments of other apps' add-ons simply end."""
        owned = await self._store.read(
            lambda db: [
                r[0]
                for r in db.execute(
                    "SELECT a.name FROM addons a JOIN apps o ON o.id = a.owner_app_id"
                    " WHERE o.name = ?",
                    (app,),
                )
            ]
        )
        for name in owned:
            await self.destroy(name, app, user)

    def _delete(self, db: Database, row: AddonRow) -> None:
        if row.mode == "managed":
            # Its node still runs the service until its next assignment: remember it as ours,
            # or the node would be told to keep it as a process this database does not know.
            db.execute(
                "INSERT OR IGNORE INTO dyno_tombstones (id, node_id) VALUES (?, ?)",
                (row.instance, row.node_id),
            )
            db.execute(
                "INSERT OR REPLACE INTO addon_volume_deletions (volume, node_id, instance,"
                " created_at) VALUES (?, ?, ?, ?)",
                (row.id, row.node_id, row.instance, self._clock()),
            )
        db.execute("DELETE FROM addons WHERE id = ?", (row.id,))

    async def route_logs(self) -> None:
        """A managed add-on's output goes to the streams of its owner and of the apps it is
        attached to as well, as `app[ADDON]` lines (Heroku's Postgres logs show up in the
        app's logs alike). Call after each change of add-ons or attachments."""
        async with self._mirrors_lock:  # the last read wins, never an older one
            pairs = await self._store.read(
                lambda db: db.execute(
                    "SELECT a.name, p.name FROM addons a JOIN apps p ON p.id = a.owner_app_id"
                    " WHERE a.mode = 'managed'"
                    " UNION SELECT a.name, p.name FROM addon_attachments t"
                    " JOIN addons a ON a.id = t.addon_id JOIN apps p ON p.id = t.app_id"
                    " WHERE a.mode = 'managed' ORDER BY 1, 2"
                ).fetchall()
            )
            mirrors: dict[str, list[str]] = {}
            for addon, app in pairs:
                mirrors.setdefault(addon, []).append(app)
            self._hub.set_mirrors(mirrors)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deletes the volumes of destroyed add-ons once their node has stopped the service."""
        task_status.started()
        waiting = False
        while True:
            # Soon again while a volume waits for its service to stop; rarely once none waits.
            with trio.move_on_after(CLEANUP_POLL if waiting else CLEANUP_INTERVAL):
                await self._cleanup_wanted.wait()
            self._cleanup_wanted = trio.Event()
            waiting = await self.delete_volumes()

    async def delete_volumes(self) -> bool:
        """Sends DeleteVolume for each volume whose node has stopped its service; returns
        whether some are still waiting for a node that is connected."""
        pending = await self._store.read(
            lambda db: db.execute(
                "SELECT volume, node_id, instance FROM addon_volume_deletions"
            ).fetchall()
        )
        done = []
        waiting = False
        for volume, node_id, instance in pending:
            session = self._fleet.session(node_id)
            if session is None or session.closed or not session.status_seen:
                continue
            if instance in session.dynos:
                waiting = True  # still stopping: the agent refuses to delete a volume in use
                continue
            if session.send(ControllerMessage(delete_volume=DeleteVolume(id=volume))):
                done.append(volume)
        if done:
            await self._store.write(
                lambda db: db.conn.executemany(
                    "DELETE FROM addon_volume_deletions WHERE volume = ?", [(v,) for v in done]
                )
            )
        return waiting

    # ------------------------------------------------------------ external servers

    async def add_server(self, service: str, url: str, name: str) -> pb.AddonServer:
        provider = self.providers.get(service)
        if not provider.supports_external:
            raise InvalidInput(f"{provider.service} add-ons cannot live on an external server.")
        host, port = await trio.to_thread.run_sync(provider.check_server, url.strip())
        chosen = name.strip() or host
        server_id = uuid.uuid4().hex

        def insert(db: Database) -> None:
            if db.execute("SELECT 1 FROM addon_servers WHERE name = ?", (chosen,)).fetchone():
                raise AlreadyExists(f"A server named {chosen} is already registered.")
            db.execute(
                "INSERT INTO addon_servers (id, name, service, url, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (server_id, chosen, provider.service, url.strip(), self._clock()),
            )

        await self._store.write(insert)
        return pb.AddonServer(
            name=chosen, service=provider.service, address=f"{host}:{port}", addons=0
        )

    async def list_servers(self) -> list[pb.AddonServer]:
        def read(db: Database) -> list[tuple]:
            return db.execute(
                "SELECT s.name, s.service, s.url, s.created_at,"
                " (SELECT COUNT(*) FROM addons a WHERE a.server_id = s.id)"
                " FROM addon_servers s ORDER BY s.name"
            ).fetchall()

        servers = []
        for name, service, url, created_at, count in await self._store.read(read):
            host, port = self.providers.get(service).server_address(url)
            server = pb.AddonServer(
                name=name, service=service, address=f"{host}:{port}", addons=count
            )
            server.created_at.CopyFrom(timestamp(created_at))
            servers.append(server)
        return servers

    async def remove_server(self, name: str) -> None:
        def delete(db: Database) -> None:
            row = db.execute("SELECT id FROM addon_servers WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(
                    f"No add-on server named {name!r}; `waka addons:servers` lists them."
                )
            (count,) = db.execute(
                "SELECT COUNT(*) FROM addons WHERE server_id = ?", (row[0],)
            ).fetchone()
            if count:
                raise Conflict(f"{count} add-on(s) live on {name}: destroy them first.")
            db.execute("DELETE FROM addon_servers WHERE id = ?", (row[0],))

        await self._store.write(delete)


@dataclass(frozen=True)
class _Loaded:
    """An add-on's row with what its message needs from the database."""

    row: AddonRow
    node: str | None
    attachments: list[Attachment]


def _stored_address(db: Database, node_id: str) -> str:
    row = db.execute("SELECT address FROM nodes WHERE id = ?", (node_id,)).fetchone()
    return (row[0] if row else "") or "127.0.0.1"


def _check_free(db: Database, app: AppRow, name: str, taken: set[str]) -> None:
    if name in taken:
        raise AlreadyExists(
            f"{app.name} already has an add-on attached as {name}: choose another name with --as."
        )
    var = config_var(name)
    exists = db.execute(
        "SELECT 1 FROM config_vars WHERE app_id = ? AND name = ?", (app.id, var)
    ).fetchone()
    if exists:
        raise Conflict(
            f"{app.name} already has a config var {var} (not from an add-on): unset it, or"
            " choose another name with --as."
        )


def port_free_here(address: str, port: int) -> bool:
    """Whether a port can be given to a new add-on on the node at `address`: checked when that
    node is this host (the usual homelab); another host's ports are taken on trust."""
    try:
        local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    except OSError:
        return True
    if address not in local and address not in {"localhost", "0.0.0.0"}:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def build_addons(
    store: Store,
    hub: LogHub,
    reconciler: Reconciler,
    releaser: Releaser,
    fleet: Fleet,
    backups_dir: Path,
) -> tuple[Addons, Backups]:
    """The add-ons service with the built-in providers, and its backups."""
    providers = Providers([PostgresProvider(), RedisProvider()])
    addons = Addons(store, hub, reconciler, releaser, fleet, providers, port_free=port_free_here)
    backups = Backups(store, providers, backups_dir)
    addons.destroyed_hooks.append(backups.forget_addon)
    return addons, backups
