"""The Go buildpack, run for real on the host with the stack's Go toolchain (Debian golang-go).

Nothing is fetched: the example uses the standard library only and the vendored fixture brings
its dependency along; the module proxy is not reachable from the builders."""

from __future__ import annotations

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

GO = BUILDPACKS / "go"
EXAMPLE = REPO / "examples" / "go-http"
FIXTURES = REPO / "tests" / "fixtures" / "buildpacks"


def files_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Builds:
    cache: Path
    cold: Finished
    cache_after_cold: set[str]
    warm_app: Path
    warm: Finished
    cache_after_warm: set[str]


@pytest.fixture(scope="module")
def go_http(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("go")
    app, cache = root / "app", root / "cache"
    copy_app(EXAMPLE, app)
    cold = compile_app(app, cache, SYSTEM_PATH, buildpack=GO)
    assert cold.returncode == 0, cold.output
    after_cold = files_under(cache / "go" / "build")
    app.rename(root / "cold-app")
    copy_app(EXAMPLE, app)
    warm = compile_app(app, cache, SYSTEM_PATH, buildpack=GO)
    assert warm.returncode == 0, warm.output
    return Builds(cache, cold, after_cold, app, warm, files_under(cache / "go" / "build"))


def test_detect_claims_a_go_module(tmp_path: Path):
    app = make_app(tmp_path / "app", {"go.mod": "module example.com/x\n"})
    result = detect(GO, app)
    assert (result.returncode, result.stdout) == (0, "Go\n")


def test_failed_detect_says_it_looked_for_go_mod(tmp_path: Path):
    app = make_app(tmp_path / "app", {"main.go": "package main\n", "Gopkg.toml": ""})
    result = detect(GO, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no go.mod" in result.stderr


def test_build_puts_every_main_package_into_bin(go_http: Builds):
    lines = go_http.cold.output.splitlines()
    assert lines[0] == "-----> Go app detected"
    heroku_style(go_http.cold.output)
    assert "       Built into bin/: go-http healthcheck" in lines
    assert sorted(p.name for p in (go_http.warm_app / "bin").iterdir()) == [
        "go-http",
        "healthcheck",
    ]
    # The caches stay out of the slug.
    assert not (go_http.warm_app / "go").exists()
    assert (
        (go_http.warm_app / ".profile.d" / "go.sh")
        .read_text()
        .endswith('export PATH="$HOME/bin:$PATH"\n')
    )


def test_warm_build_compiles_nothing_new(go_http: Builds):
    assert go_http.cache_after_cold, "the cold build left nothing in GOCACHE"
    # Every compile result is a new file in GOCACHE: an unchanged module adds none.
    assert go_http.cache_after_warm == go_http.cache_after_cold


def test_built_example_serves_with_the_default_web_process(go_http: Builds, tmp_path: Path):
    web = parse_release(release(GO, go_http.warm_app).stdout)["web"]
    assert web == "bin/go-http"
    with serve_like_a_dyno(go_http.warm_app, web, tmp_path) as served:
        status, _, body = served.get("/")
        health = run([go_http.warm_app / "bin" / "healthcheck"], {"PORT": str(served.port)})
    assert status == 200
    assert body.startswith("Hello from Go on waka! built with go1.")
    assert health.stdout == "ok\n", health.output
    assert "go-http: served /" in dyno_log(tmp_path)


def test_vendored_dependencies_build_without_the_network(tmp_path: Path):
    app = copy_app(FIXTURES / "go-vendored", tmp_path / "app")
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=GO)
    assert result.returncode == 0, result.output
    assert "Using the vendored dependencies (vendor/modules.txt)" in result.output
    assert run([app / "bin" / "vendored"], {}).stdout == "hello from a vendored module\n"
    # Module path example.com/vendored/v2: go names the command "vendored".
    assert parse_release(release(GO, app).stdout) == {"web": "bin/vendored"}


def test_unreachable_dependency_fails_with_gos_error(tmp_path: Path):
    app = make_app(
        tmp_path / "app",
        {
            "go.mod": "module example.com/broken\n\ngo 1.19\n\nrequire example.com/nope v1.0.0\n",
            "main.go": 'package main\n\nimport _ "example.com/nope"\n\nfunc main() {}\n',
        },
    )
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=GO)
    assert result.returncode == 1
    assert "-----> Downloading dependencies" in result.output
    assert "example.com/nope" in result.output
    assert "go mod download failed (exit status 1)" in result.output


def test_compile_error_fails_with_the_compilers_message(tmp_path: Path):
    app = make_app(
        tmp_path / "app",
        {"go.mod": "module example.com/typo\n", "main.go": "package main\n\nfunc main() { x }\n"},
    )
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=GO)
    assert result.returncode == 1
    assert "       ./main.go:3:15: undefined: x" in result.output
    assert "go build failed (exit status" in result.output


@pytest.mark.parametrize(
    ("files", "web"),
    [
        ({"go.mod": "module example.com/web\n", "main.go": "package main\n"}, "bin/web"),
        ({"go.mod": 'module "github.com/a/tool/v3"\n', "x.go": "package  main\n"}, "bin/tool"),
        ({"go.mod": "module solo\n", "main.go": "package main // the app\n"}, "bin/solo"),
        ({"go.mod": "module example.com/lib\n", "lib.go": "package lib\n"}, None),
        ({"go.mod": "module example.com/t\n", "main_test.go": "package main\n"}, None),
        ({"go.mod": "module example.com/cmds\n", "cmd/a/main.go": "package main\n"}, None),
    ],
    ids=["root-main", "major-suffix", "no-domain", "library", "only-tests", "commands-only"],
)
def test_release_offers_the_modules_own_binary_when_the_root_is_main(
    tmp_path: Path, files: dict[str, str], web: str | None
):
    app = make_app(tmp_path / "app", files)
    result = release(GO, app)
    assert result.returncode == 0, result.stderr
    assert parse_release(result.stdout) == ({"web": web} if web else {})
