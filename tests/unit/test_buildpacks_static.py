"""The static buildpack, run for real on the host with the stack's nginx (Debian nginx): builds
write the configuration from static.json, and the built site is served by a real nginx."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import wait_for
from test_buildpacks import (
    BUILDPACKS,
    REPO,
    SYSTEM_PATH,
    compile_app,
    detect,
    make_app,
    parse_release,
    release,
)
from test_buildpacks_nodejs import copy_app, dyno_log, heroku_style, serve_like_a_dyno

STATIC = BUILDPACKS / "static"
EXAMPLE = REPO / "examples" / "static-site"
WEB = ".heroku/static/start-nginx"


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "nginx_config", STATIC / "lib" / "nginx_config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nginx_config = load_generator()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("static")
    app = copy_app(EXAMPLE, root / "app")
    result = compile_app(app, root / "cache", SYSTEM_PATH, buildpack=STATIC)
    assert result.returncode == 0, result.output
    assert result.output.splitlines()[0] == "-----> Static site detected"
    heroku_style(result.output)
    return app


def test_detect_claims_static_json_or_a_lone_public_index(tmp_path: Path):
    for files in ({"static.json": "{}"}, {"public/index.html": ""}):
        app = make_app(tmp_path / str(len(files)) / next(iter(files)).replace("/", "-"), files)
        assert (detect(STATIC, app).returncode, detect(STATIC, app).stdout) == (0, "Static\n")


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"index.html": ""}, "no static.json or public/index.html"),
        ({"public/index.html": "", "package.json": "{}"}, "package.json says this is not a static"),
        ({"public/index.html": "", "Gemfile": ""}, "Gemfile says this is not a static"),
    ],
    ids=["no-public", "node-app", "ruby-app"],
)
def test_failed_detect_says_why(tmp_path: Path, files: dict[str, str], reason: str):
    app = make_app(tmp_path / "app", files)
    result = detect(STATIC, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert reason in result.stderr


def test_release_starts_nginx_from_the_slug(site: Path):
    assert parse_release(release(STATIC, site).stdout) == {"web": WEB}
    assert (site / WEB).stat().st_mode & 0o111


def test_site_is_served_as_static_json_says(site: Path, tmp_path: Path):
    with serve_like_a_dyno(site, WEB, tmp_path) as served:
        index = served.get("/")
        about = served.get("/docs/about")  # clean_urls: docs/about.html
        css = served.get("/assets/site.css?v=3")
        moved = served.get("/home")
        missing = served.get("/nowhere")
        # The access log reaches the dyno's output (relayed from a FIFO by a process of the
        # dyno's own, so waited for while the dyno runs).
        wait_for(
            lambda: re.search(r'"GET /docs/about HTTP/1\.1" 200', dyno_log(tmp_path)),
            10,
            "the request's access log line in the dyno's output",
        )
    assert index[0] == 200 and "Hello from a static site on waka!" in index[2]
    assert index[1]["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in index[1]
    assert about[0] == 200 and "<h1>About</h1>" in about[2]
    assert css[0] == 200 and css[1]["Cache-Control"] == "public, max-age=31536000, immutable"
    assert css[1]["Content-Type"] == "text/css"
    assert (moved[0], moved[1]["Location"]) == (301, "/")
    assert missing[0] == 404 and "Nothing lives here." in missing[2]


def test_routes_serve_one_page_for_a_whole_tree(tmp_path: Path):
    app = make_app(
        tmp_path / "app",
        {
            "static.json": json.dumps({"root": "dist", "routes": {"/app/**": "app.html"}}),
            "dist/app.html": "the single-page app\n",
            "dist/app/logo.txt": "a real file\n",
        },
    )
    assert compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=STATIC).returncode == 0
    with serve_like_a_dyno(app, WEB, tmp_path / "run") as served:
        routed = served.get("/app/users/42")
        real = served.get("/app/logo.txt")
        outside = served.get("/users/42")
    assert routed[:1] == (200,) and routed[2] == "the single-page app\n"
    assert real[2] == "a real file\n"
    assert outside[0] == 404


def test_rebuild_caches_nothing(tmp_path: Path):
    app = copy_app(EXAMPLE, tmp_path / "app")
    cache = tmp_path / "cache"
    for _ in range(2):
        result = compile_app(app, cache, SYSTEM_PATH, buildpack=STATIC)
        assert result.returncode == 0, result.output
    # Nothing is downloaded or installed: there is nothing to keep between builds.
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"root": "site"}, "root 'site' is not a directory in the app"),
        ({"root": "../etc"}, "root must be a path inside the app"),
        ({"routes": {"app/**": "index.html"}}, "must start with /"),
        ({"redirects": {"/a": {"url": "/b", "status": 200}}}, "is not a redirect"),
        ({"headers": {"/**": {"Bad Name": "x"}}}, "is not valid"),
    ],
    ids=["missing-root", "root-outside", "relative-route", "redirect-status", "header-name"],
)
def test_unservable_static_json_fails_the_build_naming_the_problem(
    tmp_path: Path, config: dict, message: str
):
    app = make_app(
        tmp_path / "app", {"static.json": json.dumps(config), "public/index.html": "<h1>hi</h1>"}
    )
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=STATIC)
    assert result.returncode == 1
    assert message in result.output
    assert "static.json cannot be served as it is" in result.output


def test_unknown_keys_are_reported_not_fatal(tmp_path: Path):
    app = make_app(
        tmp_path / "app", {"static.json": '{"proxies": {}}', "public/index.html": "<h1>hi</h1>"}
    )
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=STATIC)
    assert result.returncode == 0, result.output
    assert "'proxies' is not supported and is ignored" in result.output


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("/", ["/"], ["/a"]),
        ("/assets/*", ["/assets/a.css"], ["/assets/x/a.css", "/assets"]),
        ("/assets/**", ["/assets/a.css", "/assets/x/y.js"], ["/other/a.css"]),
        ("/a.b", ["/a.b"], ["/axb"]),
    ],
)
def test_path_globs_match_like_herokus(glob: str, matches: list[str], misses: list[str]):
    regex = re.compile(nginx_config.glob_to_regex(glob))
    assert all(regex.match(path) for path in matches)
    assert not any(regex.match(path) for path in misses)


def test_header_values_keep_dollar_signs_literal():
    text = nginx_config.render({"headers": {"/**": {"X-Price": "$5"}}}, "public")
    assert '"${dollar}5";' in text
