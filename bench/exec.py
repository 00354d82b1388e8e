"""`waka ps:exec` against `waka run`: seconds from the command typed to its exit, for `true`.

    .venv/bin/python bench/exec.py [--runs N]

On a real `waka up` with one web dyno up. Taking turns in each round: `waka ps:exec --no-tty true`
(a process started in the running dyno's namespaces), `waka run --no-tty true` (a new one-off
dyno: sandbox, slug mount, teardown), and the baseline, `waka apps:info` (a CLI process and one
API call: what any command costs before it does anything). Run as root from the repository root.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _harness import WAKA, Waka, start_waka, summary, wait_for

from waka.v1.common_pb2 import DynoState

APP = "execbench"


def timed(waka: Waka, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([WAKA, *args], env=waka.env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    waka = start_waka()
    try:
        source = Path(tempfile.mkdtemp(prefix="waka-bench-exec-"))
        (source / "Procfile").write_text("web: exec python3 -m http.server $PORT\n")
        waka.cli("apps:create", APP, "--no-remote")
        waka.cli("deploy", "-a", APP, str(source))
        wait_for(
            lambda: [d for d in waka.dynos(APP) if d.state == DynoState.DYNO_STATE_UP],
            60,
            "the web dyno up",
        )
        kinds = {
            "ps:exec true": ("ps:exec", "-a", APP, "--no-tty", "true"),
            "run true (one-off dyno)": ("run", "-a", APP, "--no-tty", "true"),
            "baseline: apps:info": ("apps:info", "-a", APP),
        }
        timings: dict[str, list[float]] = {name: [] for name in kinds}
        for argv in kinds.values():
            timed(waka, *argv)  # warm-up: caches, first connections
        for _ in range(args.runs):
            for name, argv in kinds.items():
                timings[name].append(timed(waka, *argv))
        for name, values in timings.items():
            print(f"{name:26} {summary(values)}")
    finally:
        waka.stop()


if __name__ == "__main__":
    main()
