"""The built-in buildpacks, run for real on the host the way the agent calls them.

Each test runs bin/detect, bin/compile or bin/release as a process in temporary directories.
Builds install from PyPI with the real uv; one cold and one warm build of examples/python-flask
are shared by the whole module.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import uv

import waka.buildpacks

BUILDPACKS = Path(waka.buildpacks.__file__).resolve().parent
PYTHON = BUILDPACKS / "python"
PROCFILE = BUILDPACKS / "procfile"
REPO = Path(__file__).resolve().parents[2]
FLASK_EXAMPLE = REPO / "examples" / "python-flask"
UV_PROJECT = REPO / "tests" / "fixtures" / "buildpacks" / "uv-project"
SYSTEM_PATH = "/usr/bin:/bin"
BUILD_TIMEOUT = 180

# What a previous local run may have left in the example; never part of an app's source.
BUILD_LEFTOVERS = shutil.ignore_patterns(".venv", ".profile.d", "__pycache__", ".gunicorn")


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(argv: list[str | Path], env: Mapping[str, str], merge: bool = False) -> Finished:
    """Runs a command in its own session so a timeout kills installers it started too."""
    with subprocess.Popen(
        [str(arg) for arg in argv],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return Finished(proc.returncode, stdout, stderr or "")


def build_env(app: Path, path: str) -> dict[str, str]:
    # What the agent's build sandbox provides, minus the sandbox.
    return {"PATH": path, "HOME": str(app), "STACK": "host", "SOURCE_VERSION": "0" * 40}


def detect(buildpack: Path, app: Path) -> Finished:
    return run([buildpack / "bin" / "detect", app], build_env(app, SYSTEM_PATH))


def release(buildpack: Path, app: Path) -> Finished:
    return run([buildpack / "bin" / "release", app], build_env(app, SYSTEM_PATH))


def compile_app(
    app: Path,
    cache: Path,
    path: str,
    env_dir: Path | None = None,
    buildpack: Path = PYTHON,
    extra_env: Mapping[str, str] | None = None,
) -> Finished:
    """Runs bin/compile with stdout and stderr merged, as a build log shows them."""
    if env_dir is None:
        env_dir = app.parent / "env"
        env_dir.mkdir(exist_ok=True)
    env = build_env(app, path) | dict(extra_env or {})
    return run([buildpack / "bin" / "compile", app, cache, env_dir], env, merge=True)


def make_app(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)
    return directory


def fresh_checkout(app: Path) -> None:
    """Drops what a build added, like the next build's clean checkout at the same path."""
    shutil.rmtree(app / ".venv", ignore_errors=True)
    shutil.rmtree(app / ".profile.d", ignore_errors=True)


def set_greeting(app: Path, greeting: str) -> None:
    source = app / "app.py"
    text, count = re.subn(
        r'^GREETING = ".*"$', f"GREETING = {greeting!r}", source.read_text(), flags=re.M
    )
    assert count == 1, "examples/python-flask/app.py must keep a one-line GREETING constant"
    source.write_text(text)


def cache_entries(cache: Path) -> list[str]:
    venvs = cache / "python" / "venvs"
    return sorted(p.name for p in venvs.iterdir()) if venvs.exists() else []


def parse_release(text: str) -> dict[str, str]:
    """The YAML subset bin/release may print; returns the default process types."""
    lines = text.splitlines()
    if lines == ["--- {}"]:
        return {}
    assert lines[:2] == ["---", "default_process_types:"], text
    types = {}
    for line in lines[2:]:
        match = re.fullmatch(r"  ([A-Za-z0-9_-]+): (\S.*)", line)
        assert match, f"not a process type line: {line!r}"
        types[match[1]] = match[2]
    assert types, text
    return types


def stack_python() -> tuple[int, int, int]:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    )
    major, minor, patch = (int(part) for part in out.stdout.split())
    return major, minor, patch


def stack_minor_versions() -> list[str]:
    return sorted(
        p.name.removeprefix("python")
        for p in Path("/usr/bin").glob("python3.*")
        if re.fullmatch(r"python3\.\d+", p.name)
    )


