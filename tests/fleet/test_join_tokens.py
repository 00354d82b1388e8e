"""Who may join: a single-use token admits one agent, an expired one none; a removed node's dynos
stop and its credential stops working."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import grpc
import pytest
from conftest import wait_for

from fleet.conftest import Agent, Cluster, open_cluster
from waka.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One controller for the module: each test joins agents of its own."""
    with open_cluster(tmp_path_factory.mktemp("tokens")) as cluster:
        yield cluster


def new_token(cluster: Cluster, *args: str) -> dict:
    return json.loads(cluster.waka("nodes:token", "--json", *args).stdout)


def refused(agent: Agent) -> str:
    """The agent's exit: it must end at once with status 1 and a message naming the problem."""
    code = agent.exited(timeout=60)
    log = agent.log(since_start=True)
    assert code == 1, f"{agent.name} exited {code}, not 1:\n{log}"
    assert not (agent.data_dir / "node.json").exists(), "a refused agent saved a credential"
    return log


def test_single_use_join_token_admits_one_agent_and_refuses_the_second(shared: Cluster):
    token = new_token(shared, "--uses", "1")
    assert token["uses"] == 1
    admitted = shared.add_agent(token=token["token"])
    assert shared.nodes()[admitted.name].state == "ready"

    second = shared.add_agent(token=token["token"], wait=False)
    log = refused(second)
    assert f"cannot join the controller at {shared.controller}" in log, log
    assert "Invalid, expired or revoked token" in log, log
    assert second.name not in shared.nodes()


def test_expired_join_token_is_refused(shared: Cluster):
    token = new_token(shared, "--ttl", "1s")
    expires = datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00")).timestamp()
    wait_for(lambda: time.time() > expires + 0.5, 5, "the join token to expire")
    late = shared.add_agent(token=token["token"], wait=False)
    log = refused(late)
    assert "Invalid, expired or revoked token" in log, log
    assert late.name not in shared.nodes()


def test_removed_node_stops_its_dynos_and_its_credential_stops_working(shared: Cluster):
    shared.add_agent()  # somewhere for its dynos to go, whichever tests ran before
    removed = shared.add_agent()
    ready = sorted(name for name, node in shared.nodes().items() if node.state == "ready")
    shared.create_ticker_app("tokens")
    # One worker per node: spread placement gives the node about to be removed one of them.
    workers = len(ready)
    shared.scale("tokens", worker=workers)

    def all_up(on: Callable[[set[str]], bool]) -> bool:
        dynos = shared.dynos("tokens")
        return (
            len(dynos) == workers
            and all(d.state == "up" for d in dynos)
            and on({d.node for d in dynos})
        )

    wait_for(
        lambda: all_up(lambda nodes: removed.name in nodes),
        60,
        f"the workers up, one of them on {removed.name}",
        0.2,
    )

    refusal = shared.waka("nodes:remove", removed.name, check=False)
    assert refusal.returncode != 0
    assert f"--confirm {removed.name}" in refusal.stderr, refusal.stderr
    shared.waka("nodes:remove", removed.name, "--confirm", removed.name)

    wait_for(lambda: not removed.dyno_processes(), 30, f"{removed.name}'s dynos to stop", 0.2)
    assert removed.name not in shared.nodes()
    wait_for(
        lambda: all_up(lambda nodes: removed.name not in nodes),
        60,
        "every worker up on the remaining nodes",
        0.2,
    )
    channel, metadata = removed.credential_channel(shared.controller)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub = agent_pb2_grpc.AgentStub(channel)
        list(stub.DownloadSlug(agent_pb2.SlugRef(sha256="0" * 64), metadata=metadata, timeout=10))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    # The agent learns it too: its reconnections are refused, and it says why.
    wait_for(
        lambda: "revoked" in removed.log(since_start=True),
        30,
        f"{removed.name} to report its refused credential",
    )
    shared.waka("apps:destroy", "tokens", "--confirm", "tokens")


def test_removed_agent_says_its_credential_is_refused_without_crashing(shared: Cluster):
    agent = shared.add_agent()
    shared.waka("nodes:remove", agent.name, "--confirm", agent.name)
    wait_for(
        lambda: "revoked" in agent.log(since_start=True),
        30,
        f"{agent.name} to report its refused credential",
    )
    log = agent.log(since_start=True)
    assert "Traceback" not in log, f"the removed agent crashed:\n{log[-3000:]}"
