"""Shared by the benchmarks: a real `waka up` on free ports, and a gRPC client to it."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from waka.v1 import platform_pb2, platform_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
WAKA = str(Path(sys.executable).parent / "waka")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class Waka:
    process: subprocess.Popen[bytes]
    data_dir: Path
    api: str
    http: str
    token: str
    # With `start_waka(split=True)`: the agent, in its own process (`process` is the controller).
    agent: subprocess.Popen[bytes] | None = None

    @property
    def pids(self) -> list[int]:
        """The processes waka runs in (one for `waka up`)."""
        return [self.process.pid] + ([self.agent.pid] if self.agent else [])

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "WAKA_DATA_DIR": str(self.data_dir), "NO_COLOR": "1"}

    def cli(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            [WAKA, *args], env=self.env, cwd=cwd, check=True, capture_output=True, text=True
        ).stdout

    def stub(self, name: str):
        channel = grpc.insecure_channel(self.api)
        return getattr(platform_pb2_grpc, f"{name}Stub")(channel)

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"),)

    def dynos(self, app: str) -> list[platform_pb2.Dyno]:
        reply = self.stub("Dynos").List(platform_pb2.AppRef(app=app), metadata=self.metadata)
        return list(reply.dynos)

    def stop(self) -> None:
        for process in (self.agent, self.process):  # the agent first: it stops its dynos
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(120)


def start_waka(*extra: str, split: bool = False) -> Waka:
    """`waka up` on free ports; with `split`, `waka server` and `waka agent` on this host instead,
    as a fleet runs them (the agent talks to the controller over its mutual-TLS API)."""
    data_dir = Path(tempfile.mkdtemp(prefix="waka-bench-")) / "data"
    data_dir.mkdir()
    log = (data_dir.parent / "waka.log").open("wb")
    process = subprocess.Popen(
        [
            WAKA,
            "server" if split else "up",
            "--data-dir",
            str(data_dir),
            "--api",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--stop-grace",
            "5",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    agent = None
    if split:
        controller_json = data_dir / "controller.json"
        info = wait_for(lambda: json.loads(controller_json.read_text()), 60, "waka server")
        agent = subprocess.Popen(
            [
                WAKA,
                "agent",
                "--data-dir",
                str(data_dir / "agent"),
                "--controller",
                info["api"],
                "--token",
                (data_dir / "join-token").read_text().strip(),
                "--leave-timeout",
                "0",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready():
        info = json.loads((data_dir / "controller.json").read_text())
        return info if (data_dir / "agent" / "node.json").exists() else None

    info = wait_for(ready, 60, "waka up")
    time.sleep(0.5)  # let the agent's session settle before timing anything
    token = (data_dir / "admin-token").read_text().strip()
    return Waka(process, data_dir, info["api"], info["http"], token, agent)


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.3f}s  min {min(values):.3f}s  "
        f"max {max(values):.3f}s  (n={len(values)})"
    )
