"""Prints the one runnable jar (a Main-Class in its manifest) under the given directories.

    python3 runnable_jar.py BUILD_DIR target build/libs

Prints its path relative to BUILD_DIR and exits 0 when exactly one jar is runnable; exits 1
otherwise (none, or several: then no default is a sensible guess).
"""

import sys
import zipfile
from pathlib import Path

NOT_APPS = ("-sources.jar", "-javadoc.jar", "-tests.jar", "-plain.jar")


def is_runnable(jar: Path) -> bool:
    try:
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return any(line.startswith("Main-Class:") for line in manifest.splitlines())


def main(build_dir: Path, directories: list[str]) -> int:
    jars = [
        jar
        for directory in directories
        for jar in sorted((build_dir / directory).glob("*.jar"))
        if not jar.name.endswith(NOT_APPS) and not jar.name.startswith("original-")
    ]
    runnable = [jar for jar in jars if is_runnable(jar)]
    if len(runnable) != 1:
        return 1
    print(runnable[0].relative_to(build_dir))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: runnable_jar.py BUILD_DIR DIRECTORY...", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
