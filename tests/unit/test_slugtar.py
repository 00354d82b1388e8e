import io
import os
import subprocess
import tarfile

import pytest

from waka.agent._slugpack import LayerCache, pack
from waka.agent._slugtar import SlugError, prune, unpack


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


def tree_listing(root):
    result = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = ("link", os.readlink(path))
        elif path.is_file():
            result[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o777)
        else:
            result[rel] = ("dir",)
    return result


def big_tree(root):
    (root / ".venv" / "lib").mkdir(parents=True)
    for i in range(50):
        (root / ".venv" / "lib" / f"mod{i}.py").write_text(f"x = {i}\n" * 100)
    os.symlink("/usr/bin/python3", root / ".venv" / "python")
    (root / "app.py").write_text("print(1)\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)


def test_layered_slug_unpacks_to_the_same_tree_with_any_tar_reader(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    big_tree(build)
    pack(build, tmp_path / "slug.tgz", layers=LayerCache(tmp_path / "layers"), scope="app")
    unpack(tmp_path / "slug.tgz", tmp_path / "out", uid=0)
    assert tree_listing(tmp_path / "out") == tree_listing(build)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "slug.tgz"), "-C", str(gnu)], check=True)
    assert tree_listing(gnu) == tree_listing(build)


def test_unchanged_directory_reuses_its_compressed_layer_and_the_slug_is_identical(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    big_tree(build)
    layers = LayerCache(tmp_path / "layers")
    first = pack(build, tmp_path / "1.tgz", layers=layers, scope="app")
    assert layers.hits == 0
    second = pack(build, tmp_path / "2.tgz", layers=layers, scope="app")
    assert layers.hits == 1
    assert second == first
    assert pack(build, tmp_path / "3.tgz") == first  # the cache changes no byte


def test_a_code_change_reuses_the_layer_and_still_ships_the_change(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    big_tree(build)
    layers = LayerCache(tmp_path / "layers")
    first, _ = pack(build, tmp_path / "1.tgz", layers=layers, scope="app")
    (build / "app.py").write_text("print(2)\n")
    second, _ = pack(build, tmp_path / "2.tgz", layers=layers, scope="app")
    assert layers.hits == 1 and second != first
    unpack(tmp_path / "2.tgz", tmp_path / "out", uid=0)
    assert (tmp_path / "out" / "app.py").read_text() == "print(2)\n"


def test_a_changed_directory_is_packed_again(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    big_tree(build)
    layers = LayerCache(tmp_path / "layers")
    pack(build, tmp_path / "1.tgz", layers=layers, scope="app")
    (build / ".venv" / "lib" / "new.py").write_text("y = 1\n")
    pack(build, tmp_path / "2.tgz", layers=layers, scope="app")
    assert layers.hits == 0
    unpack(tmp_path / "2.tgz", tmp_path / "out", uid=0)
    assert (tmp_path / "out" / ".venv" / "lib" / "new.py").exists()
