"""Cold and warm build times and slug sizes of every built-in buildpack's example.

    .venv/bin/python bench/build.py [--runs N] [--only python,nodejs,...]

Each buildpack's bin/compile runs directly on the host (no sandbox), in a fresh copy of its
example. cold: an empty build cache (dependencies and, for Node.js, the runtime are downloaded);
warm: a fresh copy of the same source at the same path, with the cache the cold build left (the
case of a code-only push). slug: the built directory as a gzip -1 tarball, what waka ships.

The baseline, in the same run: the language's own tool doing the same job by hand with its caches
already warm (uv pip install, npm ci, go build, bundle install, mvn package, composer install),
i.e. about the least a warm build could cost without restoring results from a cache.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uv

from waka import buildpacks

REPO = Path(__file__).resolve().parent.parent
BUILDPACKS = Path(buildpacks.__file__).resolve().parent
SYSTEM_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Case:
    buildpack: str
    example: str
    # The by-hand baseline: argv run in a fresh copy of the example, given the warm cache dir.
    baseline: Callable[[Path, Path], list[list[str]]]
    baseline_env: Callable[[Path], dict[str, str]] = lambda cache: {}


def python_baseline(app: Path, cache: Path) -> list[list[str]]:
    return [
        ["uv", "venv", "-q", "--python", "/usr/bin/python3", str(app / ".venv")],
        ["uv", "pip", "install", "-q", "--compile-bytecode", "--python", str(app / ".venv"),
         "-r", "requirements.txt"],
    ]  # fmt: skip


CASES = [
    Case("python", "python-flask", python_baseline,
         lambda cache: {"UV_CACHE_DIR": str(cache / "python" / "uv"), "UV_LINK_MODE": "copy"}),
    Case("nodejs", "node-express", lambda app, cache: [["npm", "ci", "--no-audit", "--no-fund"]],
         lambda cache: {"npm_config_cache": str(cache / "nodejs" / "npm-cache")}),
    Case("go", "go-http",
         lambda app, cache: [["go", "build", "-o", str(app / "bin") + "/", "./..."]],
         lambda cache: {"GOCACHE": str(cache / "go" / "build"),
                        "GOMODCACHE": str(cache / "go" / "mod")}),
    Case("ruby", "ruby-rack", lambda app, cache: [
        ["bundle", "config", "set", "--local", "deployment", "true"],
        ["bundle", "config", "set", "--local", "path", "vendor/bundle"],
        ["bundle", "install"]]),
    Case("java", "java-http", lambda app, cache: [
        ["mvn", "-B", "-q", "-o", "-DskipTests", f"-Dmaven.repo.local={cache}/java/m2",
         "-gs", f"{cache}/java/stack-settings.xml", "package"]]),
    Case("php", "php-hello", lambda app, cache: [
        ["composer", "install", "-q", "--no-dev", "--optimize-autoloader", "--no-interaction"]],
         lambda cache: {"COMPOSER_CACHE_DIR": str(cache / "php" / "composer-cache"),
                        "COMPOSER_HOME": str(cache / "php" / "composer-home"),
                        "COMPOSER_ALLOW_SUPERUSER": "1"}),
    Case("static", "static-site", lambda app, cache: [["cp", "-a", str(app), str(app) + ".copy"]]),
]  # fmt: skip


def tools_path(work: Path) -> str:
    """The host's system dirs plus uv, as the agent's build sandbox has them."""
    tools = work / "tools"
    tools.mkdir(exist_ok=True)
    if not (tools / "uv").exists():
        (tools / "uv").symlink_to(uv.find_uv_bin())
    return f"{tools}:{SYSTEM_PATH}"


def fresh_copy(example: str, app: Path) -> None:
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(REPO / "examples" / example, app, ignore=shutil.ignore_patterns("__pycache__"))


def compile_once(case: Case, app: Path, cache: Path, path: str) -> float:
    env_dir = app.parent / "env"
    env_dir.mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(app), "STACK": "host", "LANG": "C.UTF-8"}
    started = time.monotonic()
    result = subprocess.run(
        [BUILDPACKS / case.buildpack / "bin" / "compile", app, cache, env_dir],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{case.buildpack}: compile failed\n{result.stdout}{result.stderr}")
    return elapsed


def slug_size(app: Path) -> int:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.add(app, arcname=".")
    return buffer.tell()


def baseline_once(case: Case, app: Path, cache: Path, path: str) -> float:
    env = {**os.environ, "PATH": path, "HOME": str(app.parent / "home"), **case.baseline_env(cache)}
    (app.parent / "home").mkdir(exist_ok=True)
    started = time.monotonic()
    for argv in case.baseline(app, cache):
        subprocess.run(argv, cwd=app, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def measure(case: Case, runs: int, work: Path) -> dict[str, list[float]]:
    path = tools_path(work)
    figures: dict[str, list[float]] = {"cold": [], "warm": [], "baseline": [], "slug": []}
    for run in range(runs):
        root = work / f"{case.buildpack}-{run}"
        app, cache = root / "app", root / "cache"
        root.mkdir()
        fresh_copy(case.example, app)
        figures["cold"].append(compile_once(case, app, cache, path))
        fresh_copy(case.example, app)
        figures["warm"].append(compile_once(case, app, cache, path))
        figures["slug"].append(slug_size(app) / 1e6)
        by_hand = root / "by-hand"
        fresh_copy(case.example, by_hand)
        figures["baseline"].append(baseline_once(case, by_hand, cache, path))
        shutil.rmtree(root)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated buildpack names")
    args = parser.parse_args()
    wanted = {name for name in args.only.split(",") if name}
    cases = [c for c in CASES if not wanted or c.buildpack in wanted]
    work = Path(tempfile.mkdtemp(prefix="waka-bench-build-"))
    print(f"{'buildpack':<10} {'example':<14} {'cold s':>8} {'warm s':>8} {'baseline s':>11} "
          f"{'slug MB':>8}   (median of {args.runs})")  # fmt: skip
    try:
        for case in cases:
            figures = measure(case, args.runs, work)
            med = {k: statistics.median(v) for k, v in figures.items()}
            print(
                f"{case.buildpack:<10} {case.example:<14} {med['cold']:>8.2f} {med['warm']:>8.2f} "
                f"{med['baseline']:>11.2f} {med['slug']:>8.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
