"""What a command may touch: its streams, environment, working directory and clock.

Commands never reach for ``sys.stdout``, ``os.environ`` or ``datetime.now`` themselves, so tests
run them in-process with captured streams, a fixed clock and a temporary repository.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class Context:
    stdout: TextIO
    stderr: TextIO
    stdin: TextIO
    environ: Mapping[str, str]
    cwd: Path
    clock: Callable[[], datetime]
    # The words that run this same waka again (git calls it back as a credential helper).
    self_command: tuple[str, ...]

    @classmethod
    def from_process(cls) -> Context:
        return cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin=sys.stdin,
            environ=os.environ,
            cwd=Path.cwd(),
            clock=lambda: datetime.now(UTC),
            self_command=running_waka_command(sys.argv[0], sys.executable),
        )


def running_waka_command(argv0: str, python: str) -> tuple[str, ...]:
    """The command that started this process, as absolute words.

    Installed, ``argv[0]`` is the ``waka`` console script. Run as ``python -m waka.cli.main``
    it is the module's file, which cannot be executed by itself.
    """
    program = Path(argv0)
    if program.suffix == ".py" or not argv0:
        return (python, "-m", "waka.cli.main")
    return (str(program.absolute()),)
