"""Shared fixtures: a real `waka up` (or `waka server` / `waka agent`) in a temporary data dir.

Daemons run as subprocesses on free loopback ports, exactly as a user starts them. Teardown stops
them with SIGTERM (the graceful path users take), and then checks that nothing they started is left:
no process, no mount.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
WAKA = str(Path(sys.executable).parent / "waka")
EXAMPLES = REPO / "examples"


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Polls predicate until it returns something truthy; fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except AssertionError:
            raise  # a definite failure, not "not ready yet"
        except Exception as error:  # the thing is not ready yet; keep the reason for the report
            last_error = error
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    api: str = ""
    http: str = ""
    router: str = ""
    agent_api: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"WAKA_DATA_DIR": str(self.data_dir), "NO_COLOR": "1"})
        env.pop("WAKA_API", None)
        env.pop("WAKA_API_KEY", None)
        env.update(self.extra_env)
        return env

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def waka(
        self, *args: str, check: bool = True, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [WAKA, *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"waka {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> object:
        return json.loads(self.waka(*args, "--json").stdout)

    def dynos(self, app: str) -> list[dict]:
        return self.json("ps", "-a", app)  # type: ignore[return-value]

    def wait_for_dyno(
        self, app: str, *, state: str = "up", release: int | None = None, timeout: float = 60
    ) -> dict:
        def find() -> dict | None:
            for dyno in self.dynos(app):
                if dyno["state"] == state and (release is None or dyno["release"] == release):
                    return dyno
            return None

        return wait_for(find, timeout, f"a dyno of {app} {state} on v{release}")  # type: ignore[return-value]

    def stop(self, timeout: float = 90) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"waka did not stop within {timeout}s:\n{self.log()}"
                ) from None
        return self.process.returncode


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _processes_using(path: Path) -> list[psutil.Process]:
    """Sandboxes outlive the daemon that started them, so find them by what they hold open:
    a dyno's stdout is its output file under the data dir."""
    prefix = str(path)
    found = []
    for pid in psutil.pids():
        for link in (f"/proc/{pid}/fd/1", f"/proc/{pid}/cwd"):
            try:
                if os.readlink(link).startswith(prefix):
                    found.append(psutil.Process(pid))
                    break
            except (OSError, psutil.Error):
                continue
    return found


def start_daemon(
    command: str, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Daemon:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-{command}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [WAKA, command, "--data-dir", str(data_dir), *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    log_file.close()
    return Daemon(process, data_dir, log_path)


def start_up(data_dir: Path, *args: str) -> Daemon:
    """`waka up` on free ports; returns once the controller serves and the agent has joined."""
    (data_dir / "controller.json").unlink(missing_ok=True)
    daemon = start_daemon(
        "up",
        data_dir,
        "--api",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--router",
        "127.0.0.1:0",
        "--agent-api",
        "127.0.0.1:0",
        "--stop-grace",
        "5",
        *args,
    )

    def ready() -> bool:
        if daemon.process.poll() is not None:
            raise AssertionError(f"waka up exited {daemon.process.returncode}:\n{daemon.log()}")
        info = json.loads((data_dir / "controller.json").read_text())
        daemon.api, daemon.http, daemon.router = info["api"], info["http"], info["router"]
        daemon.agent_api = info["agent_api"]
        return (data_dir / "agent" / "node.json").exists() and "waka is up" in daemon.log()

    wait_for(ready, 60, "waka up to start")
    return daemon


@contextmanager
def running_waka(data_dir: Path, *args: str) -> Iterator[Daemon]:
    """`start_up` for a block; on leaving it, `stop_and_check_clean`."""
    daemon = start_up(data_dir, *args)
    try:
        yield daemon
    finally:
        stop_and_check_clean(daemon)


@pytest.fixture
def waka_up(tmp_path: Path) -> Iterator[Daemon]:
    with running_waka(tmp_path / "data") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def shared_waka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One `waka up` for a whole module, for tests that each leave it as they found it."""
    with running_waka(tmp_path_factory.mktemp("shared") / "data") as daemon:
        yield daemon


def stop_and_check_clean(daemon: Daemon) -> None:
    pid = daemon.process.pid
    leftovers_before = _descendants(pid)
    code = daemon.stop()
    for proc in leftovers_before:
        with_timeout_gone(proc)
    strays = _processes_using(daemon.data_dir)
    for proc in strays:
        proc.kill()
    mounts = mounts_under(daemon.data_dir)
    for mount in mounts:
        subprocess.run(["umount", "-l", mount], check=False)
    assert not strays, f"processes outlived waka: {[p.pid for p in strays]}"
    assert not mounts, f"mounts outlived waka: {mounts}"
    assert code == 0, f"waka exited {code}:\n{daemon.log()}"
    shutil.rmtree(daemon.data_dir, ignore_errors=True)


def with_timeout_gone(proc: psutil.Process, timeout: float = 10) -> None:
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"process {proc.pid} ({proc.name()}) outlived waka") from None
    except psutil.NoSuchProcess:
        pass


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def copy_example(name: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def init_repo(path: Path) -> Path:
    git("init", "-q", "-b", "main", cwd=path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "initial", cwd=path)
    return path


def commit_all(path: Path, message: str) -> None:
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message, cwd=path)


def agent_channel(daemon: Daemon, agent_dir: Path | None = None):
    """A mutual-TLS channel to the agent port, as the node whose identity is in agent_dir."""
    import grpc  # noqa: PLC0415 - only the few tests speaking the agent protocol need it

    directory = agent_dir or daemon.data_dir / "agent"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(directory / "ca.crt").read_bytes(),
        private_key=(directory / "node.key").read_bytes(),
        certificate_chain=(directory / "node.crt").read_bytes(),
    )
    return grpc.secure_channel(
        daemon.agent_api,
        credentials,
        options=[("grpc.ssl_target_name_override", "waka-controller")],
    )
