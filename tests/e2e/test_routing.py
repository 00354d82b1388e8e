"""Apps behind the router on a real `waka up`: hostnames, H codes, maintenance, zero-downtime."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, commit_all, git, init_repo, running_waka, wait_for

pytestmark = pytest.mark.root

APP_PY = """\
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"{os.environ.get('GREETING', 'hi')} from {os.environ['DYNO']}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Request-Id", self.headers.get("X-Request-Id", ""))
        self.send_header("X-Seen-Forwarded-For", self.headers.get("X-Forwarded-For", ""))
        self.send_header("X-Seen-Forwarded-Proto", self.headers.get("X-Forwarded-Proto", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def get(daemon: Daemon, host: str, path: str = "/", headers=None) -> tuple[int, str, dict]:
    address, _, port = daemon.router.rpartition(":")
    conn = http.client.HTTPConnection(address, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def shared_waka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """This module's `waka up`, with a TLS terminator on loopback trusted (as Caddy would be)."""
    with running_waka(
        tmp_path_factory.mktemp("routing") / "data", "--trusted-proxy", "127.0.0.1"
    ) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def routed(shared_waka: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    app = tmp_path_factory.mktemp("routed")
    (app / "app.py").write_text(APP_PY)
    (app / "Procfile").write_text("web: python3 app.py\n")
    shared_waka.waka("apps:create", "routed", "--no-remote")
    shared_waka.waka("config:set", "GREETING=hello", "-a", "routed")
    shared_waka.waka("deploy", "-a", "routed", str(app))
    shared_waka.wait_for_dyno("routed", release=1)
    wait_for(lambda: get(shared_waka, "routed.localhost")[0] == 200, 30, "the router to route")
    return shared_waka


def test_app_is_served_at_its_hostname_with_heroku_headers(routed: Daemon):
    status, body, headers = get(routed, "routed.localhost")
    assert (status, body) == (200, "hello from web.1\n")
    assert len(headers["X-Seen-Request-Id"]) >= 20
    assert headers["X-Seen-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Seen-Forwarded-Proto"] == "http"
    # From the trusted proxy (--trusted-proxy 127.0.0.1), what it says the client used.
    _, _, proxied = get(routed, "routed.localhost", headers={"X-Forwarded-Proto": "https"})
    assert proxied["X-Seen-Forwarded-Proto"] == "https"
    given = "abcdefghijklmnopqrstuvwxyz-0123"
    _, _, echoed = get(routed, "routed.localhost", headers={"X-Request-Id": given})
    assert echoed["X-Seen-Request-Id"] == given
    info = routed.json("apps:info", "-a", "routed")
    assert info["web_url"] == f"http://routed.localhost:{routed.router.rpartition(':')[2]}/"

    def logged() -> bool:
        logs = routed.waka("logs", "-a", "routed", "-s", "router", "-n", "50").stdout
        return 'router[router]: at=info method=GET path="/" host=routed.localhost' in logs

    wait_for(logged, 20, "the router's line in the app's logs")


def test_unknown_host_gets_404(routed: Daemon):
    status, _, _ = get(routed, "nope.localhost")
    assert status == 404


def test_custom_domain_routes_to_the_app(routed: Daemon):
    routed.waka("domains:add", "-a", "routed", "www.example.home.lan")
    assert get(routed, "www.example.home.lan")[:2] == (200, "hello from web.1\n")
    domains = routed.json("domains", "-a", "routed")
    assert {d["hostname"] for d in domains} == {"routed.localhost", "www.example.home.lan"}
    taken = routed.waka("domains:add", "-a", "routed", "www.example.home.lan", check=False)
    assert taken.returncode == 1 and "already added to routed" in taken.stderr
    bad = routed.waka("domains:add", "-a", "routed", "not a host", check=False)
    assert bad.returncode == 1 and "Invalid domain" in bad.stderr
    routed.waka("domains:remove", "-a", "routed", "www.example.home.lan")
    assert get(routed, "www.example.home.lan")[0] == 404


def test_maintenance_mode_serves_h80_and_back(routed: Daemon):
    routed.waka("maintenance:on", "-a", "routed")
    assert routed.waka("maintenance", "-a", "routed").stdout == "on\n"
    status, _, _ = get(routed, "routed.localhost")
    assert status == 503

    def logged() -> bool:
        logs = routed.waka("logs", "-a", "routed", "-s", "router", "-n", "20").stdout
        return "code=H80" in logs

    wait_for(logged, 20, "an H80 line")
    routed.waka("maintenance:off", "-a", "routed")
    assert get(routed, "routed.localhost")[0] == 200


def test_scaled_to_zero_is_h14(routed: Daemon, tmp_path: Path):
    app = tmp_path / "zero"
    app.mkdir()
    (app / "app.py").write_text(APP_PY)
    (app / "Procfile").write_text("web: python3 app.py\n")
    routed.waka("apps:create", "zero", "--no-remote")
    routed.waka("deploy", "-a", "zero", str(app))
    routed.wait_for_dyno("zero", release=1)
    routed.waka("ps:scale", "web=0", "-a", "zero")

    def h14() -> bool:
        status, _, _ = get(routed, "zero.localhost")
        logs = routed.waka("logs", "-a", "zero", "-s", "router", "-n", "20").stdout
        return status == 503 and "code=H14" in logs

    wait_for(h14, 30, "H14 for an app with no web dynos")


def test_a_deploy_under_continuous_requests_answers_every_one_with_200(
    routed: Daemon, tmp_path: Path
):
    app = tmp_path / "steady"
    app.mkdir()
    (app / "app.py").write_text(APP_PY)
    (app / "Procfile").write_text("web: python3 app.py\n")
    routed.waka("apps:create", "steady", "--no-remote")
    routed.waka("deploy", "-a", "steady", str(app))
    routed.waka("ps:scale", "web=2", "-a", "steady")
    wait_for(
        lambda: sum(d["state"] == "up" for d in routed.dynos("steady")) == 2, 60, "two web dynos"
    )
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        address, _, port = routed.router.rpartition(":")
        while not stop.is_set():
            conn = http.client.HTTPConnection(address, int(port), timeout=30)
            try:
                for _ in range(20):
                    conn.request("GET", "/", headers={"Host": "steady.localhost"})
                    response = conn.getresponse()
                    results.append((response.status, response.read().decode()))
            except OSError as error:
                results.append((0, repr(error)))
            finally:
                conn.close()

    clients = [threading.Thread(target=hammer) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: len(results) > 50, 30, "requests before the deploy")
        routed.waka("config:set", "GREETING=changed", "-a", "steady")

        def all_new() -> bool:
            dynos = routed.dynos("steady")
            return [d["release"] for d in dynos] == [2, 2] and all(
                d["state"] == "up" for d in dynos
            )

        wait_for(all_new, 90, "both dynos replaced by the new release")
        mark = len(results)
        wait_for(lambda: len(results) > mark + 50, 30, "requests after the deploy")
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    failures = [r for r in results if r[0] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    bodies = {body.split(" from ")[0] for _, body in results}
    assert bodies == {"hi", "changed"}
    assert results[-1][1].startswith("changed from web.")


HEALTH_APP = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = os.environ.get("READY") == "1"
        status = 200 if self.path != "/ready" or ready else 503
        print(f"health-app: {self.path} -> {status}", flush=True)
        body = f"release {os.environ['WAKA_RELEASE_VERSION']}\\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_web_dyno_is_up_only_once_its_health_check_answers(routed: Daemon, tmp_path: Path):
    app = tmp_path / "health"
    app.mkdir()
    (app / "app.py").write_text(HEALTH_APP)
    (app / "Procfile").write_text("web: python3 app.py\n")
    (app / "app.json").write_text('{"healthchecks": {"web": [{"path": "/ready"}]}}')
    routed.waka("apps:create", "health", "--no-remote")
    routed.waka("config:set", "READY=0", "-a", "health")
    routed.waka("deploy", "-a", "health", str(app))

    def probed_and_refused() -> bool:
        logs = routed.waka("logs", "-a", "health", "-s", "app", "-n", "50").stdout
        return "health-app: /ready -> 503" in logs

    wait_for(probed_and_refused, 60, "the agent to probe /ready and get a 503")
    assert [d["state"] for d in routed.dynos("health")] == ["starting"]
    # Still starting, so the router holds requests for it rather than sending them (H20 later).
    routed.waka("config:set", "READY=1", "-a", "health")
    routed.wait_for_dyno("health", release=2)
    assert get(routed, "health.localhost")[:2] == (200, "release v2\n")


def test_without_preboot_old_dynos_stop_before_new_ones_start(routed: Daemon, tmp_path: Path):
    app = tmp_path / "single"
    app.mkdir()
    (app / "Procfile").write_text("worker: echo started $WAKA_RELEASE_VERSION; exec sleep 1000\n")
    routed.waka("apps:create", "single", "--no-remote")
    routed.waka("features:disable", "preboot", "-a", "single")
    features = routed.json("features", "-a", "single")
    assert {"name": "preboot", "enabled": False} in [
        {"name": f["name"], "enabled": f["enabled"]} for f in features
    ]
    assert "new dynos are up before old ones stop" in features[0]["description"]
    routed.waka("deploy", "-a", "single", str(app))
    routed.waka("ps:scale", "worker=1", "-a", "single")
    routed.wait_for_dyno("single", release=1)
    routed.waka("config:set", "X=1", "-a", "single")
    routed.wait_for_dyno("single", release=2)
    logs = routed.waka("logs", "-a", "single", "-d", "worker", "-n", "200").stdout.splitlines()
    stopped_old = next(i for i, line in enumerate(logs) if "Process exited" in line)
    started_new = next(i for i, line in enumerate(logs) if "started v2" in line)
    assert stopped_old < started_new, "\n".join(logs)


def test_rename_moves_url_logs_config_domains_and_git_remote_and_replaces_the_dynos(
    shared_waka: Daemon, tmp_path: Path
):
    waka = shared_waka
    repo = tmp_path / "first"
    repo.mkdir()
    (repo / "app.py").write_text(APP_PY)
    (repo / "Procfile").write_text("web: python3 app.py\n")
    init_repo(repo)
    waka.waka("apps:create", "first-name", "--no-remote")
    waka.waka("apps:create", "taken-name", "--no-remote")
    waka.waka("git:remote", "-a", "first-name", cwd=repo)
    waka.waka("config:set", "GREETING=howdy", "-a", "first-name")
    waka.waka("domains:add", "-a", "first-name", "renamed.example.home.lan")
    git("push", "waka", "main", cwd=repo, env=waka.env)
    old_dyno = waka.wait_for_dyno("first-name")
    release = old_dyno["release"]
    wait_for(lambda: get(waka, "first-name.localhost")[0] == 200, 30, "the router to route")

    # Bad names and taken names change nothing.
    for bad, says in [
        ("Not_Valid", "Invalid app name 'Not_Valid'"),
        ("taken-name", "Name taken-name is already taken"),
        ("first-name", "already called first-name"),
    ]:
        refused = waka.waka("apps:rename", bad, "-a", "first-name", check=False)
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr

    renamed = waka.waka("apps:rename", "second-name", cwd=repo)
    assert "Renaming first-name to second-name... done" in renamed.stdout, renamed.stdout
    assert "Git remote waka updated" in renamed.stdout
    assert git("remote", "get-url", "waka", cwd=repo).stdout.strip().endswith("/second-name.git")

    # The router: the new hostname and the custom domain serve it, the old one is gone.
    wait_for(
        lambda: get(waka, "second-name.localhost")[:2] == (200, "howdy from web.1\n"),
        30,
        "the new hostname to route",
    )
    assert get(waka, "renamed.example.home.lan")[:2] == (200, "howdy from web.1\n")
    assert get(waka, "first-name.localhost")[0] == 404

    # The dynos are replaced, so that they say the new name too.
    def replaced() -> bool:
        dynos = waka.dynos("second-name")
        return [(d["id"] != old_dyno["id"], d["state"], d["release"]) for d in dynos] == [
            (True, "up", release)
        ]

    wait_for(replaced, 60, "the old dyno to be replaced by one up")
    assert waka.waka("run", "--no-tty", "-a", "second-name", "echo $WAKA_APP_NAME").stdout == (
        "second-name\n"
    )
    # The history came along, and the log stream goes on under the new name.
    logs = waka.waka("logs", "-a", "second-name", "-n", "500").stdout
    assert f"Release v{release} created by admin" in logs
    assert "Renamed from first-name by admin" in logs
    assert waka.json("config", "-a", "second-name")["GREETING"] == "howdy"
    gone = waka.waka("logs", "-a", "first-name", check=False)
    assert gone.returncode == 1 and "first-name" in gone.stderr
    # A push through the updated remote deploys the renamed app.
    with (repo / "app.py").open("a") as source:
        source.write("# again\n")
    commit_all(repo, "again")
    pushed = git("push", "waka", "main", cwd=repo, env=waka.env)
    assert f"Released v{release + 1}" in pushed.stderr
    # The old name is free again, for a new app with a history of its own.
    waka.waka("apps:create", "first-name", "--no-remote")
    assert "Renamed from" not in waka.waka("logs", "-a", "first-name").stdout
    for app in ("first-name", "second-name", "taken-name"):
        waka.waka("apps:destroy", app, "--confirm", app)
