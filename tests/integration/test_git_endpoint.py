"""The git endpoint with real git: real pushes, clones and fetches over HTTP on 127.0.0.1, through
git http-backend and the pre-receive hook, against fake authenticate/app_exists/deploy callables.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from waka.controller import _githook
from waka.controller._git import (
    GitEndpoint,
    GitRoute,
    InvalidAppName,
    OutputSink,
    Push,
    PushRejected,
    RefUpdate,
    basic_auth_password,
    parse_cgi_head,
    parse_git_route,
    select_deploy_update,
)

APP = "myapp"
USER = "alice"
TOKEN = "t0ken-of-alice"
ZERO = "0" * 40
DEADLINE = 30.0

DeployFn = Callable[[Push, OutputSink], Awaitable[bool]]


# --- Harness -------------------------------------------------------------------------------


async def deploy_ok(push: Push, output: OutputSink) -> bool:
    await output.line(f"deploying {push.new_sha[:7]}")
    return True


@dataclass
class Platform:
    """The fake rest of the controller: one user, a set of apps, a swappable deploy."""

    deploy_fn: DeployFn
    apps: set[str] = field(default_factory=lambda: {APP})
    pushes: list[Push] = field(default_factory=list)

    async def authenticate(self, token: str) -> str | None:
        return USER if token == TOKEN else None

    async def app_exists(self, name: str) -> bool:
        return name in self.apps

    async def deploy(self, push: Push, output: OutputSink) -> bool:
        self.pushes.append(push)
        return await self.deploy_fn(push, output)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Result:
        assert self.returncode == 0, f"git failed ({self.returncode}):\n{self.stderr}"
        return self


class GitUser:
    """Someone with git: their own HOME and config, a stored credential for the endpoint."""

    def __init__(self, home: Path, port: int, token: str | None = TOKEN) -> None:
        self.home = home
        self.port = port
        home.mkdir(parents=True)
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Alice\n\temail = alice@example.test\n"
            "[init]\n\tdefaultBranch = main\n"
            "[credential]\n\thelper = store\n"
        )
        if token is not None:
            (home / ".git-credentials").write_text(f"http://{USER}:{token}@127.0.0.1:{port}\n")

    def url(self, app: str = APP) -> str:
        return f"http://127.0.0.1:{self.port}/{app}.git"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",  # a missing credential fails instead of prompting
            "LANG": "C",
        }

    async def git(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
        done = await trio.run_process(
            ["git", *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    async def new_source(self, name: str, files: dict[str, str | bytes] | None = None) -> Path:
        source = self.home / name
        source.mkdir()
        await self.git("init", "--quiet", cwd=source)
        await self.commit(
            source, files or {"Procfile": "web: python app.py\n", "app.py": "print(1)\n"}
        )
        return source

    async def commit(self, source: Path, files: dict[str, str | bytes]) -> str:
        for name, content in files.items():
            path = source / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        await self.git("add", "--all", cwd=source)
        (await self.git("commit", "--quiet", "-m", "change", cwd=source)).check()
        return (await self.git("rev-parse", "HEAD", cwd=source)).check().stdout.strip()


@dataclass
class Scene:
    endpoint: GitEndpoint
    platform: Platform
    port: int
    root: Path
    alice: GitUser

    def person(self, name: str, token: str | None = TOKEN) -> GitUser:
        return GitUser(self.root / name, self.port, token)

    async def remote_sha(self, ref: str, app: str = APP) -> str | None:
        done = await trio.run_process(
            [
                "git",
                f"--git-dir={self.endpoint.repo_path(app)}",
                "rev-parse",
                "--verify",
                "-q",
                ref,
            ],
            capture_stdout=True,
            check=False,
        )
        return done.stdout.decode().strip() if done.returncode == 0 else None


def run_scene(
    tmp_path: Path,
    scenario: Callable[[Scene], Awaitable[None]],
    deploy: DeployFn = deploy_ok,
) -> Platform:
    """Runs `scenario` against a live endpoint on a free port; stops everything afterwards."""
    platform = Platform(deploy_fn=deploy)

    async def main() -> None:
        endpoint = GitEndpoint(
            tmp_path / "repos",
            tmp_path / "run",
            authenticate=platform.authenticate,
            app_exists=platform.app_exists,
            deploy=platform.deploy,
        )
        for app in platform.apps:
            endpoint.ensure_repo(app)
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(endpoint.serve, "127.0.0.1", 0)
                scene = Scene(endpoint, platform, port, tmp_path, GitUser(tmp_path / "alice", port))
                await scenario(scene)
                nursery.cancel_scope.cancel()
        assert not endpoint.hook_socket.exists(), "the hook socket outlived the endpoint"

    trio.run(main)
    return platform


async def raw_get(port: int, target: str, headers: str = "") -> tuple[str, str]:
    """An HTTP/1.1 request without credentials: the status line with headers, and the body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        received = b""
        while chunk := await stream.receive_some(65536):
            received += chunk
    head, _, body = received.decode().partition("\r\n\r\n")
    return head, body


