import io
import os
import tarfile

import pytest

from waka.agent._slugtar import SlugError, pack, prune, unpack


def make_tree(root):
    (root / "app.py").write_text("print('hi')\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", root / ".venv" / "bin" / "python")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "docs").mkdir()
    (root / "docs" / "big.pdf").write_text("x")
    (root / ".slugignore").write_text("# comment\ndocs\n*.log\n")
    (root / "debug.log").write_text("x")


def test_prune_removes_git_and_slugignore_matches(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    make_tree(build)
    removed = prune(build)
    assert sorted(removed) == [".git", "debug.log", "docs"]
    assert (build / "app.py").exists() and not (build / ".git").exists()


def test_slug_round_trip_keeps_absolute_symlinks_and_sets_owner(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    make_tree(build)
    prune(build)
    sha, size = pack(build, tmp_path / "slug.tgz")
    assert len(sha) == 64 and size == (tmp_path / "slug.tgz").stat().st_size
    dest = tmp_path / "unpacked"
    unpack(tmp_path / "slug.tgz", dest, uid=12345)
    assert (dest / "app.py").read_text() == "print('hi')\n"
    assert os.readlink(dest / ".venv" / "bin" / "python") == "/usr/bin/python3"
    assert os.lstat(dest / "app.py").st_uid == 12345
    assert os.lstat(dest / ".venv" / "bin" / "python").st_uid == 12345


def test_same_tree_packs_to_same_checksum_only_if_unchanged(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "a").write_text("1")
    first, _ = pack(build, tmp_path / "1.tgz")
    (build / "a").write_text("2")
    second, _ = pack(build, tmp_path / "2.tgz")
    assert first != second


def evil_slug(tmp_path, members):
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, target, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_entry_written_through_a_symlink_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    slug = evil_slug(
        tmp_path,
        [("link", tarfile.SYMTYPE, str(outside), b""), ("link/owned", tarfile.REGTYPE, "", b"x")],
    )
    with pytest.raises(SlugError, match="goes through a symlink"):
        unpack(slug, tmp_path / "dest", uid=0)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/../../escape"])
def test_entry_escaping_the_slug_is_refused(tmp_path, name):
    slug = evil_slug(tmp_path, [(name, tarfile.REGTYPE, "", b"x")])
    with pytest.raises(SlugError):
        unpack(slug, tmp_path / "dest", uid=0)
    assert not (tmp_path / "escape").exists()
