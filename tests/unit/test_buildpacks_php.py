"""The PHP buildpack, run for real on the host with the stack's PHP and Composer (Debian php-cli,
composer). Packagist is not reachable from builders: the example has no package dependencies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_buildpacks import (
    BUILDPACKS,
    REPO,
    SYSTEM_PATH,
    Finished,
    compile_app,
    detect,
    make_app,
    parse_release,
    release,
)
from test_buildpacks_nodejs import copy_app, dyno_log, heroku_style, serve_like_a_dyno

PHP = BUILDPACKS / "php"
EXAMPLE = REPO / "examples" / "php-hello"


@dataclass(frozen=True)
class Builds:
    cold: Finished
    warm_app: Path
    warm: Finished


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("php")
    app, cache = root / "app", root / "cache"
    copy_app(EXAMPLE, app)
    cold = compile_app(app, cache, SYSTEM_PATH, buildpack=PHP)
    assert cold.returncode == 0, cold.output
    app.rename(root / "cold-app")
    copy_app(EXAMPLE, app)
    warm = compile_app(app, cache, SYSTEM_PATH, buildpack=PHP)
    assert warm.returncode == 0, warm.output
    return Builds(cold, app, warm)


@pytest.mark.parametrize("marker", ["composer.json", "index.php", "public/index.php"])
def test_detect_claims_composer_projects_and_plain_php(tmp_path: Path, marker: str):
    app = make_app(tmp_path / "app", {marker: ""})
    result = detect(PHP, app)
    assert (result.returncode, result.stdout) == (0, "PHP\n")


def test_failed_detect_lists_what_it_looked_for(tmp_path: Path):
    app = make_app(tmp_path / "app", {"src/index.php": "", "index.html": ""})
    result = detect(PHP, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no composer.json, index.php or public/index.php" in result.stderr


def test_cold_build_runs_composer_install_without_dev_packages(hello: Builds):
    lines = hello.cold.output.splitlines()
    assert lines[0] == "-----> PHP app detected"
    heroku_style(hello.cold.output)
    assert "       Installing dependencies from lock file" in lines
    assert "       Saved vendor/ to the build cache" in lines
    assert (hello.warm_app / "vendor" / "autoload.php").is_file()


def test_warm_build_restores_vendor_and_only_rewrites_the_autoloader(hello: Builds):
    assert "restored vendor/ from the build cache" in hello.warm.output
    assert "Installing dependencies from lock file" not in hello.warm.output
    assert "Generated optimized autoload files" in hello.warm.output


def test_example_serves_with_the_default_web_process(hello: Builds, tmp_path: Path):
    web = parse_release(release(PHP, hello.warm_app).stdout)["web"]
    assert web == "php -S 0.0.0.0:$PORT -t public"
    with serve_like_a_dyno(hello.warm_app, web, tmp_path) as served:
        status, _, body = served.get("/")
    assert status == 200
    assert body.startswith("Hello from PHP on waka! PHP 8.")
    assert "php-hello: served /" in dyno_log(tmp_path)


def test_unknown_package_fails_with_composers_error(tmp_path: Path):
    composer = {"require": {"waka/no-such-package": "^1.0"}}
    app = make_app(tmp_path / "app", {"composer.json": json.dumps(composer), "index.php": ""})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=PHP)
    assert result.returncode == 1
    # Composer's own words: Packagist is out of reach from the builders here.
    assert re.search(r"^       .*repo\.packagist\.org", result.output, re.M), result.output
    assert "composer install failed (exit status" in result.output


def test_app_without_composer_json_builds_without_composer(tmp_path: Path):
    app = make_app(tmp_path / "app", {"index.php": "<?php echo 'hi';\n"})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=PHP)
    assert result.returncode == 0, result.output
    assert "Composer" not in result.output
    assert not (app / "vendor").exists()
    assert parse_release(release(PHP, app).stdout) == {"web": "php -S 0.0.0.0:$PORT -t ."}
