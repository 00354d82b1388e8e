"""The Ruby buildpack, run for real on the host with the stack's Ruby and Bundler (Debian ruby,
bundler). rubygems.org is not reachable from builders: the apps here need no gem from it, and
the vendored fixture's gem is built from source into vendor/cache by the test."""

from __future__ import annotations

import shutil
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
    run,
)
from test_buildpacks_nodejs import copy_app, dyno_log, heroku_style, serve_like_a_dyno

RUBY = BUILDPACKS / "ruby"
EXAMPLE = REPO / "examples" / "ruby-rack"
VENDORED = REPO / "tests" / "fixtures" / "buildpacks" / "ruby-vendored"


def gem_build(app: Path) -> None:
    # `gem build` works in the gemspec's directory.
    result = run(
        ["bash", "-c", f"cd {app}/gem-source && gem build waka-greeting.gemspec"],
        {"PATH": SYSTEM_PATH, "HOME": str(app)},
    )
    assert result.returncode == 0, result.output


@dataclass(frozen=True)
class Builds:
    cold: Finished
    warm_app: Path
    warm: Finished


def build_twice(root: Path, make) -> Builds:
    app, cache = root / "app", root / "cache"
    make(app)
    cold = compile_app(app, cache, SYSTEM_PATH, buildpack=RUBY)
    assert cold.returncode == 0, cold.output
    app.rename(root / "cold-app")
    make(app)
    warm = compile_app(app, cache, SYSTEM_PATH, buildpack=RUBY)
    assert warm.returncode == 0, warm.output
    return Builds(cold, app, warm)


def make_vendored(app: Path) -> None:
    copy_app(VENDORED, app)
    gem_build(app)
    (app / "vendor" / "cache").mkdir(parents=True)
    shutil.move(app / "gem-source" / "waka-greeting-1.0.0.gem", app / "vendor" / "cache")


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return build_twice(tmp_path_factory.mktemp("ruby"), lambda app: copy_app(EXAMPLE, app))


@pytest.fixture(scope="module")
def vendored(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return build_twice(tmp_path_factory.mktemp("ruby-vendored"), make_vendored)


def test_detect_claims_an_app_with_a_gemfile(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Gemfile": ""})
    result = detect(RUBY, app)
    assert (result.returncode, result.stdout) == (0, "Ruby\n")


def test_failed_detect_says_it_looked_for_a_gemfile(tmp_path: Path):
    app = make_app(tmp_path / "app", {"app.rb": "", "Rakefile": ""})
    result = detect(RUBY, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no Gemfile" in result.stderr


def test_bundle_is_configured_for_deployment_in_the_app(rack: Builds):
    lines = rack.cold.output.splitlines()
    assert lines[0] == "-----> Ruby app detected"
    heroku_style(rack.cold.output)
    config = (rack.warm_app / ".bundle" / "config").read_text()
    for setting in (
        'BUNDLE_DEPLOYMENT: "true"',
        'BUNDLE_PATH: "vendor/bundle"',
        'BUNDLE_WITHOUT: "development:test"',
    ):
        assert setting in config
    assert "Bundle complete!" in rack.cold.output


def test_vendored_gem_installs_from_vendor_cache_then_comes_from_the_build_cache(
    vendored: Builds,
):
    assert "       Installing waka-greeting 1.0.0" in vendored.cold.output
    assert "Restored vendor/bundle from the build cache" in vendored.warm.output
    # Bundler's own words: it found the gem already installed and installed nothing.
    assert "       Using waka-greeting 1.0.0" in vendored.warm.output
    assert "Installing waka-greeting" not in vendored.warm.output
    assert "Saved vendor/bundle" not in vendored.warm.output  # unchanged: not written again


def test_vendored_gem_loads_under_bundle_exec_like_in_a_dyno(vendored: Builds):
    app = vendored.warm_app
    script = 'for f in "$HOME"/.profile.d/*.sh; do . "$f"; done; bundle exec ruby greet.rb'
    result = run(["bash", "-c", f"cd {app} && {script}"], {"HOME": str(app), "PATH": SYSTEM_PATH})
    assert result.stdout == "hello from a vendored gem\n", result.output


def test_profile_script_sets_production_defaults_using_home(rack: Builds):
    text = (rack.warm_app / ".profile.d" / "ruby.sh").read_text()
    assert 'RACK_ENV="${RACK_ENV:-production}"' in text
    assert str(rack.warm_app) not in text


def test_example_serves_with_its_procfile_command(rack: Builds, tmp_path: Path):
    command = (EXAMPLE / "Procfile").read_text().removeprefix("web: ").strip()
    with serve_like_a_dyno(rack.warm_app, command, tmp_path) as served:
        status, _, body = served.get("/hello")
    assert status == 200
    assert body.startswith("Hello from Ruby on waka! Ruby 3.")
    assert body.endswith("RACK_ENV=production\n")
    assert "ruby-rack: served /hello" in dyno_log(tmp_path)


def test_gem_missing_from_vendor_cache_fails_with_bundlers_error(tmp_path: Path):
    app = copy_app(VENDORED, tmp_path / "app")  # no vendor/cache: the gem must be fetched
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=RUBY)
    assert result.returncode == 1
    assert "rubygems.org" in result.output
    assert "bundle install failed (exit status" in result.output
    assert not (tmp_path / "cache" / "ruby" / "bundle").exists() or not any(
        (tmp_path / "cache" / "ruby" / "bundle").iterdir()
    )


def test_missing_gemfile_lock_fails_naming_it(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Gemfile": 'source "https://rubygems.org"\n'})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=RUBY)
    assert result.returncode == 1
    assert "Gemfile.lock is missing" in result.output


@pytest.mark.parametrize(
    ("files", "web"),
    [
        ({"Gemfile": "", "config.ru": "run App"}, "bundle exec rackup -p $PORT -o 0.0.0.0"),
        (
            {"Gemfile": "", "config.ru": "", "bin/rails": "", "config/application.rb": ""},
            "bin/rails server -p $PORT -b 0.0.0.0 -e $RAILS_ENV",
        ),
        ({"Gemfile": "", "worker.rb": ""}, None),
    ],
    ids=["rack", "rails", "plain-ruby"],
)
def test_release_offers_rackup_or_rails_server(
    tmp_path: Path, files: dict[str, str], web: str | None
):
    app = make_app(tmp_path / "app", files)
    if (app / "bin" / "rails").exists():
        (app / "bin" / "rails").chmod(0o755)
    result = release(RUBY, app)
    assert result.returncode == 0, result.stderr
    assert parse_release(result.stdout) == ({"web": web} if web else {})
