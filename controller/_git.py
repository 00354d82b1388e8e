"""The controller's git endpoint: `git push waka main` to `http://HOST:PORT/<app>.git`.

Smart HTTP is served by git itself (`git http-backend` run as a CGI per request, its output
streamed back as it is produced). Pushes are authenticated with HTTP basic auth whose password
is a waka token. Each app's bare repository carries a pre-receive hook (`_githook.py`) that
hands the ref updates to this endpoint over a Unix socket while git still holds the pushed
objects in quarantine; the endpoint checks the refs, calls the injected `deploy`, streams its
output back to the pusher as `remote:` lines, and accepts or rejects the push with its answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs

import trio

from . import _githook as githook
from ._http import Request, ResponseWriter, send_text, serve_http

log = logging.getLogger(__name__)

APP_NAME = re.compile(r"[a-z][a-z0-9-]{1,29}")
DEPLOY_BRANCHES = ("main", "master")
SERVICES = ("git-upload-pack", "git-receive-pack")
HOOK_SOCKET_NAME = "git-hook.sock"
HOOK_SCRIPT = Path(__file__).with_name("_githook.py")
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
UNIX_SOCKET_PATH_MAX = 107
REPO_CONFIG = (
    ("receive.denyDeletes", "true"),
    # http-backend refuses pushes unless this is set or REMOTE_USER is; say it outright.
    ("http.receivepack", "true"),
    # So `git push -o no-wait` reaches the hook.
    ("receive.advertisePushOptions", "true"),
)
NO_WAIT_OPTION = "no-wait"
# Headers of the CGI response that belong to the CGI gateway, not to the HTTP response.
CGI_ONLY_HEADERS = frozenset({"status", "connection", "transfer-encoding", "keep-alive"})
CGI_HEADER_LIMIT = 64 * 1024
HOOK_HEADER_LIMIT = 1024 * 1024
HOOK_HEADER_TIMEOUT = 10.0
BACKEND_STDERR_LINES_LOGGED = 50
ZERO_SHA = re.compile(r"0+")


class OutputSink(Protocol):
    async def line(self, text: str) -> None:
        """Shows one line of output to the pusher (as `remote: text`)."""
        ...


Authenticate = Callable[[str], Awaitable[str | None]]
AppExists = Callable[[str], Awaitable[bool]]
Deploy = Callable[["Push", OutputSink], Awaitable[bool]]


class InvalidAppName(ValueError):
    def __init__(self, app: str) -> None:
        super().__init__(
            f"invalid app name {app!r}: use 2 to 30 lowercase letters, digits and dashes, "
            "starting with a letter"
        )


class GitCommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: bytes) -> None:
        message = stderr.decode("utf-8", "replace").strip() or "(no output)"
        super().__init__(f"{shlex.join(argv)} exited with status {returncode}: {message}")


class PushRejected(Exception):
    """A push the endpoint refuses; the message is shown to the pusher."""


# --- Requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GitRoute:
    """A smart-HTTP request for one app's repository."""

    app: str
    service: str  # git-upload-pack (fetch, clone) or git-receive-pack (push)
    path_info: str  # as http-backend wants it, relative to the repositories directory
    query: str


_ROUTE_PATH = re.compile(r"/([^/]+?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)")


def parse_git_route(method: str, target: str) -> GitRoute | None:
    """The route of a smart-HTTP request, or None when it is not one (which answers 404).

    Only the smart protocol is served: the dumb one would need `update-server-info` after
    every push and gives no place for the hook's output.
    """
    path, _, query = target.partition("?")
    match = _ROUTE_PATH.fullmatch(path)
    if match is None or not APP_NAME.fullmatch(match[1]):
        return None
    app, endpoint = match[1], match[2]
    if endpoint == "info/refs":
        services = parse_qs(query).get("service", [])
        if method != "GET" or len(services) != 1 or services[0] not in SERVICES:
            return None
        service = services[0]
    else:
        if method != "POST":
            return None
        service = endpoint
    return GitRoute(app=app, service=service, path_info=f"/{app}.git/{endpoint}", query=query)


