"""The gRPC API's promises: tokens required and kept apart, health and reflection served."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import grpc
import pytest
from conftest import (
    WAKA,
    Daemon,
    agent_channel,
    start_daemon,
    stop_and_check_clean,
    wait_for,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from waka.v1 import agent_pb2, agent_pb2_grpc, platform_pb2, platform_pb2_grpc

pytestmark = pytest.mark.root


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def admin_token(daemon: Daemon) -> str:
    return (daemon.data_dir / "admin-token").read_text().strip()


def test_calls_without_a_valid_token_are_unauthenticated(shared_waka: Daemon):
    with grpc.insecure_channel(shared_waka.api) as channel:
        apps = platform_pb2_grpc.AppsStub(channel)
        for metadata in [(), bearer("waka_not-a-real-token"), (("authorization", "Basic x"),)]:
            with pytest.raises(grpc.RpcError) as caught:
                apps.List(platform_pb2.Empty(), metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert apps.List(platform_pb2.Empty(), metadata=bearer(admin_token(shared_waka)))


def test_user_token_and_node_certificate_cannot_stand_in_for_each_other(shared_waka: Daemon):
    # The node's certificate opens the agent port, and nothing on it needs a user token...
    with agent_channel(shared_waka) as channel:
        agent = agent_pb2_grpc.AgentStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(agent.DownloadSlug(agent_pb2.SlugRef(sha256="0" * 64), timeout=10))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated: no such slug
        # ...but it cannot call the user API.
        apps_over_tls = platform_pb2_grpc.AppsStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            apps_over_tls.List(platform_pb2.Empty(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A user token cannot act as an agent on the API port...
    with grpc.insecure_channel(shared_waka.api) as channel:
        agent = agent_pb2_grpc.AgentStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(
                agent.DownloadSlug(
                    agent_pb2.SlugRef(sha256="0" * 64),
                    metadata=bearer(admin_token(shared_waka)),
                    timeout=10,
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            agent.Join(agent_pb2.JoinRequest(name="x"), metadata=bearer(admin_token(shared_waka)))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # ...and the agent port takes no connection without a certificate from the controller's CA.
    ca = grpc.ssl_channel_credentials(
        root_certificates=(shared_waka.data_dir / "agent" / "ca.crt").read_bytes()
    )
    with grpc.secure_channel(
        shared_waka.agent_api, ca, options=[("grpc.ssl_target_name_override", "waka-controller")]
    ) as channel:
        agent = agent_pb2_grpc.AgentStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(
                agent.DownloadSlug(
                    agent_pb2.SlugRef(sha256="0" * 64),
                    metadata=bearer(admin_token(shared_waka)),
                    timeout=10,
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_secrets_are_not_stored_in_clear(shared_waka: Daemon):
    database = (shared_waka.data_dir / "waka.db").read_bytes()
    assert admin_token(shared_waka).encode() not in database
    join = (shared_waka.data_dir / "join-token").read_text().strip()
    assert join.encode() not in database
    for secret in ("admin-token", "join-token", "agent/node.key", "ca/ca.key"):
        assert os.stat(shared_waka.data_dir / secret).st_mode & 0o077 == 0, secret


def test_a_join_token_for_another_controller_is_refused(shared_waka: Daemon, tmp_path: Path):
    token = (shared_waka.data_dir / "join-token").read_text().strip()
    wrong_pin = token.rpartition(".")[0] + "." + "0" * 32
    result = subprocess.run(
        [
            WAKA,
            "agent",
            "--controller",
            shared_waka.api,
            "--token",
            wrong_pin,
            "--data-dir",
            str(tmp_path / "impostor"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "does not match the fingerprint in the join token" in result.stderr


def test_health_and_reflection_are_served_without_a_token(shared_waka: Daemon):
    with grpc.insecure_channel(shared_waka.api) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in response.list_services_response.service}
        assert {"waka.v1.Apps", "waka.v1.Logs", "waka.v1.Agent"} <= names


def test_cli_reports_a_bad_token_and_an_unreachable_controller(shared_waka: Daemon):
    shared_waka.extra_env = {"WAKA_API_KEY": "waka_wrong"}
    try:
        result = shared_waka.waka("apps", check=False)
    finally:
        shared_waka.extra_env = {}
    assert result.returncode == 1
    assert "authentication failed" in result.stderr
    shared_waka.extra_env = {"WAKA_API": "127.0.0.1:9"}
    try:
        result = shared_waka.waka("apps", check=False)
    finally:
        shared_waka.extra_env = {}
    assert result.returncode == 1
    assert "cannot reach the waka controller at 127.0.0.1:9" in result.stderr


def test_a_second_agent_joins_with_the_join_token_and_gets_work(
    shared_waka: Daemon, tmp_path: Path
):
    token = (shared_waka.data_dir / "join-token").read_text().strip()
    second = start_daemon(
        "agent", tmp_path / "agent2", "--controller", shared_waka.api, "--token", token
    )
    try:
        wait_for(lambda: (tmp_path / "agent2" / "node.json").exists(), 30, "the agent to join")
        app = tmp_path / "spread"
        app.mkdir()
        (app / "Procfile").write_text("worker: echo on $DYNO; exec sleep 1000\n")
        shared_waka.waka("apps:create", "spread", "--no-remote")
        shared_waka.waka("deploy", "-a", "spread", str(app))
        shared_waka.waka("ps:scale", "worker=2", "-a", "spread")

        def on_two_nodes() -> bool:
            dynos = shared_waka.dynos("spread")
            return len({d["node"] for d in dynos if d["state"] == "up"}) == 2

        wait_for(on_two_nodes, 60, "worker dynos up on both nodes")
        shared_waka.waka("apps:destroy", "spread", "--confirm", "spread")
        wait_for(
            lambda: not list((tmp_path / "agent2" / "dynos").iterdir()),
            30,
            "the second agent to stop the destroyed app's dyno",
        )
    finally:
        stop_and_check_clean(second)


def test_a_quiet_stream_of_a_client_that_pings_is_not_hung_up_on(shared_waka: Daemon):
    """Agents send keepalive pings whether or not anything flows; grpc servers by default answer
    frequent pings on a quiet connection with GOAWAY "too_many_pings" after the third. Pinging
    every second, that would end the tail within about three seconds."""
    shared_waka.waka("apps:create", "quiet", "--no-remote")
    pings = [
        ("grpc.keepalive_time_ms", 1_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(shared_waka.api, options=pings) as channel:
        tail = platform_pb2_grpc.LogsStub(channel).Tail(
            platform_pb2.TailRequest(app="quiet", follow=True, source="none-such"),
            metadata=bearer(admin_token(shared_waka)),
        )
        ended: list[object] = []
        finished = threading.Event()

        def read() -> None:
            try:
                ended.extend(tail)
                ended.append("the stream ended")
            except grpc.RpcError as error:
                ended.append(error)
            finally:
                finished.set()

        threading.Thread(target=read, daemon=True).start()
        assert not finished.wait(8), ended
        tail.cancel()
        assert finished.wait(10)
        assert isinstance(ended[-1], grpc.RpcError)
        assert ended[-1].code() == grpc.StatusCode.CANCELLED


class FreezableRelay:
    """A TCP relay to `target` that can go silent: its connections stay open and carry nothing
    any more, as when the controller's host loses power or the network in between goes."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.frozen = threading.Event()
        self.answered = threading.Event()  # the controller sent something through
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self._listener.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.answered), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, seen: threading.Event | None = None
    ) -> None:
        try:
            while data := source.recv(65536):
                if not self.frozen.is_set():  # frozen: swallowed, never answered
                    sink.sendall(data)
                    if seen is not None:
                        seen.set()
        except OSError:
            pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_a_tail_whose_controller_goes_silent_ends_with_a_message(shared_waka: Daemon):
    shared_waka.waka("apps:create", "cut-off", "--no-remote")
    relay = FreezableRelay(shared_waka.api)
    tail = subprocess.Popen(
        [WAKA, "logs", "-t", "-a", "cut-off"],
        env={**shared_waka.env, "WAKA_API": relay.address},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.answered.wait(30), "the tail never reached the controller"
        relay.frozen.set()
        # Keepalive pings every 10 s, 10 s for the answer: the CLI gives up within ~20 s.
        _, stderr = tail.communicate(timeout=60)
        assert tail.returncode == 1
        assert f"cannot reach the waka controller at {relay.address}" in stderr
    finally:
        tail.kill()
        tail.wait()
        relay.close()
