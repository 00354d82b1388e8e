from __future__ import annotations

import os
from pathlib import Path

import pytest

from waka.agent import _slugs
from waka.agent._slugs import SlugCache

SHA = "ab" * 32


def _build(tmp_path: Path, name: str, text: str) -> Path:
    build = tmp_path / name
    (build / "bin").mkdir(parents=True)
    (build / "bin" / "app").write_text(text)
    return build


def test_a_build_is_kept_as_the_unpacked_slug(tmp_path: Path):
    cache = SlugCache(tmp_path / "slugs", lambda: None)
    cache.adopt_build(SHA, _build(tmp_path, "build", "one"), os.getuid())
    assert (cache.path(SHA) / "bin" / "app").read_text() == "one"


def test_a_second_build_of_the_same_slug_finishing_at_once_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = SlugCache(tmp_path / "slugs", lambda: None)
    first = _build(tmp_path, "first", "same")
    second = _build(tmp_path, "second", "same")

    # The other build is renamed into place after this one checked and before it renames.
    def other_build_lands(path: Path, uid: int) -> None:
        os.rename(first, cache.path(SHA))

    monkeypatch.setattr(_slugs, "chown_tree", other_build_lands)
    cache.adopt_build(SHA, second, os.getuid())
    assert (cache.path(SHA) / "bin" / "app").read_text() == "same"
    assert not second.exists(), "the losing build's tree was left behind"


def test_other_rename_errors_still_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = SlugCache(tmp_path / "slugs", lambda: None)
    monkeypatch.setattr(_slugs, "chown_tree", lambda path, uid: None)
    with pytest.raises(FileNotFoundError):
        cache.adopt_build(SHA, tmp_path / "missing", os.getuid())
