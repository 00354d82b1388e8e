"""The whole path on one host, as a user takes it: waka up, apps:create, git push, ps, logs."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from conftest import Daemon, commit_all, copy_example, git, init_repo, wait_for

pytestmark = pytest.mark.root


def http_get(address: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return response.read().decode()


def test_git_push_builds_runs_serves_and_logs_then_a_broken_push_changes_nothing(
    waka_up: Daemon, tmp_path: Path
):
    created = waka_up.waka("apps:create", "hello", "--no-remote")
    assert "Creating ⬢ hello... done" in created.stdout
    info = waka_up.json("apps:info", "-a", "hello")
    assert info["name"] == "hello"
    assert info["git_url"] == f"http://{waka_up.http}/hello.git"
    assert [a["name"] for a in waka_up.json("apps")] == ["hello"]

    repo = init_repo(copy_example("python-flask", tmp_path / "app"))
    waka_up.waka("git:remote", "-a", "hello", cwd=repo)
    push = git("push", "waka", "main", cwd=repo, env=waka_up.env)
    assert "remote: -----> Python app detected" in push.stderr
    assert "Released v1" in push.stderr

    dyno = waka_up.wait_for_dyno("hello", release=1)
    assert dyno["name"] == "web.1" and dyno["type"] == "web" and dyno["node"]
    assert "Hello from waka!" in http_get(dyno["address"])

    # Inside the repo the app comes from the `waka` remote: no -a needed.
    def served_line_logged() -> bool:
        return "hello-flask: served /" in waka_up.waka("logs", "-n", "200", cwd=repo).stdout

    wait_for(served_line_logged, 20, "the app's request line in waka logs")
    logs = waka_up.waka("logs", "-a", "hello", "-n", "500").stdout
    assert "waka[web.1]: State changed from starting to up" in logs
    assert "waka[api]: Release v1 created by admin" in logs
    assert len(waka_up.waka("logs", "-a", "hello", "-n", "2").stdout.splitlines()) == 2

    # A dependency that does not exist: the push is refused with uv's own error, nothing changes.
    with (repo / "requirements.txt").open("a") as f:
        f.write("this-package-does-not-exist-waka==1.0\n")
    commit_all(repo, "broken")
    broken = git("push", "waka", "main", cwd=repo, env=waka_up.env, check=False)
    assert broken.returncode != 0
    assert "this-package-does-not-exist-waka" in broken.stderr
    assert "pre-receive hook declined" in broken.stderr
    releases = waka_up.json("releases", "-a", "hello")
    assert [r["version"] for r in releases] == [1]
    still = waka_up.dynos("hello")
    assert [(d["release"], d["state"]) for d in still] == [(1, "up")]
    assert "Hello from waka!" in http_get(still[0]["address"])


def test_waka_deploy_uploads_a_directory_and_a_new_release_replaces_the_dyno(
    waka_up: Daemon, tmp_path: Path
):
    waka_up.waka("apps:create", "direct", "--no-remote")
    app = copy_example("python-flask", tmp_path / "app")
    deployed = waka_up.waka("deploy", "-a", "direct", str(app))
    assert "Released v1" in deployed.stdout
    first = waka_up.wait_for_dyno("direct", release=1)

    app_py = app / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from waka!", "Hello again!"))
    again = waka_up.waka("deploy", "-a", "direct", str(app))
    assert "restored the virtualenv from the build cache" in again.stdout
    second = waka_up.wait_for_dyno("direct", release=2)
    assert "Hello again!" in http_get(second["address"])

    def old_one_gone() -> bool:
        return [d["release"] for d in waka_up.dynos("direct")] == [2]

    wait_for(old_one_gone, 30, "the v1 dyno to be stopped")
    assert second["address"] != first["address"]


def test_a_crashing_process_is_restarted(waka_up: Daemon, tmp_path: Path):
    app = tmp_path / "crash"
    app.mkdir()
    (app / "Procfile").write_text("worker: echo started-$DYNO; exit 3\n")
    waka_up.waka("apps:create", "crashy", "--no-remote")
    waka_up.waka("deploy", "-a", "crashy", str(app))
    waka_up.waka("ps:scale", "worker=1", "-a", "crashy")

    def restarted() -> bool:
        logs = waka_up.waka("logs", "-a", "crashy", "-n", "500").stdout
        return logs.count("Process exited with status 3") >= 2

    wait_for(restarted, 60, "the crashed worker to be restarted")
    logs = waka_up.waka("logs", "-a", "crashy", "-n", "500").stdout
    assert "app[worker.1]: started-worker.1" in logs
    assert "State changed from up to crashed" in logs
