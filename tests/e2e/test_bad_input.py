"""Bad input gets a message naming the problem and a non-zero exit, and loses nothing stored."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tarfile
from pathlib import Path

import grpc
import pytest
from conftest import Daemon, agent_channel, copy_example, git, init_repo

from waka.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.root


def stored_state(daemon: Daemon) -> str:
    """Everything the controller keeps, as text, to prove a refusal changed nothing."""
    with sqlite3.connect(f"file:{daemon.data_dir / 'waka.db'}?mode=ro", uri=True) as db:
        dump = "\n".join(db.iterdump())
    blobs = sorted(str(p.relative_to(daemon.data_dir)) for p in daemon.data_dir.rglob("*.tgz"))
    return dump + "\n".join(blobs)


@pytest.fixture(scope="module")
def deployed(shared_waka: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    shared_waka.waka("apps:create", "keep", "--no-remote")
    shared_waka.waka("config:set", "KEEP=1", "-a", "keep")
    app = tmp_path_factory.mktemp("keep")
    (app / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    shared_waka.waka("deploy", "-a", "keep", str(app))
    shared_waka.wait_for_dyno("keep", release=1)
    return shared_waka


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apps:create", "Bad_Name"], "Invalid app name 'Bad_Name'"),
        (["apps:create", "a"], "Invalid app name 'a'"),
        (["apps:create", "keep"], "Name keep is already taken"),
        (["apps:info", "-a", "nope"], "Couldn't find that app: 'nope'"),
        (["ps", "-a", "nope"], "Couldn't find that app: 'nope'"),
        (["apps:destroy", "keep"], "--confirm keep"),
        (["apps:destroy", "keep", "--confirm", "other"], "--confirm keep"),
        (
            ["ps:scale", "nosuchtype=1", "-a", "keep"],
            "Couldn't find that process type (nosuchtype)",
        ),
        (["ps:scale", "web=1:giant", "-a", "keep"], "Unknown dyno size 'giant'"),
        (["config:set", "1BAD=x", "-a", "keep"], "cannot start with a digit"),
    ],
)
def test_bad_cli_input_is_refused_clearly_and_changes_nothing(deployed: Daemon, args, message):
    before = stored_state(deployed)
    result = deployed.waka(*args, check=False, cwd=deployed.data_dir)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert stored_state(deployed) == before


def test_malformed_procfile_line_fails_the_build_with_its_number(deployed: Daemon, tmp_path: Path):
    app = tmp_path / "badproc"
    app.mkdir()
    (app / "Procfile").write_text("web: python3 -m http.server $PORT\nthis line is wrong\n")
    before = deployed.json("releases", "-a", "keep")
    result = deployed.waka("deploy", "-a", "keep", str(app), check=False)
    assert result.returncode != 0
    assert "Procfile line 2: expected `name: command`" in result.stdout + result.stderr
    assert deployed.json("releases", "-a", "keep") == before


@pytest.mark.parametrize(
    ("name", "link"), [("/etc/evil", ""), ("../escape", ""), ("ok/../../x", ""), ("l", "/etc/x")]
)
def test_source_tarball_with_unsafe_entries_is_refused(
    deployed: Daemon, tmp_path: Path, name: str, link: str
):
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("Procfile")
        data = b"web: true\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo(name)
        if link:
            evil.type, evil.linkname = tarfile.SYMTYPE, link
        tar.addfile(evil, io.BytesIO(b""))
    before = stored_state(deployed)
    result = deployed.waka("deploy", "-a", "keep", str(tarball), check=False)
    assert result.returncode != 0
    assert "unsafe entry" in result.stderr and name in result.stderr, result.stderr
    assert stored_state(deployed) == before


def test_push_to_a_destroyed_app_is_refused(deployed: Daemon, tmp_path: Path):
    deployed.waka("apps:create", "doomed", "--no-remote")
    repo = init_repo(copy_example("python-flask", tmp_path / "app"))
    deployed.waka("git:remote", "-a", "doomed", cwd=repo)
    deployed.waka("apps:destroy", "doomed", "--confirm", "doomed")
    push = git("push", "waka", "main", cwd=repo, env=deployed.env, check=False)
    assert push.returncode != 0
    assert "not found" in push.stderr
    assert [a["name"] for a in deployed.json("apps")] == ["keep"]


def test_slug_whose_checksum_does_not_match_is_refused_and_not_stored(deployed: Daemon):
    data = b"not the slug you declared"
    declared = hashlib.sha256(b"something else").hexdigest()
    with agent_channel(deployed) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        parts = iter(
            [
                agent_pb2.SlugUpload(
                    header=agent_pb2.SlugUpload.Header(sha256=declared, size=len(data))
                ),
                agent_pb2.SlugUpload(data=data),
            ]
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.UploadSlug(parts, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "checksum mismatch" in caught.value.details()
    assert not (deployed.data_dir / "slugs" / f"{declared}.tgz").exists()
    actual = hashlib.sha256(data).hexdigest()
    assert not (deployed.data_dir / "slugs" / f"{actual}.tgz").exists()