def write_wheel(directory: Path, name: str = "waka_local_probe", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so a local-path requirement installs without a build step."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: waka-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, content in files.items():
        digest = hashlib.sha256(content.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={encoded},{len(content.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


class LineWatcher:
    """Collects a process's output lines on a thread, so tests can wait for one with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._incoming: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._incoming.put(line.rstrip("\n"))
        self._incoming.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if match := re.search(pattern, line):
                    return match
            seen = len(self.lines)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            try:
                line = self._incoming.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)


# ---------------------------------------------------------------------------------------------
# Shared builds


@pytest.fixture(scope="module")
def tools_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH for builds: the host's system dirs plus uv, as the agent mounts it in the sandbox."""
    tools = tmp_path_factory.mktemp("tools")
    (tools / "uv").symlink_to(uv.find_uv_bin())
    return f"{tools}:{SYSTEM_PATH}"


@dataclass(frozen=True)
class FlaskBuilds:
    cold_app: Path  # built first, then moved aside so the warm build can use the same path
    cold: Finished
    warm_app: Path  # the same source with a new GREETING, built at the cold build's path
    warm: Finished
    uv_calls: Path  # written by the uv stand-in if the warm build ever ran the installer
    built_at: Path


@pytest.fixture(scope="module")
def flask_builds(tmp_path_factory: pytest.TempPathFactory, tools_path: str) -> FlaskBuilds:
    root = tmp_path_factory.mktemp("flask")
    app, cache = root / "app", root / "cache"
    shutil.copytree(FLASK_EXAMPLE, app, ignore=BUILD_LEFTOVERS)
    cold = compile_app(app, cache, tools_path)
    assert cold.returncode == 0, cold.output

    cold_app = root / "cold-app"
    app.rename(cold_app)
    shutil.copytree(FLASK_EXAMPLE, app, ignore=BUILD_LEFTOVERS)
    set_greeting(app, "Hello from the warm build!")

    # A uv that refuses to work: the warm build must not need the installer at all.
    refusing = root / "refusing-uv"
    refusing.mkdir()
    uv_calls = root / "uv-calls"
    (refusing / "uv").write_text(
        f'#!/bin/sh\necho "$@" >> {uv_calls}\necho "uv must not run on a warm build" >&2\nexit 97\n'
    )
    (refusing / "uv").chmod(0o755)
    warm = compile_app(app, cache, f"{refusing}:{SYSTEM_PATH}")
    return FlaskBuilds(cold_app, cold, app, warm, uv_calls, built_at=app)


# ---------------------------------------------------------------------------------------------
# detect


@pytest.mark.parametrize(
    "manifest", ["requirements.txt", "setup.py", "pyproject.toml", "Pipfile", "Pipfile.lock"]
)
def test_python_detect_claims_an_app_with_a_python_manifest(tmp_path: Path, manifest: str):
    app = make_app(tmp_path / "app", {manifest: ""})
    result = detect(PYTHON, app)
    assert (result.returncode, result.stdout) == (0, "Python\n")


@pytest.mark.parametrize(
    "files", [{}, {"Procfile": "web: ./server\n"}, {"package.json": "{}", "main.py": ""}]
)
def test_failed_python_detect_lists_what_was_looked_for(tmp_path: Path, files: dict[str, str]):
    app = make_app(tmp_path / "app", files)
    result = detect(PYTHON, app)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no requirements.txt, setup.py, pyproject.toml or Pipfile" in result.stderr


def test_procfile_detect_claims_an_app_with_a_procfile(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Procfile": "web: ./server\n"})
    result = detect(PROCFILE, app)
    assert (result.returncode, result.stdout) == (0, "Procfile\n")


def test_failed_procfile_detect_says_there_is_no_procfile(tmp_path: Path):
    app = make_app(tmp_path / "app", {"procfile.txt": "web: ./server\n"})
    result = detect(PROCFILE, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no Procfile" in result.stderr


@pytest.mark.parametrize("buildpack", [PYTHON, PROCFILE], ids=["python", "procfile"])
@pytest.mark.parametrize("script", ["detect", "compile", "release"])
def test_scripts_called_without_arguments_print_their_usage(buildpack: Path, script: str):
    result = run([buildpack / "bin" / script], {"PATH": SYSTEM_PATH})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage:" in result.stderr


# ---------------------------------------------------------------------------------------------
# Procfile buildpack


def test_procfile_compile_announces_itself_and_leaves_the_app_alone(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Procfile": "web: ./server\n", "server": "#!/bin/sh\n"})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=PROCFILE)
    assert result.returncode == 0, result.output
    assert result.output.splitlines()[0] == "-----> Procfile app detected"
    assert sorted(p.name for p in app.iterdir()) == ["Procfile", "server"]


def test_procfile_release_has_no_default_process_types(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Procfile": "web: ./server\n"})
    result = release(PROCFILE, app)
    assert (result.returncode, result.stdout) == (0, "--- {}\n")


# ---------------------------------------------------------------------------------------------
# Python compile: the Flask example, cold and warm


def test_cold_build_makes_a_venv_that_imports_flask_and_gunicorn(flask_builds: FlaskBuilds):
    python = flask_builds.cold_app / ".venv" / "bin" / "python"
    result = run(
        [python, "-c", "import flask, gunicorn; print(flask.__file__)"], {"PATH": SYSTEM_PATH}
    )
    assert result.returncode == 0, result.output
    assert result.stdout.startswith(str(flask_builds.cold_app / ".venv" / "lib"))


def test_cold_build_installs_with_uv_and_reports_heroku_style(flask_builds: FlaskBuilds):
    lines = flask_builds.cold.output.splitlines()
    assert lines[0] == "-----> Python app detected"
    assert "       Installing requirements with uv" in lines
    assert any(re.search(r"\+ flask==", line) for line in lines), flask_builds.cold.output
    for line in lines:
        assert re.match(r"(-----> |       | !     )", line), f"unindented output: {line!r}"


def test_compile_adds_only_the_venv_and_the_profile_script_to_the_app(flask_builds: FlaskBuilds):
    source = {p.name for p in FLASK_EXAMPLE.iterdir()} - {".venv", ".profile.d", "__pycache__"}
    built = {p.name for p in flask_builds.cold_app.iterdir()}
    assert built == source | {".venv", ".profile.d"}
    assert [p.name for p in (flask_builds.cold_app / ".profile.d").iterdir()] == ["python.sh"]


def test_profile_script_uses_home_not_the_build_path(flask_builds: FlaskBuilds):
    text = (flask_builds.cold_app / ".profile.d" / "python.sh").read_text()
    assert "$HOME/.venv/bin" in text
    assert str(flask_builds.built_at) not in text


def source_profile_and_report(app: Path, extra_env: Mapping[str, str]) -> list[str]:
    script = (
        'for f in "$HOME"/.profile.d/*.sh; do . "$f"; done; '
        'command -v python; echo "LANG=$LANG"; echo "PYTHONUNBUFFERED=$PYTHONUNBUFFERED"; '
        'echo "PYTHONHOME=${PYTHONHOME-unset}"'
    )
    env = {"HOME": str(app), "PATH": SYSTEM_PATH} | dict(extra_env)
    result = run(["bash", "-c", script], env)
    assert result.returncode == 0, result.output
    return result.stdout.splitlines()


def test_profile_script_puts_the_venv_first_with_defaults(flask_builds: FlaskBuilds):
    app = flask_builds.cold_app
    assert source_profile_and_report(app, {"PYTHONHOME": "/nonexistent"}) == [
        f"{app}/.venv/bin/python",
        "LANG=C.UTF-8",
        "PYTHONUNBUFFERED=1",
        "PYTHONHOME=unset",
    ]


def test_profile_script_lets_config_vars_win(flask_builds: FlaskBuilds):
    config = {"LANG": "fr_FR.UTF-8", "PYTHONUNBUFFERED": "0"}
    report = source_profile_and_report(flask_builds.cold_app, config)
    assert report[1:3] == ["LANG=fr_FR.UTF-8", "PYTHONUNBUFFERED=0"]


def test_warm_build_restores_the_cached_venv_without_running_uv(flask_builds: FlaskBuilds):
    warm = flask_builds.warm
    assert warm.returncode == 0, warm.output
    assert "restored the virtualenv from the build cache" in warm.output
    assert not flask_builds.uv_calls.exists(), flask_builds.uv_calls.read_text()
    assert (flask_builds.warm_app / ".profile.d" / "python.sh").is_file()


def test_restored_flask_app_serves_its_greeting_and_release_mark(flask_builds: FlaskBuilds):
    app = flask_builds.warm_app
    # How a dyno starts it (profile scripts, then the command under bash), bound to loopback.
    command = (
        'for f in "$HOME"/.profile.d/*.sh; do . "$f"; done; '
        "exec gunicorn --bind 127.0.0.1:0 --workers 2 --no-control-socket app:app"
    )
    env = {"HOME": str(app), "PATH": SYSTEM_PATH, "RELEASE_MARK": "v42"}
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = LineWatcher(proc.stdout)
        port = int(output.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[1])
        output.wait_for(r"hello-flask: worker \d+ started")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            body = response.read().decode()
        assert body == "Hello from the warm build! release=v42\n"
        output.wait_for(r"hello-flask: served / by worker \d+")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def test_flask_example_procfile_binds_port_on_all_interfaces():
    procfile = (FLASK_EXAMPLE / "Procfile").read_text()
    assert re.fullmatch(r"web: gunicorn --bind 0\.0\.0\.0:\$PORT .*app:app\n", procfile)


def test_flask_example_pins_flask_and_gunicorn():
    pinned = (FLASK_EXAMPLE / "requirements.txt").read_text().split()
    assert {line.split("==")[0] for line in pinned} == {"flask", "gunicorn"}
    assert all(re.fullmatch(r"[a-z]+==\d+(\.\d+)+", line) for line in pinned)


# ---------------------------------------------------------------------------------------------
# Python compile: the cache key


def test_changed_included_requirements_miss_the_cache_and_replace_its_entry(
    tmp_path: Path, tools_path: str
):
    app = make_app(tmp_path / "app", {"requirements.txt": "-r base.txt\n", "base.txt": "# v1\n"})
    cache = tmp_path / "cache"
    first = compile_app(app, cache, tools_path)
    assert first.returncode == 0, first.output
    assert "Saved the virtualenv to the build cache" in first.output
    first_entries = cache_entries(cache)

    fresh_checkout(app)
    same = compile_app(app, cache, tools_path)
    assert "restored the virtualenv from the build cache" in same.output

    fresh_checkout(app)
    (app / "base.txt").write_text("# v2\n")
    changed = compile_app(app, cache, tools_path)
    assert changed.returncode == 0, changed.output
    assert "Installing requirements with uv" in changed.output
    assert len(cache_entries(cache)) == 1
    assert cache_entries(cache) != first_entries


def test_requirements_that_install_app_paths_are_never_cached(tmp_path: Path, tools_path: str):
    app = tmp_path / "app"
    wheel = write_wheel(app / "wheels")
    (app / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    cache = tmp_path / "cache"
    for _ in range(2):
        fresh_checkout(app)
        result = compile_app(app, cache, tools_path)
        assert result.returncode == 0, result.output
        assert "Installing requirements with uv" in result.output
        assert "Not caching the virtualenv" in result.output
    probe = run([app / ".venv/bin/python", "-c", "import waka_local_probe"], {})
    assert probe.returncode == 0, probe.output
    assert cache_entries(cache) == []


# ---------------------------------------------------------------------------------------------
# Python compile: failures and versions


def test_missing_requirement_fails_the_build_with_uvs_error(tmp_path: Path, tools_path: str):
    app = make_app(
        tmp_path / "app", {"requirements.txt": "this-package-does-not-exist-waka==1.0\n"}
    )
    cache = tmp_path / "cache"
    result = compile_app(app, cache, tools_path)
    assert result.returncode != 0
    # uv's own explanation, indented under the step, then the buildpack's verdict.
    assert re.search(r"^       .*this-package-does-not-exist-waka.*not found", result.output, re.M)
    assert "failed (exit status" in result.output
    assert cache_entries(cache) == []


@pytest.mark.parametrize(
    ("file", "content", "asked"),
    [
        (".python-version", "3.9\n", "3.9"),
        (".python-version", "# pinned\n3.4.10\n", "3.4.10"),
        ("runtime.txt", "python-2.7.18\n", "2.7.18"),
    ],
)
def test_python_version_the_stack_lacks_fails_listing_what_it_has(
    tmp_path: Path, tools_path: str, file: str, content: str, asked: str
):
    app = make_app(tmp_path / "app", {"requirements.txt": "", file: content})
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 1
    assert f"{file} asks for Python {asked}, but this stack provides only" in result.output
    available = stack_minor_versions()
    assert available
    for version in available:
        assert version in result.output


def test_unreadable_python_version_fails_naming_the_file(tmp_path: Path, tools_path: str):
    app = make_app(tmp_path / "app", {"requirements.txt": "", ".python-version": "latest\n"})
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 1
    assert ".python-version asks for Python 'latest'" in result.output


def test_same_minor_with_another_patch_warns_and_builds(tmp_path: Path, tools_path: str):
    major, minor, patch = stack_python()
    asked = f"{major}.{minor}.{patch + 1}"
    app = make_app(tmp_path / "app", {"requirements.txt": "", "runtime.txt": f"python-{asked}\n"})
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 0, result.output
    assert f"Warning: runtime.txt asks for Python {asked}" in result.output
    assert f"Using Python {major}.{minor}.{patch} (/usr/bin/python{major}.{minor}" in result.output


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"Pipfile": "[packages]\n"}, "Pipfile is not supported yet"),
        ({"Pipfile.lock": "{}"}, "Pipfile is not supported yet"),
        ({"setup.py": "raise SystemExit\n"}, "setup.py is not supported yet"),
        ({"pyproject.toml": "[project]\n"}, "pyproject.toml without uv.lock is not supported yet"),
    ],
)
def test_detected_but_unsupported_layouts_fail_naming_the_file(
    tmp_path: Path, tools_path: str, files: dict[str, str], named: str
):
    app = make_app(tmp_path / "app", files)
    assert detect(PYTHON, app).returncode == 0
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 1
    assert named in result.output


def test_config_vars_are_not_exported_into_the_build(tmp_path: Path, tools_path: str):
    app = make_app(tmp_path / "app", {"requirements.txt": ""})
    env_dir = make_app(
        tmp_path / "env",
        {"PATH": "/nonexistent", "PYTHONHOME": "/nonexistent", "UV_PYTHON": "/nonexistent"},
    )
    result = compile_app(app, tmp_path / "cache", tools_path, env_dir=env_dir)
    assert result.returncode == 0, result.output


def test_package_index_config_vars_reach_the_installer(tmp_path: Path, tools_path: str):
    app = make_app(tmp_path / "app", {"requirements.txt": "six\n"})
    # A closed loopback port: the install must fail trying to reach the configured index.
    env_dir = make_app(tmp_path / "env", {"UV_INDEX_URL": "http://127.0.0.1:9/simple"})
    result = compile_app(
        app, tmp_path / "cache", tools_path, env_dir=env_dir, extra_env={"UV_HTTP_RETRIES": "0"}
    )
    assert result.returncode != 0
    assert "127.0.0.1:9" in result.output


# ---------------------------------------------------------------------------------------------
# Python compile: other installers


def test_uv_lock_project_syncs_without_dev_dependencies(tmp_path: Path, tools_path: str):
    app = tmp_path / "app"
    shutil.copytree(UV_PROJECT, app)
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 0, result.output
    assert "uv sync" in result.output
    python = app / ".venv" / "bin" / "python"
    found = "import importlib.util as u, sys; print(*(bool(u.find_spec(m)) for m in sys.argv[1:]))"
    probe = run([python, "-c", found, "itsdangerous", "six"], {})
    assert probe.stdout == "True False\n", probe.output


def test_without_uv_the_build_falls_back_to_venv_and_pip(tmp_path: Path):
    if shutil.which("uv", path=SYSTEM_PATH):
        pytest.fail(f"uv is installed in {SYSTEM_PATH}: this test needs a PATH without it")
    app = make_app(tmp_path / "app", {"requirements.txt": "itsdangerous==2.2.0\n"})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH)
    assert result.returncode == 0, result.output
    assert "Installing requirements with pip (uv is not on PATH)" in result.output
    probe = run([app / ".venv/bin/python", "-c", "import itsdangerous"], {})
    assert probe.returncode == 0, probe.output


# ---------------------------------------------------------------------------------------------
# Python compile: Django


DJANGO_STANDIN = {
    "requirements.txt": "",
    # An importable `django` is all the buildpack looks for; this one records the call instead.
    "django/__init__.py": "",
    "manage.py": (
        "import os, pathlib, sys\n"
        "pathlib.Path('collected').write_text(\n"
        "    ' '.join(sys.argv[1:]) + f\" key={os.environ.get('SECRET_KEY')}\"\n"
        "    + f\" pythonpath={os.environ.get('PYTHONPATH')}\"\n"
        ")\n"
    ),
}


def test_django_app_gets_collectstatic_with_its_config_vars(tmp_path: Path, tools_path: str):
    app = make_app(tmp_path / "app", DJANGO_STANDIN)
    env_dir = make_app(tmp_path / "env", {"SECRET_KEY": "s3cret", "PYTHONPATH": "/nonexistent"})
    result = compile_app(app, tmp_path / "cache", tools_path, env_dir=env_dir)
    assert result.returncode == 0, result.output
    assert "python manage.py collectstatic --noinput" in result.output
    assert (app / "collected").read_text() == "collectstatic --noinput key=s3cret pythonpath=None"


def test_disable_collectstatic_skips_it(tmp_path: Path, tools_path: str):
    app = make_app(tmp_path / "app", DJANGO_STANDIN)
    env_dir = make_app(tmp_path / "env", {"DISABLE_COLLECTSTATIC": "1"})
    result = compile_app(app, tmp_path / "cache", tools_path, env_dir=env_dir)
    assert result.returncode == 0, result.output
    assert "Skipping collectstatic" in result.output
    assert not (app / "collected").exists()


def test_failing_collectstatic_fails_the_build_with_its_output(tmp_path: Path, tools_path: str):
    files = DJANGO_STANDIN | {"manage.py": "raise SystemExit('settings are broken')\n"}
    app = make_app(tmp_path / "app", files)
    result = compile_app(app, tmp_path / "cache", tools_path)
    assert result.returncode == 1
    assert "       settings are broken" in result.output
    assert "DISABLE_COLLECTSTATIC" in result.output


# ---------------------------------------------------------------------------------------------
# Python release


FAKE_UV_LOCK_WITH_GUNICORN = '[[package]]\nname = "gunicorn"\nversion = "27.0.1"\n'


@pytest.mark.parametrize(
    ("files", "web"),
    [
        ({"requirements.txt": "flask\ngunicorn==27.0.1\n", "app.py": ""}, "gunicorn app:app"),
        ({"requirements.txt": "Gunicorn[gevent]>=22\n", "app.py": ""}, "gunicorn app:app"),
        ({"requirements.txt": "-r base.txt\n", "base.txt": "gunicorn\n", "app.py": ""},
         "gunicorn app:app"),
        ({"requirements.txt": "gunicorn\n", "wsgi.py": "application = object()\n"},
         "gunicorn wsgi:application"),
        ({"requirements.txt": "gunicorn\n", "wsgi.py": "from app import app\n", "app.py": ""},
         "gunicorn wsgi:app"),
        ({"pyproject.toml": "", "uv.lock": FAKE_UV_LOCK_WITH_GUNICORN, "app.py": ""},
         "gunicorn app:app"),
        ({"requirements.txt": "flask\n", "app.py": ""}, None),
        ({"requirements.txt": "# gunicorn\nflask\n", "app.py": ""}, None),
        ({"requirements.txt": "gunicorn-extras\n", "app.py": ""}, None),
        ({"requirements.txt": "gunicorn\n", "server.py": ""}, None),
    ],
    ids=[
        "pinned", "extras-and-case", "included-file", "wsgi-application", "wsgi-app", "uv-lock",
        "no-gunicorn", "commented-out", "longer-name", "no-obvious-module",
    ],
)  # fmt: skip
def test_release_offers_gunicorn_only_for_an_obvious_wsgi_module(
    tmp_path: Path, files: dict[str, str], web: str | None
):
    app = make_app(tmp_path / "app", files)
    result = release(PYTHON, app)
    assert result.returncode == 0, result.stderr
    assert parse_release(result.stdout) == ({"web": web} if web else {})


def test_release_of_the_flask_example_offers_gunicorn():
    result = release(PYTHON, FLASK_EXAMPLE)
    assert result.stdout == "---\ndefault_process_types:\n  web: gunicorn app:app\n"
