"""Seconds from `git push` to the first HTTP 200 from the new release, for examples/python-flask.

    .venv/bin/python bench/deploy.py [--runs N]

cold: a new app (empty build cache: dependencies come from PyPI); warm: a code-only change to an
app already deployed. The baseline, in the same run: the same app's dependencies installed with
uv into a fresh virtualenv and gunicorn started by hand, to its first 200 (what any deploy must
at least do, cold), and gunicorn alone from an existing virtualenv (the floor of a warm deploy).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _harness import REPO, Waka, start_waka, summary, wait_for

EXAMPLE = REPO / "examples" / "python-flask"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@waka"]


def http_body(address: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=2) as response:
            return response.read().decode() if response.status == 200 else None
    except OSError:
        return None


def make_repo(path: Path, greeting: str) -> Path:
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__"))
    set_greeting(path, greeting)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=path, check=True)
    return path


def set_greeting(path: Path, greeting: str) -> None:
    app = path / "app.py"
    lines = app.read_text().splitlines(keepends=True)
    app.write_text(
        "".join(
            f'GREETING = "{greeting}"\n' if ln.startswith("GREETING = ") else ln for ln in lines
        )
    )


def push_until_served(waka: Waka, app: str, repo: Path, greeting: str) -> float:
    """Times `git push` until the new greeting is served by an up dyno."""
    started = time.monotonic()
    subprocess.run(
        ["git", "push", "-q", "waka", "main"],
        cwd=repo,
        env=waka.env,
        check=True,
        capture_output=True,
    )

    def served() -> bool:
        for dyno in waka.dynos(app):
            if dyno.address and greeting in (http_body(dyno.address) or ""):
                return True
        return False

    wait_for(served, 120, f"{greeting!r} to be served", interval=0.005)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline_gunicorn(venv: Path, app_dir: Path) -> float:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            str(venv / "bin" / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--no-control-socket",
            "app:app",
        ],
        cwd=app_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: http_body(f"127.0.0.1:{port}"), 30, "gunicorn", interval=0.005)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait()


def baselines(runs: int) -> tuple[list[float], list[float]]:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    cold, warm = [], []
    for _ in range(runs):
        work = Path(tempfile.mkdtemp(prefix="waka-bench-baseline-"))
        venv, cache = work / "venv", work / "uv-cache"
        env = {**os.environ, "UV_CACHE_DIR": str(cache), "VIRTUAL_ENV": str(venv)}
        started = time.monotonic()
        subprocess.run(
            [uv, "venv", "-q", "--python", "/usr/bin/python3", str(venv)], env=env, check=True
        )
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--compile-bytecode",
                "-r",
                str(EXAMPLE / "requirements.txt"),
            ],
            env=env,
            check=True,
        )
        install = time.monotonic() - started
        cold.append(install + baseline_gunicorn(venv, EXAMPLE))
        warm.append(baseline_gunicorn(venv, EXAMPLE))
        shutil.rmtree(work)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    waka = start_waka()
    work = Path(tempfile.mkdtemp(prefix="waka-bench-deploy-"))
    cold, warm = [], []
    try:
        for i in range(args.runs):
            app = f"cold-{i}"
            greeting = f"cold {i}"
            repo = make_repo(work / app, greeting)
            waka.cli("apps:create", app, cwd=repo)
            cold.append(push_until_served(waka, app, repo, greeting))
        repo = work / "cold-0"
        for i in range(args.runs):
            greeting = f"warm {i}"
            set_greeting(repo, greeting)
            subprocess.run([*GIT, "commit", "-qam", greeting], cwd=repo, check=True)
            warm.append(push_until_served(waka, "cold-0", repo, greeting))
    finally:
        waka.stop()
        shutil.rmtree(work, ignore_errors=True)
    base_cold, base_warm = baselines(args.runs)

    print(f"deploy cold (push -> first 200, empty build cache): {summary(cold)}")
    print(f"deploy warm (push -> first 200, code change only):  {summary(warm)}")
    print(f"baseline cold (uv install + gunicorn -> first 200): {summary(base_cold)}")
    print(f"baseline warm (gunicorn from a ready venv -> 200):  {summary(base_warm)}")
    print(
        f"platform overhead over the baseline, median: cold "
        f"{statistics.median(cold) - statistics.median(base_cold):+.3f}s, warm "
        f"{statistics.median(warm) - statistics.median(base_warm):+.3f}s"
    )


if __name__ == "__main__":
    main()
