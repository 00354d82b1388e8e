"""The committed generated modules match proto/waka/v1/*.proto (regenerate: scripts/gen-proto)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "proto" / "waka" / "v1"


def test_generated_modules_are_not_stale(tmp_path):
    subprocess.run(
        [str(REPO / "scripts" / "gen-proto"), str(tmp_path)],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    fresh = sorted((tmp_path / "waka" / "v1").glob("*_pb2*"))
    assert fresh, "scripts/gen-proto generated nothing"
    committed = sorted(GENERATED.glob("*_pb2*"))
    assert [p.name for p in fresh] == [p.name for p in committed]
    stale = [p.name for p in fresh if p.read_bytes() != (GENERATED / p.name).read_bytes()]
    assert not stale, f"stale generated modules, run scripts/gen-proto: {stale}"
