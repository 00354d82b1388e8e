import hashlib
import io
import tarfile

import pytest

from waka.controller._blobs import BlobStore, check_source_tarball
from waka.controller._errors import InvalidInput


def test_upload_with_matching_checksum_is_stored(tmp_path):
    store = BlobStore(tmp_path, kind="slug", suffix=".tgz")
    data = b"slug bytes" * 1000
    upload = store.begin()
    upload.write(data)
    sha = upload.finish(hashlib.sha256(data).hexdigest(), len(data))
    assert store.path(sha).read_bytes() == data


def test_slug_whose_checksum_does_not_match_stores_nothing(tmp_path):
    store = BlobStore(tmp_path, kind="slug", suffix=".tgz")
    upload = store.begin()
    upload.write(b"tampered")
    with pytest.raises(InvalidInput, match="slug checksum mismatch"):
        upload.finish("0" * 64, 8)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_size_mismatch_stores_nothing(tmp_path):
    store = BlobStore(tmp_path, kind="slug", suffix=".tgz")
    upload = store.begin()
    upload.write(b"abc")
    with pytest.raises(InvalidInput, match="size mismatch"):
        upload.finish(hashlib.sha256(b"abc").hexdigest(), 4)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_not_a_sha256_is_refused(tmp_path):
    store = BlobStore(tmp_path, kind="slug", suffix=".tgz")
    with pytest.raises(InvalidInput, match="not a sha256"):
        store.path("../../etc/passwd")


def tarball(tmp_path, add):
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def add_file(tar, name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def test_a_clean_source_tarball_is_accepted(tmp_path):
    path = tarball(tmp_path, lambda tar: (add_file(tar, "app.py"), add_file(tar, "dir/Procfile")))
    assert check_source_tarball(path) == 2


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda tar: add_file(tar, "/etc/evil"), "/etc/evil"),
        (lambda tar: add_file(tar, "../escape"), "../escape"),
        (lambda tar: add_file(tar, "a/../../escape"), "a/../../escape"),
        (
            lambda tar: add_file(tar, "link", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
            "link",
        ),
        (lambda tar: add_file(tar, "dev", b"", type=tarfile.CHRTYPE), "dev"),
    ],
)
def test_source_tarball_with_unsafe_entry_is_refused_naming_it(tmp_path, build, fragment):
    with pytest.raises(InvalidInput, match="unsafe entry") as caught:
        check_source_tarball(tarball(tmp_path, build))
    assert fragment in str(caught.value)


def test_garbage_is_not_a_tarball(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"definitely not gzip")
    with pytest.raises(InvalidInput, match="not a readable tar archive"):
        check_source_tarball(path)
