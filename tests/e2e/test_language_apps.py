"""Each language's example, deployed on a real `waka up` as a user would: `waka deploy`, the
buildpack detected in the build sandbox, the default (or Procfile) web process up, serving HTTP.

The toolchains are the host's (scripts/test-packages lists the Debian packages)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from conftest import Daemon, copy_example

pytestmark = pytest.mark.root

# example, the buildpack's announcement, what the app answers
LANGUAGE_APPS = [
    ("node-express", "Node.js app detected", "Hello from Express on waka! built with Node.js v24."),
    ("go-http", "Go app detected", "Hello from Go on waka! built with go1."),
    ("ruby-rack", "Ruby app detected", "Hello from Ruby on waka! Ruby 3."),
    ("java-http", "Java app detected", "Hello from Java on waka! Java 17"),
    ("php-hello", "PHP app detected", "Hello from PHP on waka! PHP 8."),
    ("static-site", "Static site detected", "Hello from a static site on waka!"),
]


def http_body(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/", timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize(
    ("example", "detected", "answer"), LANGUAGE_APPS, ids=[a[0] for a in LANGUAGE_APPS]
)
def test_language_example_deploys_and_serves(
    shared_waka: Daemon, tmp_path: Path, example: str, detected: str, answer: str
):
    name = example.replace("-", "")[:20]
    app = copy_example(example, tmp_path / example)
    shared_waka.waka("apps:create", name, "--no-remote")
    try:
        deployed = shared_waka.waka("deploy", "-a", name, str(app), timeout=300)
        assert f"-----> {detected}" in deployed.stdout, deployed.stdout
        assert "Released v1" in deployed.stdout, deployed.stdout
        dyno = shared_waka.wait_for_dyno(name, release=1, timeout=90)
        assert dyno["name"] == "web.1"
        assert answer in http_body(dyno["address"])
    finally:
        shared_waka.waka("apps:destroy", name, "--confirm", name, check=False)