def basic_auth_password(authorization: str | None) -> str | None:
    """The password of an HTTP basic `Authorization` header (the user name is ignored)."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon and password else None


def parse_cgi_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, reason and HTTP headers from a CGI response head (RFC 3875 section 6)."""
    status, reason = 200, "OK"
    headers: list[tuple[str, str]] = []
    for raw_line in head.decode("latin-1").splitlines():
        if not raw_line.strip():
            continue
        name, colon, value = raw_line.partition(":")
        if not colon:
            raise ValueError(f"malformed CGI header line {raw_line!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            code, _, reason = value.partition(" ")
            if not (code.isdigit() and len(code) == 3):
                raise ValueError(f"malformed CGI Status header {value!r}")
            status = int(code)
        if name.lower() not in CGI_ONLY_HEADERS:
            headers.append((name, value))
    return status, reason, headers


# --- Pushes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def is_deletion(self) -> bool:
        return ZERO_SHA.fullmatch(self.new) is not None


def select_deploy_update(updates: Sequence[RefUpdate]) -> RefUpdate:
    """The one update of a push that is deployed; raises PushRejected for any other push."""
    if not updates:
        raise PushRejected("! Nothing was pushed.")
    for update in updates:
        if not update.ref.startswith("refs/heads/"):
            raise PushRejected(
                f"! Pushed {update.ref}, which is not a branch: push to main or master to deploy."
            )
        branch = update.ref.removeprefix("refs/heads/")
        if branch not in DEPLOY_BRANCHES:
            raise PushRejected(
                f"! Pushed to non-deploy branch {branch}: push to main or master to deploy "
                f"(git push waka {branch}:main)."
            )
        if update.is_deletion:
            raise PushRejected(f"! Deleting {branch} is not allowed: it is what the app runs.")
    if len(updates) > 1:
        raise PushRejected("! Pushed to both main and master: push one branch to deploy.")
    return updates[0]


@dataclass(frozen=True)
class Push:
    """An accepted ref update, available to `deploy` while git still holds the push open."""

    app: str
    user: str
    ref: str
    old_sha: str
    new_sha: str
    # Where the pushed objects are until the hook exits: the repository and its quarantine.
    repo_path: Path
    git_env: Mapping[str, str] = field(repr=False)

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/")

    async def export(self, dest: Path) -> None:
        """Writes the pushed tree to `dest` as a gzip'd tar (via `git archive`).

        Only possible while `deploy` runs: afterwards git either moves the objects into the
        repository or throws them away.
        """
        output = await trio.Path(dest).absolute()  # git runs in the repository, not our cwd
        argv = ["git", "archive", "--format=tar.gz", f"--output={output}"]
        await _run_git([*argv, self.new_sha], env=self.git_env, cwd=self.repo_path)


# --- The endpoint ------------------------------------------------------------------------


@dataclass
class _PushTicket:
    """Who is pushing to which app, for a hook to prove that it runs for an endpoint request."""

    app: str
    user: str
    # One receive-pack request runs its hook once: a ticket is good for one push.
    used: bool = False
    # Whether this push holds its app's deploy slot (until its request ends; see _handle_push).
    holding: bool = False


class GitEndpoint:
    def __init__(
        self,
        repos_dir: Path,
        run_dir: Path,
        *,
        authenticate: Authenticate,
        app_exists: AppExists,
        deploy: Deploy,
    ) -> None:
        self._repos_dir = Path(repos_dir).absolute()
        self._run_dir = Path(run_dir).absolute()
        self._authenticate = authenticate
        self._app_exists = app_exists
        self._deploy = deploy
        self._hook_socket = self._run_dir / HOOK_SOCKET_NAME
        # Tickets of the receive-pack requests in flight; a hook without one is not trusted.
        self._tickets: dict[str, _PushTicket] = {}
        # One deploying push per app; a second waits its turn (or, with `-o no-wait`, is refused).
        self._deploy_slots: dict[str, trio.Semaphore] = {}

    @property
    def hook_socket(self) -> Path:
        return self._hook_socket

    def repo_path(self, app: str) -> Path:
        _check_app_name(app)
        return self._repos_dir / f"{app}.git"

    def url_for(self, app: str, base_url: str) -> str:
        _check_app_name(app)
        return f"{base_url.rstrip('/')}/{app}.git"

    def ensure_repo(self, app: str) -> None:
        """Creates (or repairs) the app's bare repository and its hook. Blocking; idempotent."""
        path = self.repo_path(app)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path / "HEAD").exists():
            init = ["git", "init", "--quiet", "--bare", "--template=", "--initial-branch=main"]
            _run_git_blocking([*init, str(path)])
        for key, value in REPO_CONFIG:
            _run_git_blocking(["git", f"--git-dir={path}", "config", key, value])
        _install_hook(path / "hooks")

    def rename_repo(self, old: str, new: str) -> None:
        """Moves the app's repository to its new name (and rewrites its hook). Blocking."""
        source, target = self.repo_path(old), self.repo_path(new)
        if target.exists():
            shutil.rmtree(target)  # left by an app of that name destroyed before: not ours
        if source.exists():
            source.rename(target)
        self.ensure_repo(new)

    def delete_repo(self, app: str) -> None:
        """Removes the app's repository, if there is one. Blocking."""
        path = self.repo_path(app)
        if path.exists():
            shutil.rmtree(path)

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves git over HTTP on host:port (0 picks a free port) until cancelled.

        Reports the bound port through `task_status.started`.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound_port = int(listeners[0].socket.getsockname()[1])
        try:
            hook_listener = await self._open_hook_listener()
        except BaseException:
            for listener in listeners:
                await listener.aclose()
            raise
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve_hook, [hook_listener])
                await nursery.start(serve_http, self._handle_http, listeners)
                log.info("git endpoint listening on %s:%d", host, bound_port)
                task_status.started(bound_port)
        finally:
            self._hook_socket.unlink(missing_ok=True)

    # --- HTTP side ---

    async def _handle_http(self, request: Request, response: ResponseWriter) -> None:
        route = parse_git_route(request.method, request.target)
        if route is None:
            await send_text(response, 404, "Not found.\n")
            return
        user = await self._authenticated_user(request)
        if user is None:
            await send_text(
                response,
                401,
                "Authentication required: any user name, and a waka token as the password.\n",
                [("WWW-Authenticate", 'Basic realm="waka"')],
            )
            return
        if not await self._app_exists(route.app):
            await send_text(response, 404, f'App "{route.app}" not found.\n')
            return
        if not (self.repo_path(route.app) / "HEAD").exists():
            # The app exists but its repository does not (yet): make it rather than fail.
            await trio.to_thread.run_sync(self.ensure_repo, route.app)
        log.info("git %s %s for app %s by %s", request.method, route.service, route.app, user)
        await self._run_http_backend(request, response, route, user)

    async def _authenticated_user(self, request: Request) -> str | None:
        token = basic_auth_password(request.header("authorization"))
        if token is None:
            return None
        return await self._authenticate(token)

    async def _run_http_backend(
        self, request: Request, response: ResponseWriter, route: GitRoute, user: str
    ) -> None:
        ticket = secrets.token_urlsafe(24)
        env = self._cgi_environment(request, route, user, ticket)
        if route.service == "git-receive-pack" and request.method == "POST":
            self._tickets[ticket] = _PushTicket(app=route.app, user=user)
        try:
            async with trio.open_nursery() as nursery:
                process: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        ["git", "http-backend"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=env,
                        check=False,
                    )
                )
                assert process.stdin and process.stdout and process.stderr
                nursery.start_soon(_log_backend_stderr, process.stderr, route)
                try:
                    async with trio.open_nursery() as feeding:
                        feeding.start_soon(_feed_request_body, request, process.stdin)
                        await _relay_cgi_response(process.stdout, response)
                        # Anything the backend left unread stays unread: it has answered.
                        feeding.cancel_scope.cancel()
                finally:
                    await process.stdin.aclose()
                    await process.stdout.aclose()
                returncode = await process.wait()
        finally:
            pushed = self._tickets.pop(ticket, None)
            if pushed is not None and pushed.holding:
                self._deploy_slots[pushed.app].release()
        if returncode != 0:
            log.warning(
                "git http-backend for %s %s exited with status %d",
                route.app,
                route.service,
                returncode,
            )

    def _cgi_environment(
        self, request: Request, route: GitRoute, user: str, ticket: str
    ) -> dict[str, str]:
        # A fresh environment: the controller's own (tokens, GIT_* of a surrounding git) stays out.
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GIT_PROJECT_ROOT": str(self._repos_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": route.path_info,
            "QUERY_STRING": route.query,
            "CONTENT_TYPE": request.header("content-type") or "",
            "REMOTE_USER": user,
            "REMOTE_ADDR": request.client_address,
            githook.SOCKET_ENV: str(self._hook_socket),
            githook.TICKET_ENV: ticket,
            githook.APP_ENV: route.app,
            githook.USER_ENV: user,
        }
        content_length = request.header("content-length")
        if content_length is not None and request.header("transfer-encoding") is None:
            env["CONTENT_LENGTH"] = content_length
        # http-backend inflates gzip'd request bodies itself, and reads the protocol version
        # the client asks for (v2 for fetches) from Git-Protocol.
        for header in ("content-encoding", "git-protocol"):
            value = request.header(header)
            if value is not None:
                env["HTTP_" + header.upper().replace("-", "_")] = value
        return env

    # --- Hook side ---

    async def _open_hook_listener(self) -> trio.SocketListener:
        path = self._hook_socket
        if len(os.fsencode(path)) > UNIX_SOCKET_PATH_MAX:
            raise ValueError(
                f"the git hook socket path {path} is longer than the {UNIX_SOCKET_PATH_MAX} bytes "
                "a Unix socket address can hold; choose a shorter run directory"
            )
        self._run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # left over by a controller that did not stop cleanly
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(str(path))
            # Only the controller's user (which runs git http-backend and so the hook) connects.
            path.chmod(0o600)
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        return trio.SocketListener(sock)

    async def _serve_hook(self, stream: trio.SocketStream) -> None:
        async with stream:
            output = _HookOutput(stream)
            try:
                with trio.fail_after(HOOK_HEADER_TIMEOUT):
                    header = await _receive_json_line(stream, HOOK_HEADER_LIMIT)
            except (trio.TooSlowError, ValueError, trio.BrokenResourceError) as error:
                log.warning("git hook connection sent no usable request: %s", error)
                await output.finish(1)
                return
            try:
                status = await self._handle_push(header, output)
            except Exception:
                # A broken push must not take the hook server (and every later push) down.
                log.exception("handling a push from the git hook failed")
                await output.line("! waka: internal error; push rejected.")
                status = 1
            await output.finish(status)

    async def _handle_push(self, header: Mapping[str, object], output: _HookOutput) -> int:
        key = str(header.get("ticket", ""))
        ticket = self._tickets.get(key)
        if ticket is None or ticket.used:
            log.warning("git hook connection with an unknown ticket was refused")
            await output.line("! waka: this push did not come through the waka git endpoint.")
            return 1
        ticket.used = True
        try:
            update = select_deploy_update(_parse_updates(header.get("updates")))
        except PushRejected as rejection:
            await output.line(str(rejection))
            return 1
        options = header.get("options")
        no_wait = isinstance(options, list) and NO_WAIT_OPTION in options
        # The slot is held until the push's request ends, not just until this hook answers:
        # git moves the ref only after the hook exits, and the next push must see it moved.
        slot = self._deploy_slots.setdefault(ticket.app, trio.Semaphore(1))
        if slot.value == 0:
            if no_wait:
                await output.line(
                    f'! Another push to "{ticket.app}" is still deploying, and this one asked not'
                    " to wait (-o no-wait): push again once it has finished."
                )
                return 1
            await output.line(
                f"-----> Waiting for the push already deploying to {ticket.app} to finish"
            )
        await slot.acquire()
        if self._tickets.get(key) is not ticket:  # the pusher went away while it waited
            slot.release()
            return 1
        ticket.holding = True
        status = 1
        try:
            status = await self._deploy_update(ticket, header, update, output)
        finally:
            if status != 0:
                ticket.holding = False
                slot.release()
        return status

    async def _deploy_update(
        self,
        ticket: _PushTicket,
        header: Mapping[str, object],
        update: RefUpdate,
        output: _HookOutput,
    ) -> int:
        repo = self.repo_path(ticket.app)
        if update.old != (now := await _ref_value(repo, update.ref)):
            # git would refuse to move the ref anyway: it is no longer where this push began.
            await output.line(
                f"! {update.ref.removeprefix('refs/heads/')} moved to {now[:7]} while this push"
                " waited for the one before it: fetch, merge and push again."
            )
            return 1
        try:
            git_env = _quarantine_environment(header, repo)
        except ValueError as error:
            log.error("git hook for app %s sent a bad environment: %s", ticket.app, error)
            await output.line("! waka: the push hook sent an unusable request; push rejected.")
            return 1
        push = Push(
            app=ticket.app,
            user=ticket.user,
            ref=update.ref,
            old_sha=update.old,
            new_sha=update.new,
            repo_path=repo,
            git_env=git_env,
        )
        try:
            deployed = await self._deploy(push, output)
        except Exception:
            log.exception("deploying %s of app %s failed", push.new_sha, push.app)
            await output.line("! waka: the deploy failed with an internal error; push rejected.")
            return 1
        if not deployed:
            return 1
        try:
            await _point_head_at(repo, push.ref)
        except (GitCommandFailed, OSError) as error:
            # The deploy happened; a clone that checks out the wrong branch is a lesser evil
            # than rejecting a push whose release is already live.
            log.error("could not point HEAD of %s at %s: %s", push.app, push.ref, error)
        return 0


