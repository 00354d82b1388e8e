"""waka deploy: the source tarball it builds, the upload stream, and how the build's end reads."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import Cli, FakePlatform, serving

from waka.cli._deploy import CHUNK_SIZE
from waka.cli._tarball import write_source_tarball


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)


def _source_tree(root: Path) -> Path:
    app = root / "app"
    (app / "lib" / "deep").mkdir(parents=True)
    (app / "Procfile").write_text("web: python app.py\n")
    (app / "app.py").write_text("print('hi')\n")
    (app / "lib" / "deep" / "util.py").write_text("X = 1\n")
    (app / "run.sh").write_text("#!/bin/sh\n")
    (app / "run.sh").chmod(0o755)
    (app / "link-to-app").symlink_to("app.py")
    (app / "link-to-lib").symlink_to("lib")
    (app / ".git" / "objects").mkdir(parents=True)
    (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (app / "lib" / ".git").write_text("gitdir: ../.git/modules/lib\n")
    return app


def _members(tarball: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        return {member.name: member for member in archive.getmembers()}


def test_tarball_has_relative_names_and_no_git(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    write_source_tarball(_source_tree(tmp_path), buffer)
    members = _members(buffer.getvalue())
    assert sorted(members) == [
        "Procfile",
        "app.py",
        "lib",
        "lib/deep",
        "lib/deep/util.py",
        "link-to-app",
        "link-to-lib",
        "run.sh",
    ]


def test_tarball_keeps_symlinks_as_links_and_modes(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    write_source_tarball(_source_tree(tmp_path), buffer)
    members = _members(buffer.getvalue())
    assert members["link-to-app"].issym()
    assert members["link-to-app"].linkname == "app.py"
    assert members["link-to-lib"].issym()
    assert members["lib"].isdir()
    assert members["run.sh"].mode & 0o777 == 0o755
    assert members["app.py"].uid == 0
    assert members["app.py"].uname == ""


def test_tarball_holds_file_contents(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    write_source_tarball(_source_tree(tmp_path), buffer)
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue()), mode="r:gz") as archive:
        extracted = archive.extractfile("lib/deep/util.py")
        assert extracted is not None
        assert extracted.read() == b"X = 1\n"


def test_tarball_skips_fifos_and_sockets(tmp_path: Path) -> None:
    app = _source_tree(tmp_path)
    os.mkfifo(app / "a-fifo")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(app / "a-socket"))
        buffer = io.BytesIO()
        write_source_tarball(app, buffer)
    finally:
        listener.close()
    members = _members(buffer.getvalue())
    assert "a-fifo" not in members
    assert "a-socket" not in members
    assert "app.py" in members


def test_deploy_streams_header_then_chunks_and_reports_the_release(
    cli: Cli, platform: FakePlatform, tmp_path: Path
) -> None:
    app = _source_tree(tmp_path)
    # Incompressible content so the tarball spans several 256 KiB chunks.
    (app / "blob.bin").write_bytes(os.urandom(CHUNK_SIZE * 2 + 1000))
    result = cli.run("deploy", "-a", "demo", str(app))
    assert result.status == 0, result.err
    assert result.out == (
        "-----> Python app detected\n-----> Installing requirements\n-----> Done\n"
        "       Released v5\n"
    )
    header = platform.calls_to("Builds.Create")[0].header
    assert header.app == "demo"
    assert header.source_version == "app"
    assert platform.upload_messages[0] == "header"
    assert platform.upload_messages[1:] == ["data"] * (len(platform.upload_messages) - 1)
    assert len(platform.upload_messages) - 1 >= 3
    members = _members(bytes(platform.uploaded_tarball))
    assert "blob.bin" in members
    assert ".git" not in members


def test_deploy_of_a_repo_names_its_commit(cli: Cli, platform: FakePlatform) -> None:
    cli.git("init", "-q")
    cli.git("remote", "add", "waka", "http://127.0.0.1:7401/demo.git")
    (cli.cwd / "Procfile").write_text("web: python app.py\n")
    cli.git("add", "Procfile")
    cli.git("commit", "-q", "-m", "first")
    commit = cli.git("rev-parse", "HEAD")
    assert cli.run("deploy").status == 0
    header = platform.calls_to("Builds.Create")[0].header
    assert (header.app, header.source_version) == ("demo", commit)
    assert sorted(_members(bytes(platform.uploaded_tarball))) == ["Procfile"]


def test_deploy_sends_a_given_tarball_as_it_is(
    cli: Cli, platform: FakePlatform, tmp_path: Path
) -> None:
    tarball = tmp_path / "release.tgz"
    buffer = io.BytesIO()
    write_source_tarball(_source_tree(tmp_path), buffer)
    tarball.write_bytes(buffer.getvalue())
    assert cli.run("deploy", "-a", "demo", str(tarball)).status == 0
    assert bytes(platform.uploaded_tarball) == tarball.read_bytes()
    assert platform.calls_to("Builds.Create")[0].header.source_version == "release.tgz"


def test_a_failed_build_exits_nonzero_with_its_error(cli: Cli, platform: FakePlatform) -> None:
    platform.build_release = 0
    platform.build_error = "no buildpack detected this app"
    (cli.cwd / "app.py").write_text("")
    result = cli.run("deploy", "-a", "demo")
    assert result.status == 1
    assert "-----> Done\n" in result.out
    assert "Released" not in result.out
    assert result.err == "error: build b-new failed: no buildpack detected this app\n"


def test_deploy_of_something_else_says_what_it_takes(cli: Cli) -> None:
    (cli.cwd / "notes.txt").write_text("")
    result = cli.run("deploy", "-a", "demo", "notes.txt")
    assert result.status == 1
    assert "is neither a directory nor a .tar.gz/.tgz tarball" in result.err
    missing = cli.run("deploy", "-a", "demo", "nowhere")
    assert (missing.status, missing.err) == (1, f"error: {cli.cwd / 'nowhere'} does not exist\n")
