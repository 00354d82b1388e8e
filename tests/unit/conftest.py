"""Fixtures shared by the CLI's unit tests: a fake controller and a CLI pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_fakes import Cli, FakePlatform, serving


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with serving(FakePlatform.with_sample_data()) as fake:
        yield fake


@pytest.fixture
def cli(platform: FakePlatform, tmp_path: Path) -> Cli:
    return Cli.against(platform, tmp_path)
