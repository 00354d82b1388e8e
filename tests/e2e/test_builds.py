"""Builds users can trust: custom and multiple buildpacks, limits, one build at a time, records."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import Daemon, running_waka, wait_for

pytestmark = pytest.mark.root

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture(scope="module")
def waka(tmp_path_factory: pytest.TempPathFactory):
    with running_waka(
        tmp_path_factory.mktemp("builds") / "data",
        "--build-timeout",
        "8",
        "--slug-max-mb",
        "1",
        "--keep-releases",
        "2",
    ) as daemon:
        yield daemon


def buildpack(root: Path, name: str, compile_script: str, detect: str = "echo Custom") -> Path:
    """A classic-API buildpack on disk."""
    bp = root / name
    (bp / "bin").mkdir(parents=True)
    scripts = {
        "detect": f"#!/usr/bin/env bash\n{detect}\n",
        "compile": f"#!/usr/bin/env bash\nset -euo pipefail\n{compile_script}\n",
        "release": "#!/usr/bin/env bash\necho '--- {}'\n",
    }
    for script, body in scripts.items():
        path = bp / "bin" / script
        path.write_text(body)
        path.chmod(0o755)
    return bp


def app_dir(root: Path, name: str, files: dict[str, str]) -> Path:
    app = root / name
    app.mkdir()
    for filename, text in files.items():
        (app / filename).write_text(text)
    return app


def test_buildpack_by_path_and_by_git_url_with_export_between_them(waka: Daemon, tmp_path: Path):
    first = buildpack(
        tmp_path,
        "first",
        'echo "-----> first ran"\n'
        'echo "export FROM_FIRST=hello-from-first" > "$(cd "$(dirname "$0")"/..; pwd)/export"\n'
        'mkdir -p "$1/.profile.d"; echo "export GREETING_FIRST=1" > "$1/.profile.d/first.sh"',
    )
    second_src = buildpack(
        tmp_path,
        "second-src",
        'echo "-----> second sees $FROM_FIRST"\n'
        'echo "$FROM_FIRST" > "$1/from_first.txt"\n'
        'ls "$3" > "$1/env_names.txt"',
    )
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=second_src, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=second_src, check=True)
    subprocess.run([*GIT, "commit", "-qm", "bp"], cwd=second_src, check=True)
    bare = tmp_path / "second.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(second_src), str(bare)], check=True)

    app = app_dir(tmp_path, "multi", {"Procfile": "worker: exec sleep 1000\n"})
    waka.waka("apps:create", "multi", "--no-remote")
    waka.waka("config:set", "SECRET_NAME=v", "-a", "multi")
    waka.waka("buildpacks:add", str(first), "-a", "multi")
    waka.waka("buildpacks:add", f"file://{bare}#main", "-a", "multi")
    assert waka.json("buildpacks", "-a", "multi") == [str(first), f"file://{bare}#main"]
    out = waka.waka("deploy", "-a", "multi", str(app)).stdout
    assert "-----> first ran" in out
    assert "-----> second sees hello-from-first" in out
    inside = waka.waka("run", "--no-tty", "-a", "multi", "cat from_first.txt env_names.txt")
    assert inside.stdout == "hello-from-first\nSECRET_NAME\n"
    waka.waka("buildpacks:remove", "-i", "1", "-a", "multi")
    assert waka.json("buildpacks", "-a", "multi") == [f"file://{bare}#main"]
    waka.waka("buildpacks:clear", "-a", "multi")
    assert waka.json("buildpacks", "-a", "multi") == []
    bad = waka.waka("buildpacks:add", "not a buildpack!", "-a", "multi", check=False)
    assert bad.returncode == 1 and "Invalid buildpack" in bad.stderr


def test_dot_buildpacks_file_and_unknown_buildpack(waka: Daemon, tmp_path: Path):
    custom = buildpack(tmp_path, "dotbp", 'echo "-----> chosen by .buildpacks"')
    app = app_dir(
        tmp_path, "dotfile", {"Procfile": "worker: exec sleep 1000\n", ".buildpacks": f"{custom}\n"}
    )
    waka.waka("apps:create", "dotfile", "--no-remote")
    assert "chosen by .buildpacks" in waka.waka("deploy", "-a", "dotfile", str(app)).stdout
    (app / ".buildpacks").write_text("no-such-buildpack\n")
    failed = waka.waka("deploy", "-a", "dotfile", str(app), check=False)
    assert failed.returncode != 0
    assert "unknown buildpack 'no-such-buildpack'" in failed.stdout + failed.stderr


def test_compile_timeout_fails_the_build_and_the_old_release_keeps_serving(
    waka: Daemon, tmp_path: Path
):
    app = app_dir(tmp_path, "slow", {"Procfile": "web: python3 -m http.server $PORT\n"})
    waka.waka("apps:create", "slow", "--no-remote")
    waka.waka("deploy", "-a", "slow", str(app))
    old = waka.wait_for_dyno("slow", release=1)
    sleepy = buildpack(tmp_path, "sleepy", 'echo "-----> sleeping"; sleep 60')
    waka.waka("buildpacks:set", str(sleepy), "-a", "slow")
    result = waka.waka("deploy", "-a", "slow", str(app), check=False)
    assert result.returncode != 0
    assert "the build took longer than" in result.stdout + result.stderr
    assert [(d["release"], d["address"]) for d in waka.dynos("slow")] == [(1, old["address"])]
    builds = waka.json("builds", "-a", "slow")
    failed = next(b for b in builds if b["status"] == "failed")
    output = waka.waka("builds:output", failed["id"], "-a", "slow").stdout
    assert "-----> sleeping" in output


def test_oversize_slug_is_refused(waka: Daemon, tmp_path: Path):
    app = app_dir(tmp_path, "big", {"Procfile": "worker: exec sleep 1000\n"})
    (app / "blob.bin").write_bytes(os.urandom(1_500_000))
    waka.waka("apps:create", "big", "--no-remote")
    result = waka.waka("deploy", "-a", "big", str(app), check=False)
    assert result.returncode != 0
    assert "over the limit of" in result.stdout + result.stderr
    assert waka.json("releases", "-a", "big") == []


def test_a_second_deploy_waits_for_the_first(waka: Daemon, tmp_path: Path):
    slowish = buildpack(tmp_path, "slowish", 'echo "-----> building"; sleep 2')
    app = app_dir(tmp_path, "queue", {"Procfile": "worker: exec sleep 1000\n"})
    waka.waka("apps:create", "queue", "--no-remote")
    waka.waka("buildpacks:set", str(slowish), "-a", "queue")
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(waka.waka("deploy", "-a", "queue", str(app), check=False))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [r.returncode for r in results] == [0, 0]
    assert any("Waiting for the build already running" in r.stdout for r in results)
    assert sorted(r["version"] for r in waka.json("releases", "-a", "queue")) == [1, 2]


def test_no_wait_refuses_while_building_and_cancel_stops_the_build(waka: Daemon, tmp_path: Path):
    endless = buildpack(tmp_path, "endless", 'echo "-----> building forever"; exec sleep 600')
    app = app_dir(tmp_path, "stuck", {"Procfile": "worker: exec sleep 1000\n"})
    waka.waka("apps:create", "stuck", "--no-remote")
    waka.waka("buildpacks:set", str(endless), "-a", "stuck")
    first: list[subprocess.CompletedProcess[str]] = []
    thread = threading.Thread(
        target=lambda: first.append(waka.waka("deploy", "-a", "stuck", str(app), check=False))
    )
    thread.start()
    try:
        wait_for(
            lambda: [b["status"] for b in waka.json("builds", "-a", "stuck")] == ["building"],
            30,
            "the first build to start",
        )
        refused = waka.waka("deploy", "--no-wait", "-a", "stuck", str(app), check=False)
        assert refused.returncode != 0
        assert "already building" in refused.stderr + refused.stdout
        waka.waka("builds:cancel", "-a", "stuck")
    finally:
        thread.join(60)
    assert not thread.is_alive(), "the cancelled deploy did not end"
    assert first[0].returncode != 0, first[0].stdout
    # Cancelled, not ended by the module's 8 s compile timeout.
    assert "the build was canceled" in first[0].stdout + first[0].stderr
    builds = waka.json("builds", "-a", "stuck")
    assert len(builds) == 1 and builds[0]["status"] not in {"pending", "building", "succeeded"}
    assert waka.json("releases", "-a", "stuck") == []


def test_cache_purge_and_garbage_collection(waka: Daemon, tmp_path: Path):
    app = app_dir(tmp_path, "gc", {"Procfile": "worker: exec sleep 1000\n", "v": "1"})
    waka.waka("apps:create", "gc", "--no-remote")
    for version in range(1, 5):
        (app / "v").write_text(str(version))
        waka.waka("deploy", "-a", "gc", str(app))
    cache = waka.data_dir / "agent" / "cache" / "gc"
    assert cache.exists()
    waka.waka("builds:cache:purge", "-a", "gc")
    wait_for(lambda: not cache.exists(), 20, "the build cache to be purged on the builder")
    # Without --now fresh slugs are kept (an upload may be finishing).
    assert waka.json("gc")["slugs_removed"] == 0
    report = waka.json("gc", "--now")
    assert report["releases_kept"] == 2
    # Four releases, two kept: v1's and v2's slugs go (other apps' old slugs may go too).
    assert report["slugs_removed"] >= 2 and report["slug_bytes"] > 0
    gone = waka.waka("rollback", "v1", "-a", "gc", check=False)
    assert gone.returncode == 1 and "is no longer stored" in gone.stderr
    assert "Rolled back to v3" in waka.waka("rollback", "v3", "-a", "gc").stdout