class LineReader:
    """Lines of a process's output as they arrive (git ends progress lines with \\r)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.pending = b""
        self.lines: list[str] = []

    async def next_line(self) -> str | None:
        while True:
            for separator in (b"\n", b"\r"):
                line, found, rest = self.pending.partition(separator)
                if found and b"\n" not in line and b"\r" not in line:
                    self.pending = rest
                    self.lines.append(line.decode())
                    return self.lines[-1]
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                if self.pending:
                    self.lines.append(self.pending.decode())
                    self.pending = b""
                    return self.lines[-1]
                return None
            self.pending += chunk


# --- Pushing -------------------------------------------------------------------------------


def test_push_to_main_deploys_the_pushed_tree_and_updates_main(tmp_path: Path) -> None:
    tarball = tmp_path / "exported.tar.gz"

    async def deploy(push: Push, output: OutputSink) -> bool:
        await push.export(tarball)
        await output.line(f"exported {push.new_sha}")
        await output.line("several\nlines\n")
        return True

    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source(
            "src", {"Procfile": "web: python app.py\n", "app.py": "print(1)\n", "lib/x.txt": "x"}
        )
        head = (await scene.alice.git("rev-parse", "HEAD", cwd=source)).stdout.strip()
        pushed = (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()
        remote_lines = [line.rstrip() for line in pushed.stderr.splitlines() if "remote:" in line]
        assert remote_lines == [f"remote: exported {head}", "remote: several", "remote: lines"]
        assert await scene.remote_sha("refs/heads/main") == head

        [push] = scene.platform.pushes
        assert (push.app, push.user, push.ref, push.branch) == (
            APP,
            USER,
            "refs/heads/main",
            "main",
        )
        assert (push.old_sha, push.new_sha) == (ZERO, head)

    run_scene(tmp_path, scenario, deploy)
    with tarfile.open(tarball, "r:gz") as tar:
        files = {member.name: member for member in tar.getmembers() if member.isfile()}
        assert set(files) == {"Procfile", "app.py", "lib/x.txt"}
        procfile = tar.extractfile(files["Procfile"])
        assert procfile is not None and procfile.read() == b"web: python app.py\n"


def test_deploy_output_reaches_the_pusher_live_before_the_deploy_finishes(tmp_path: Path) -> None:
    pusher_saw_first_line = trio.Event()
    deploy_finished = trio.Event()

    async def deploy(push: Push, output: OutputSink) -> bool:
        await output.line("-----> step one")
        # Only returns once the git client has printed the line above: if anything on the way
        # (http-backend, the HTTP server, the hook) held output back, the deadline fails this.
        await pusher_saw_first_line.wait()
        await output.line("-----> step two")
        deploy_finished.set()
        return True

    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        async with trio.open_nursery() as nursery:
            push = partial(
                trio.run_process,
                ["git", "push", "--progress", scene.alice.url(), "main"],
                cwd=source,
                env=scene.alice.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
            )
            process: trio.Process = await nursery.start(push)
            assert process.stderr is not None
            stderr = LineReader(process.stderr)
            while (line := await stderr.next_line()) is not None:
                if line.startswith("remote: -----> step one"):
                    assert not deploy_finished.is_set()
                    pusher_saw_first_line.set()
            assert await process.wait() == 0, "\n".join(stderr.lines)
        remote_lines = [line.rstrip() for line in stderr.lines if line.startswith("remote:")]
        assert remote_lines == ["remote: -----> step one", "remote: -----> step two"]

    run_scene(tmp_path, scenario, deploy)


def test_failed_deploy_rejects_the_push_and_leaves_the_ref_unchanged(tmp_path: Path) -> None:
    outcomes = [True, False]

    async def deploy(push: Push, output: OutputSink) -> bool:
        succeeded = outcomes.pop(0)
        if not succeeded:
            await output.line("! Build failed: no buildpack detected")
        return succeeded

    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()
        deployed = await scene.remote_sha("refs/heads/main")

        await scene.alice.commit(source, {"broken.txt": "x"})
        rejected = await scene.alice.git("push", scene.alice.url(), "main", cwd=source)
        assert rejected.returncode != 0
        assert "remote: ! Build failed: no buildpack detected" in rejected.stderr
        assert "[remote rejected] main -> main (pre-receive hook declined)" in rejected.stderr
        assert await scene.remote_sha("refs/heads/main") == deployed

    run_scene(tmp_path, scenario, deploy)


def test_deploy_that_raises_rejects_the_push_with_an_internal_error(tmp_path: Path) -> None:
    async def deploy(push: Push, output: OutputSink) -> bool:
        raise RuntimeError("the scheduler is on fire")

    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        rejected = await scene.alice.git("push", scene.alice.url(), "main", cwd=source)
        assert rejected.returncode != 0
        assert "remote: ! waka: the deploy failed with an internal error" in rejected.stderr
        assert "on fire" not in rejected.stderr  # internals stay in the controller's log
        assert await scene.remote_sha("refs/heads/main") is None

    run_scene(tmp_path, scenario, deploy)


def test_push_of_head_to_main_deploys(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        await scene.alice.git("checkout", "--quiet", "-b", "feature", cwd=source)
        head = await scene.alice.commit(source, {"feature.txt": "new"})
        (await scene.alice.git("push", scene.alice.url(), "HEAD:main", cwd=source)).check()
        assert await scene.remote_sha("refs/heads/main") == head
        assert [push.ref for push in scene.platform.pushes] == ["refs/heads/main"]

    run_scene(tmp_path, scenario)


def test_push_to_master_deploys_and_clones_check_master_out(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        await scene.alice.git("branch", "--move", "master", cwd=source)
        (await scene.alice.git("push", scene.alice.url(), "master", cwd=source)).check()
        assert [push.ref for push in scene.platform.pushes] == ["refs/heads/master"]

        bob = scene.person("bob")
        cloned = await bob.git("clone", bob.url(), "copy", cwd=bob.home)
        assert "warning" not in cloned.check().stderr
        assert (bob.home / "copy" / "Procfile").read_text() == "web: python app.py\n"

    run_scene(tmp_path, scenario)


def test_push_to_a_non_deploy_branch_is_rejected(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        rejected = await scene.alice.git("push", scene.alice.url(), "main:feature", cwd=source)
        assert rejected.returncode != 0
        assert "remote: ! Pushed to non-deploy branch feature" in rejected.stderr
        assert "push to main or master" in rejected.stderr
        assert await scene.remote_sha("refs/heads/feature") is None
        assert scene.platform.pushes == []

    run_scene(tmp_path, scenario)


def test_deleting_main_is_rejected(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()
        deployed = await scene.remote_sha("refs/heads/main")
        rejected = await scene.alice.git("push", scene.alice.url(), ":main", cwd=source)
        assert rejected.returncode != 0
        assert "remote: ! Deleting main is not allowed" in rejected.stderr
        assert await scene.remote_sha("refs/heads/main") == deployed
        assert len(scene.platform.pushes) == 1

    run_scene(tmp_path, scenario)


def test_large_push_sent_in_chunks_deploys_every_byte(tmp_path: Path) -> None:
    # Beyond git's 1 MiB http.postBuffer the client sends the pack with chunked encoding and
    # no Content-Length, which http-backend must read to the end of its input.
    payload = os.urandom(3 * 1024 * 1024)
    tarball = tmp_path / "exported.tar.gz"

    async def deploy(push: Push, output: OutputSink) -> bool:
        await push.export(tarball)
        return True

    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src", {"blob.bin": payload})
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()

    run_scene(tmp_path, scenario, deploy)
    with tarfile.open(tarball, "r:gz") as tar:
        blob = tar.extractfile("blob.bin")
        assert blob is not None and blob.read() == payload


async def push_watching(
    person: GitUser, source: Path, marker: str, seen: trio.Event, *options: str
) -> tuple[int, str]:
    """`git push` to main, setting `seen` as soon as a line containing `marker` is printed."""
    async with trio.open_nursery() as nursery:
        push = partial(
            trio.run_process,
            ["git", "push", "--progress", *options, person.url(), "main"],
            cwd=source,
            env=person.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        process: trio.Process = await nursery.start(push)
        assert process.stderr is not None
        stderr = LineReader(process.stderr)
        while (line := await stderr.next_line()) is not None:
            if marker in line:
                seen.set()
        code = await process.wait()
    return code, "\n".join(stderr.lines)


WAITING = "Waiting for the push already deploying"
T = TypeVar("T")


async def while_alice_deploys(
    scene: Scene,
    deploying: trio.Event,
    second_push: Callable[[GitUser, Path], Awaitable[T]],
) -> tuple[Result, T]:
    """Alice pushes; once her deploy has started (`deploying`), Bob pushes other work with
    `second_push(bob, source)`. Returns both results once both pushes have ended."""
    first = await scene.alice.new_source("first")
    bob = scene.person("bob")
    second = await bob.new_source("second", {"other.txt": "other"})
    results: list[Result] = []
    async with trio.open_nursery() as nursery:

        async def push_first() -> None:
            results.append(await scene.alice.git("push", scene.alice.url(), "main", cwd=first))

        nursery.start_soon(push_first)
        await deploying.wait()
        outcome = await second_push(bob, second)
    return results[0], outcome


def test_second_push_with_no_wait_is_refused_while_the_first_deploys(tmp_path: Path) -> None:
    first_deploy_started = trio.Event()
    second_push_done = trio.Event()

    async def deploy(push: Push, output: OutputSink) -> bool:
        first_deploy_started.set()
        await second_push_done.wait()
        return True

    async def scenario(scene: Scene) -> None:
        async def push_no_wait(bob: GitUser, source: Path) -> Result:
            rejected = await bob.git("push", "-o", "no-wait", bob.url(), "main", cwd=source)
            second_push_done.set()
            return rejected

        first, rejected = await while_alice_deploys(scene, first_deploy_started, push_no_wait)
        assert rejected.returncode != 0
        assert f'remote: ! Another push to "{APP}" is still deploying' in rejected.stderr
        assert "-o no-wait" in rejected.stderr
        first.check()
        assert len(scene.platform.pushes) == 1

    run_scene(tmp_path, scenario, deploy)


def test_second_push_waits_and_is_refused_when_the_first_moved_main(tmp_path: Path) -> None:
    first_deploy_started = trio.Event()
    second_waits = trio.Event()

    async def deploy(push: Push, output: OutputSink) -> bool:
        first_deploy_started.set()
        await second_waits.wait()
        return True

    async def scenario(scene: Scene) -> None:
        first, (code, output) = await while_alice_deploys(
            scene, first_deploy_started, partial(push_watching, marker=WAITING, seen=second_waits)
        )
        first.check()
        assert code != 0
        assert f"remote: -----> {WAITING} to {APP} to finish" in output
        first_sha = await scene.remote_sha("refs/heads/main")
        assert first_sha is not None
        assert f"remote: ! main moved to {first_sha[:7]} while this push waited" in output
        assert len(scene.platform.pushes) == 1

    run_scene(tmp_path, scenario, deploy)


def test_second_push_waits_and_deploys_when_the_first_failed(tmp_path: Path) -> None:
    first_deploy_started = trio.Event()
    second_waits = trio.Event()
    outcomes = [False, True]

    async def deploy(push: Push, output: OutputSink) -> bool:
        if outcomes[0] is False:
            first_deploy_started.set()
            await second_waits.wait()
        return outcomes.pop(0)

    async def scenario(scene: Scene) -> None:
        first, (code, output) = await while_alice_deploys(
            scene, first_deploy_started, partial(push_watching, marker=WAITING, seen=second_waits)
        )
        assert first.returncode != 0
        assert code == 0, output
        assert WAITING in output
        assert len(scene.platform.pushes) == 2
        assert await scene.remote_sha("refs/heads/main") == scene.platform.pushes[1].new_sha

    run_scene(tmp_path, scenario, deploy)


# --- Authentication and routing ------------------------------------------------------------


def test_wrong_token_fails_with_an_authentication_error(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        mallory = scene.person("mallory", token="not-a-token")
        source = await mallory.new_source("src")
        failed = await mallory.git("push", mallory.url(), "main", cwd=source)
        assert failed.returncode != 0
        assert "Authentication failed" in failed.stderr
        # git erased the rejected credential from the store; clone as someone with a fresh one.
        eve = scene.person("eve", token="also-not-a-token")
        cloned = await eve.git("clone", eve.url(), "copy", cwd=eve.home)
        assert cloned.returncode != 0
        assert "Authentication failed" in cloned.stderr
        assert scene.platform.pushes == []

    run_scene(tmp_path, scenario)


def test_request_without_credentials_is_challenged_for_basic_auth(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        head, _ = await raw_get(scene.port, f"/{APP}.git/info/refs?service=git-receive-pack")
        assert head.startswith("HTTP/1.1 401 ")
        assert 'www-authenticate: basic realm="waka"' in head.lower()

        nobody = scene.person("nobody", token=None)
        source = await nobody.new_source("src")
        failed = await nobody.git("push", nobody.url(), "main", cwd=source)
        assert failed.returncode != 0
        assert "could not read Username" in failed.stderr  # git asked for credentials

    run_scene(tmp_path, scenario)


def test_unknown_app_is_not_found(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        failed = await scene.alice.git("push", scene.alice.url("nope"), "main", cwd=source)
        assert failed.returncode != 0
        assert "not found" in failed.stderr

        basic = "Authorization: Basic " + _basic(USER, TOKEN) + "\r\n"
        head, body = await raw_get(scene.port, "/nope.git/info/refs?service=git-upload-pack", basic)
        assert head.startswith("HTTP/1.1 404 ")
        assert body == 'App "nope" not found.\n'
        assert not scene.endpoint.repo_path("nope").exists()

    run_scene(tmp_path, scenario)


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/myapp.git/HEAD",
        "/myapp.git/objects/info/packs",
        "/myapp.git/info/refs",  # the dumb protocol: not served
        "/myapp.git/info/refs?service=git-upload-archive",
        "/myapp.git/git-receive-pack",  # GET of a POST-only endpoint
        "/../myapp.git/info/refs?service=git-upload-pack",
        "/My_App.git/info/refs?service=git-upload-pack",
    ],
)
def test_malformed_path_is_not_found(tmp_path: Path, target: str) -> None:
    async def scenario(scene: Scene) -> None:
        basic = "Authorization: Basic " + _basic(USER, TOKEN) + "\r\n"
        head, _ = await raw_get(scene.port, target, basic)
        assert head.startswith("HTTP/1.1 404 "), head

    run_scene(tmp_path, scenario)


def test_clone_and_fetch_work_for_an_authorised_user(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()

        bob = scene.person("bob")
        (await bob.git("clone", "--quiet", bob.url(), "copy", cwd=bob.home)).check()
        copy = bob.home / "copy"
        assert (copy / "app.py").read_text() == "print(1)\n"

        newer = await scene.alice.commit(source, {"app.py": "print(2)\n"})
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()
        (await bob.git("fetch", "--quiet", "origin", cwd=copy)).check()
        fetched = await bob.git("rev-parse", "origin/main", cwd=copy)
        assert fetched.stdout.strip() == newer

    run_scene(tmp_path, scenario)


def test_fetch_with_a_gzipped_negotiation_works(tmp_path: Path) -> None:
    # git gzips upload-pack requests past about 1 KiB of "have" lines; http-backend inflates
    # them when told the Content-Encoding.
    async def scenario(scene: Scene) -> None:
        source = await scene.alice.new_source("src")
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()
        bob = scene.person("bob")
        (await bob.git("clone", "--quiet", bob.url(), "copy", cwd=bob.home)).check()
        copy = bob.home / "copy"
        # Newer than anything pushed, so they are all sent as "have"s before the common commit
        # and the negotiation outgrows what git sends uncompressed.
        for index in range(40):
            later = {"GIT_COMMITTER_DATE": f"{2_000_000_000 + index} +0000"}
            await bob.git("commit", "-q", "--allow-empty", "-m", f"{index}", cwd=copy, env=later)
        newer = await scene.alice.commit(source, {"app.py": "print(2)\n"})
        (await scene.alice.git("push", scene.alice.url(), "main", cwd=source)).check()

        fetched = await trio.run_process(
            ["git", "fetch", "origin"],
            cwd=copy,
            env={**bob.env, "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
            capture_stderr=True,
            check=False,
        )
        trace = fetched.stderr.decode()
        assert fetched.returncode == 0, trace
        sent = [
            line.split("Send header: ")[1]
            for line in trace.splitlines()
            if "Send header: Content-" in line
        ]
        assert "Content-Encoding: gzip" in sent, sent  # or this test proves nothing
        assert (await bob.git("rev-parse", "origin/main", cwd=copy)).stdout.strip() == newer

    run_scene(tmp_path, scenario)


def test_app_whose_repository_is_missing_gets_one_on_first_push(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        scene.platform.apps.add("fresh")
        assert not scene.endpoint.repo_path("fresh").exists()
        source = await scene.alice.new_source("src")
        (await scene.alice.git("push", scene.alice.url("fresh"), "main", cwd=source)).check()
        assert [push.app for push in scene.platform.pushes] == ["fresh"]

    run_scene(tmp_path, scenario)


# --- The hook --------------------------------------------------------------------------------


def hook_env(socket_path: Path | str, ticket: str = "") -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "WAKA_HOOK_SOCKET": str(socket_path),
        "WAKA_HOOK_TICKET": ticket,
        "WAKA_APP": APP,
        "WAKA_USER": USER,
        "GIT_DIR": ".",
    }


def test_hook_that_cannot_reach_the_controller_rejects_the_push_clearly(tmp_path: Path) -> None:
    endpoint = GitEndpoint(
        tmp_path / "repos", tmp_path / "run", authenticate=_never, app_exists=_never, deploy=_never
    )
    endpoint.ensure_repo(APP)
    done = subprocess.run(
        [endpoint.repo_path(APP) / "hooks" / "pre-receive"],
        input=f"{ZERO} {'1' * 40} refs/heads/main\n".encode(),
        capture_output=True,
        env=hook_env(tmp_path / "run" / "absent.sock"),
        cwd=endpoint.repo_path(APP),
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 1
    assert b"! waka: cannot reach the controller at " in done.stdout
    assert b"No such file or directory" in done.stdout


def test_hook_with_a_forged_ticket_is_refused(tmp_path: Path) -> None:
    async def scenario(scene: Scene) -> None:
        done = await trio.run_process(
            [scene.endpoint.repo_path(APP) / "hooks" / "pre-receive"],
            stdin=f"{ZERO} {'1' * 40} refs/heads/main\n".encode(),
            capture_stdout=True,
            env=hook_env(scene.endpoint.hook_socket, ticket="forged"),
            cwd=scene.endpoint.repo_path(APP),
            check=False,
        )
        assert done.returncode == 1
        assert b"did not come through the waka git endpoint" in done.stdout
        assert scene.platform.pushes == []

    run_scene(tmp_path, scenario)


def test_hook_reaches_the_controller_socket_quickly(tmp_path: Path) -> None:
    """Measures hook start to first byte on the socket (the push latency the hook adds)."""
    endpoint = GitEndpoint(
        tmp_path / "repos", tmp_path / "run", authenticate=_never, app_exists=_never, deploy=_never
    )
    endpoint.ensure_repo(APP)
    hook = endpoint.repo_path(APP) / "hooks" / "pre-receive"
    socket_path = tmp_path / "h.sock"

    async def main() -> list[float]:
        listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listener.bind(str(socket_path))
        listener.listen(8)
        latencies = []
        with listener, trio.fail_after(DEADLINE):
            for _ in range(5):
                async with trio.open_nursery() as nursery:
                    started = time.perf_counter()
                    nursery.start_soon(
                        partial(
                            trio.run_process,
                            [hook],
                            stdin=f"{ZERO} {'1' * 40} refs/heads/main\n".encode(),
                            capture_stdout=True,
                            env=hook_env(socket_path),
                            cwd=endpoint.repo_path(APP),
                        )
                    )
                    connection, _ = await listener.accept()
                    with connection:
                        assert await connection.recv(1) == b"{"
                        latencies.append(time.perf_counter() - started)
                        await connection.send(b"=0\n")
        return latencies

    latencies = trio.run(main)
    median = statistics.median(latencies)
    print(f"hook start to first socket byte: median {median * 1000:.1f} ms of {len(latencies)}")
    assert median < 1.0  # measured about 20 ms (a bare `python -I -S` starts in about 15)


# --- Repositories ----------------------------------------------------------------------------


def test_ensure_repo_is_idempotent_and_configures_push_handling(tmp_path: Path) -> None:
    endpoint = GitEndpoint(
        tmp_path / "repos", tmp_path / "run", authenticate=_never, app_exists=_never, deploy=_never
    )
    endpoint.ensure_repo(APP)
    endpoint.ensure_repo(APP)
    repo = endpoint.repo_path(APP)
    assert repo == tmp_path / "repos" / "myapp.git"

    def config(key: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={repo}", "config", key], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert config("core.bare") == "true"
    assert config("receive.denyDeletes") == "true"
    assert config("http.receivepack") == "true"
    assert (repo / "HEAD").read_text() == "ref: refs/heads/main\n"
    hook = repo / "hooks" / "pre-receive"
    assert hook.stat().st_mode & stat.S_IXUSR
    assert sys.executable in hook.read_text()
    assert sorted(path.name for path in (repo / "hooks").iterdir()) == ["pre-receive"]

    endpoint.delete_repo(APP)
    assert not repo.exists()
    endpoint.delete_repo(APP)  # already gone: nothing to do


def test_repository_operations_refuse_invalid_app_names(tmp_path: Path) -> None:
    endpoint = GitEndpoint(
        tmp_path / "repos", tmp_path / "run", authenticate=_never, app_exists=_never, deploy=_never
    )
    for name in ("../etc", "A", "x", "My-App", "a/b", "1app", "a" * 31):
        with pytest.raises(InvalidAppName, match="invalid app name"):
            endpoint.ensure_repo(name)
        with pytest.raises(InvalidAppName):
            endpoint.delete_repo(name)
    assert not (tmp_path / "repos").exists()


def test_url_for_names_the_app_repository() -> None:
    endpoint = GitEndpoint(
        Path("/r"), Path("/run"), authenticate=_never, app_exists=_never, deploy=_never
    )
    assert endpoint.url_for(APP, "http://git.example:8080/") == "http://git.example:8080/myapp.git"
    assert endpoint.url_for(APP, "http://h:1") == "http://h:1/myapp.git"


def test_too_long_run_dir_fails_with_a_clear_message(tmp_path: Path) -> None:
    endpoint = GitEndpoint(
        tmp_path / "repos",
        tmp_path / ("r" * 120),
        authenticate=_never,
        app_exists=_never,
        deploy=_never,
    )

    async def main() -> None:
        await endpoint.serve("127.0.0.1", 0)

    with pytest.raises(ValueError, match="choose a shorter run directory"):
        trio.run(main)


# --- Pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        (
            "GET",
            "/myapp.git/info/refs?service=git-receive-pack",
            GitRoute(
                "myapp", "git-receive-pack", "/myapp.git/info/refs", "service=git-receive-pack"
            ),
        ),
        (
            "GET",
            "/myapp/info/refs?service=git-upload-pack",
            GitRoute("myapp", "git-upload-pack", "/myapp.git/info/refs", "service=git-upload-pack"),
        ),
        (
            "POST",
            "/my-app2.git/git-receive-pack",
            GitRoute("my-app2", "git-receive-pack", "/my-app2.git/git-receive-pack", ""),
        ),
        (
            "POST",
            "/myapp.git/git-upload-pack",
            GitRoute("myapp", "git-upload-pack", "/myapp.git/git-upload-pack", ""),
        ),
        ("GET", "/myapp.git/info/refs", None),
        ("GET", "/myapp.git/info/refs?service=git-receive-pack&service=git-upload-pack", None),
        ("POST", "/myapp.git/info/refs?service=git-receive-pack", None),
        ("GET", "/myapp.git/git-upload-pack", None),
        ("POST", "/myapp.git/git-upload-pack/extra", None),
        ("POST", "/a.git/git-upload-pack", None),
        ("POST", "/x/myapp.git/git-upload-pack", None),
        ("POST", "/%6dyapp.git/git-upload-pack", None),
    ],
)
def test_parse_git_route_accepts_only_smart_http_for_valid_app_names(
    method: str, target: str, expected: GitRoute | None
) -> None:
    assert parse_git_route(method, target) == expected


@pytest.mark.parametrize(
    ("header", "password"),
    [
        (None, None),
        ("Basic ", None),
        ("Basic dXNlcjp0b2tlbg==", "token"),  # user:token
        ("basic   dXNlcjp0b2tlbg==", "token"),
        ("Basic OnRva2Vu", "token"),  # :token (no user name)
        ("Basic dXNlcjphOmI=", "a:b"),  # user:a:b (colons in the password)
        ("Basic dXNlcjo=", None),  # user: (empty password)
        ("Basic dXNlcg==", None),  # user (no colon)
        ("Basic not base64!", None),
        ("Bearer dXNlcjp0b2tlbg==", None),
        ("Basic //79", None),  # not UTF-8
    ],
)
def test_basic_auth_password_reads_only_well_formed_basic_credentials(
    header: str | None, password: str | None
) -> None:
    assert basic_auth_password(header) == password


SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.mark.parametrize(
    ("updates", "accepted", "rejection"),
    [
        ([RefUpdate(ZERO, SHA_A, "refs/heads/main")], 0, None),
        ([RefUpdate(SHA_A, SHA_B, "refs/heads/master")], 0, None),
        ([RefUpdate(SHA_A, SHA_B, "refs/heads/feature")], None, "non-deploy branch feature"),
        ([RefUpdate(ZERO, SHA_A, "refs/tags/v1")], None, "refs/tags/v1, which is not a branch"),
        ([RefUpdate(SHA_A, ZERO, "refs/heads/main")], None, "Deleting main is not allowed"),
        (
            [RefUpdate(ZERO, SHA_A, "refs/heads/main"), RefUpdate(ZERO, SHA_A, "refs/heads/x")],
            None,
            "non-deploy branch x",
        ),
        (
            [
                RefUpdate(ZERO, SHA_A, "refs/heads/main"),
                RefUpdate(ZERO, SHA_A, "refs/heads/master"),
            ],
            None,
            "both main and master",
        ),
        ([], None, "Nothing was pushed"),
    ],
)
def test_select_deploy_update_takes_one_main_or_master_update(
    updates: list[RefUpdate], accepted: int | None, rejection: str | None
) -> None:
    if rejection is None:
        assert accepted is not None
        assert select_deploy_update(updates) == updates[accepted]
    else:
        with pytest.raises(PushRejected, match=rejection):
            select_deploy_update(updates)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            b"Content-Type: application/x-git-receive-pack-result\r\nCache-Control: no-cache",
            (
                200,
                "OK",
                [
                    ("Content-Type", "application/x-git-receive-pack-result"),
                    ("Cache-Control", "no-cache"),
                ],
            ),
        ),
        (b"Status: 404 Not Found\r\nExpires: 0", (404, "Not Found", [("Expires", "0")])),
        (b"Status: 403\nConnection: close", (403, "", [])),
    ],
)
def test_parse_cgi_head_reads_status_and_keeps_http_headers(
    head: bytes, expected: tuple[int, str, list[tuple[str, str]]]
) -> None:
    assert parse_cgi_head(head) == expected


@pytest.mark.parametrize("head", [b"Status: teapot", b"no colon here"])
def test_parse_cgi_head_rejects_malformed_heads(head: bytes) -> None:
    with pytest.raises(ValueError, match="malformed CGI"):
        parse_cgi_head(head)


def test_hook_request_encoding_is_json_even_for_odd_paths() -> None:
    odd = 'quote" back\\slash \t tab \x01 ünï \udcff'
    request = _githook.build_request(
        {"WAKA_HOOK_TICKET": "t", "WAKA_APP": APP, "GIT_DIR": odd, "UNRELATED": "x"},
        odd,
        _githook.read_updates([f"{ZERO} {SHA_A} refs/heads/main", "", "garbage"]),
    )
    decoded = json.loads(_githook.encode_request(request))
    assert decoded == {
        "ticket": "t",
        "app": APP,
        "user": "",
        "cwd": odd,
        "updates": [{"old": ZERO, "new": SHA_A, "ref": "refs/heads/main"}],
        "env": {"GIT_DIR": odd},
        "options": [],
    }


@pytest.mark.parametrize(
    ("answer", "status", "printed"),
    [
        (b"|-----> one\n|two \xc3\xbc\n=0\n", 0, b"-----> one\ntwo \xc3\xbc\n"),
        (b"|failing\n=1\n", 1, b"failing\n"),
        (b"|cut short\n", 1, b"cut short\n! waka: the controller ended the connection"),
    ],
)
def test_hook_prints_the_controllers_lines_and_exits_with_its_status(
    answer: bytes, status: int, printed: bytes
) -> None:
    out = io.BytesIO()
    assert _githook.relay(io.BytesIO(answer), out) == status
    assert out.getvalue().startswith(printed)


def test_hook_refuses_a_malformed_answer() -> None:
    with pytest.raises(ValueError, match="unexpected message"):
        _githook.relay(io.BytesIO(b"?what\n"), io.BytesIO())


# --- Helpers -------------------------------------------------------------------------------


async def _never(*args: object) -> Any:
    raise AssertionError("not expected to be called")


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("environ", "options"),
    [
        ({}, []),
        ({"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "no-wait", "GIT_PUSH_OPTION_1": "x"},
         ["no-wait", "x"]),
        ({"GIT_PUSH_OPTION_COUNT": "junk"}, []),
    ],
)  # fmt: skip
def test_hook_forwards_push_options(environ: dict[str, str], options: list[str]) -> None:
    assert _githook.push_options(environ) == options
