"""Prints what the Node.js buildpack needs from package.json, one `key=value` per line.

    python3 package_json.py PATH/TO/package.json

Run with the stack's Python (not Node: the Node.js to use is not chosen yet when this runs).
Keys: engines_node, engines_npm, package_manager, scripts (names, space-separated),
dev_dependencies (a count). An unreadable file exits 1 with a message naming the problem.
"""

import json
import sys


def one_line(value: object) -> str:
    return " ".join(str(value).split()) if isinstance(value, str) else ""


def main(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            package = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        print(f"package.json cannot be read: {error}", file=sys.stderr)
        return 1
    if not isinstance(package, dict):
        print("package.json must hold a JSON object", file=sys.stderr)
        return 1
    engines = package.get("engines") if isinstance(package.get("engines"), dict) else {}
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    dev = package.get("devDependencies") if isinstance(package.get("devDependencies"), dict) else {}
    names = [name for name, command in scripts.items() if isinstance(command, str) and command]
    print(f"engines_node={one_line(engines.get('node'))}")
    print(f"engines_npm={one_line(engines.get('npm'))}")
    print(f"package_manager={one_line(package.get('packageManager'))}")
    print(f"scripts={' '.join(n for n in names if n.strip() and ' ' not in n)}")
    print(f"dev_dependencies={len(dev)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: package_json.py PACKAGE_JSON", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