class _HookOutput:
    """The pusher's end of a deploy: lines go to the hook, which prints them for git."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._lock = trio.Lock()  # deploy may write from several tasks
        self._connected = True

    async def line(self, text: str) -> None:
        # The hook's framing is one message per line, so a text with newlines is several lines.
        lines = text.removesuffix("\n").split("\n")
        encoded = (line.encode("utf-8", "replace") for line in lines)
        await self._send(b"".join(githook.OUTPUT_LINE + line + b"\n" for line in encoded))

    async def finish(self, status: int) -> None:
        await self._send(githook.EXIT_STATUS + b"%d\n" % status)

    async def _send(self, data: bytes) -> None:
        if not self._connected:
            return
        async with self._lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The pusher went away (or git killed the hook). The deploy goes on without an
                # audience rather than fail half-way.
                self._connected = False
                log.info("the pusher is gone; further deploy output is not shown to it")


# --- Helpers -----------------------------------------------------------------------------


def _check_app_name(app: str) -> None:
    if not APP_NAME.fullmatch(app):
        raise InvalidAppName(app)


def _install_hook(hooks_dir: Path) -> None:
    # A shell trampoline rather than a python shebang: a shebang takes one argument, and
    # breaks on interpreter paths with spaces or longer than the kernel's limit.
    script = (
        "#!/bin/sh\n"
        "# Installed by waka: hands pushes to the controller (waka/controller/_githook.py).\n"
        f"exec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(HOOK_SCRIPT))}\n"
    )
    hooks_dir.mkdir(exist_ok=True)
    installed = hooks_dir / "pre-receive"
    if installed.exists() and installed.read_text() == script:
        return
    staging = hooks_dir / "pre-receive.waka-new"
    staging.write_text(script)
    staging.chmod(0o755)
    staging.replace(installed)  # atomic, so a push never runs a half-written hook


def _git_base_environment() -> dict[str, str]:
    # GIT_* variables of the controller's own environment must not redirect waka's git calls.
    return {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}


def _run_git_blocking(argv: list[str]) -> None:
    result = subprocess.run(argv, env=_git_base_environment(), capture_output=True, check=False)
    if result.returncode != 0:
        raise GitCommandFailed(argv, result.returncode, result.stderr)


async def _run_git(argv: list[str], *, env: Mapping[str, str], cwd: Path) -> None:
    result = await trio.run_process(
        argv,
        env={**_git_base_environment(), **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if result.returncode != 0:
        raise GitCommandFailed(argv, result.returncode, result.stderr)


async def _ref_value(repo: Path, ref: str) -> str:
    """Where `ref` points in the repository now; git's all-zero id when it does not exist."""
    result = await trio.run_process(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        env={**_git_base_environment(), "GIT_DIR": str(repo)},
        cwd=repo,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.stdout.decode().strip() if result.returncode == 0 else "0" * 40


async def _point_head_at(repo: Path, ref: str) -> None:
    """Makes the repository's HEAD name the deployed branch, so clones check it out."""
    if (repo / "HEAD").read_text().strip() == f"ref: {ref}":
        return
    await _run_git(["git", "symbolic-ref", "HEAD", ref], env={"GIT_DIR": str(repo)}, cwd=repo)


def _parse_updates(raw: object) -> list[RefUpdate]:
    if not isinstance(raw, list):
        raise PushRejected("! waka: the push hook sent no ref updates.")
    try:
        return [RefUpdate(old=str(u["old"]), new=str(u["new"]), ref=str(u["ref"])) for u in raw]
    except (TypeError, KeyError) as error:
        raise PushRejected("! waka: the push hook sent malformed ref updates.") from error


def _quarantine_environment(header: Mapping[str, object], repo: Path) -> dict[str, str]:
    """The hook's git variables, checked to point into `repo`, with GIT_DIR made absolute."""
    raw_env, raw_cwd = header.get("env"), header.get("cwd")
    if not isinstance(raw_env, dict) or not isinstance(raw_cwd, str):
        raise ValueError("the hook request lacks env or cwd")
    cwd = Path(raw_cwd)
    env = {name: str(raw_env[name]) for name in githook.QUARANTINE_ENV if name in raw_env}
    env["GIT_DIR"] = str((cwd / env.get("GIT_DIR", ".")).resolve())
    real_repo = repo.resolve()
    if Path(env["GIT_DIR"]) != real_repo:
        raise ValueError(f"GIT_DIR {env['GIT_DIR']} is not the app's repository {real_repo}")
    for name in ("GIT_OBJECT_DIRECTORY", "GIT_QUARANTINE_PATH"):
        if name in env and not (cwd / env[name]).resolve().is_relative_to(real_repo):
            raise ValueError(f"{name} {env[name]} is outside the app's repository {real_repo}")
    return env


async def _receive_json_line(stream: trio.SocketStream, limit: int) -> dict[str, object]:
    buffer = bytearray()
    while b"\n" not in buffer:
        chunk = await stream.receive_some(64 * 1024)
        if not chunk:
            raise ValueError("the connection closed before a complete request line")
        buffer += chunk
        if len(buffer) > limit:
            raise ValueError(f"the request line is longer than {limit} bytes")
    message = json.loads(buffer.partition(b"\n")[0])
    if not isinstance(message, dict):
        raise ValueError("the request is not a JSON object")
    return message


async def _feed_request_body(request: Request, stdin: trio.abc.SendStream) -> None:
    try:
        while chunk := await request.body.receive_some():
            await stdin.send_all(chunk)
    except trio.BrokenResourceError:
        log.debug("git http-backend stopped reading the request body early")
    finally:
        await stdin.aclose()


_CGI_HEAD_END = re.compile(rb"\r?\n\r?\n")


async def _relay_cgi_response(stdout: trio.abc.ReceiveStream, response: ResponseWriter) -> None:
    buffer = bytearray()
    while (head_end := _CGI_HEAD_END.search(buffer)) is None:
        chunk = await stdout.receive_some()
        if not chunk or len(buffer) > CGI_HEADER_LIMIT:
            log.error("git http-backend ended or overflowed before finishing its headers")
            await send_text(response, 502, "git http-backend failed; see the controller log.\n")
            return
        buffer += chunk
    try:
        status, reason, headers = parse_cgi_head(bytes(buffer[: head_end.start()]))
    except ValueError as error:
        log.error("git http-backend sent a malformed response: %s", error)
        await send_text(response, 502, "git http-backend failed; see the controller log.\n")
        return
    await response.start(status, headers, reason)
    await response.write(bytes(buffer[head_end.end() :]))
    while chunk := await stdout.receive_some():
        await response.write(chunk)


async def _log_backend_stderr(stderr: trio.abc.ReceiveStream, route: GitRoute) -> None:
    logged = 0
    pending = b""
    async with stderr:
        while chunk := await stderr.receive_some():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if logged < BACKEND_STDERR_LINES_LOGGED:
                    log.warning(
                        "git http-backend (%s %s): %s",
                        route.app,
                        route.service,
                        line.decode("utf-8", "replace").rstrip(),
                    )
                logged += 1
    if pending and logged < BACKEND_STDERR_LINES_LOGGED:
        log.warning("git http-backend (%s): %s", route.app, pending.decode("utf-8", "replace"))
