"""waka's pre-receive hook: hands a push's ref updates to the controller and relays its answer.

git runs this (through the small script GitEndpoint installs in each repository) while it
receives a push, with the pushed objects still in quarantine. It connects to the controller's
Unix socket named by WAKA_HOOK_SOCKET and sends one line of JSON:

    {"ticket": ..., "app": ..., "user": ..., "cwd": ...,
     "updates": [{"old": ..., "new": ..., "ref": ...}], "env": {"GIT_DIR": ..., ...},
     "options": [<each `git push -o OPTION`>]}

The controller answers with lines, each starting with a kind byte:

    |<text>      one line of output: printed to stdout, which git shows as `remote: <text>`
    =<status>    the end: the hook exits with <status>; anything but 0 rejects the push

The hook runs on every push as `python -I -S`, so it imports as little as it can: `json` alone
(through `re` and `enum`) would double its start-up time, hence the small encoder below; and
`_socket` rather than `socket`, for the same reason.
"""

from __future__ import annotations

# The C module under `socket`: importing `socket` itself (which pulls in enum and selectors)
# takes longer than all the rest of this hook's start-up.
import _socket
import io
import os
import sys

SOCKET_ENV = "WAKA_HOOK_SOCKET"
TICKET_ENV = "WAKA_HOOK_TICKET"
APP_ENV = "WAKA_APP"
USER_ENV = "WAKA_USER"
# What `git archive` needs to read objects that are still in the push's quarantine.
QUARANTINE_ENV = (
    "GIT_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
)
OUTPUT_LINE = b"|"
EXIT_STATUS = b"="

_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in range(0x20)} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}

JsonValue = str | list["JsonValue"] | dict[str, "JsonValue"]


def to_json(value: JsonValue) -> str:
    """JSON for the strings, lists and dicts this hook sends."""
    if isinstance(value, str):
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return "{" + ",".join(to_json(key) + ":" + to_json(item) for key, item in value.items()) + "}"


def encode_request(request: JsonValue) -> bytes:
    # Undecodable bytes of paths (surrogate escapes) become \udcXX escapes, which JSON
    # readers turn back into the same surrogates: the controller sees the path git saw.
    return to_json(request).encode("utf-8", "backslashreplace") + b"\n"


def read_updates(lines: list[str]) -> list[JsonValue]:
    """git's `<old> <new> <ref>` lines as {"old", "new", "ref"} objects."""
    updates: list[JsonValue] = []
    for line in lines:
        fields = line.split()
        if len(fields) == 3:  # git sends nothing else; a stray blank line is no reason to fail
            old, new, ref = fields
            updates.append({"old": old, "new": new, "ref": ref})
    return updates


def build_request(environ: dict[str, str], cwd: str, updates: list[JsonValue]) -> JsonValue:
    return {
        "ticket": environ.get(TICKET_ENV, ""),
        "app": environ.get(APP_ENV, ""),
        "user": environ.get(USER_ENV, ""),
        "cwd": cwd,
        "updates": updates,
        "env": {name: environ[name] for name in QUARANTINE_ENV if name in environ},
        "options": push_options(environ),
    }


def push_options(environ: dict[str, str]) -> list[JsonValue]:
    """The pusher's `git push -o OPTION` values, as git hands them to hooks."""
    count = environ.get("GIT_PUSH_OPTION_COUNT", "0")
    if not count.isdigit():
        return []
    return [environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(int(count))]


class PusherGone(Exception):
    """git closed the hook's stdout: nobody is left to read, or to accept the push."""


def say(out: io.BufferedIOBase, line: bytes) -> None:
    try:
        out.write(line + b"\n")
        out.flush()  # each line as it comes: this is the build log the pusher is watching
    except OSError as error:
        raise PusherGone(str(error)) from error


def relay(answer: io.BufferedIOBase, out: io.BufferedIOBase) -> int:
    """Copies the controller's output lines to `out`; returns the exit status it ends with."""
    for message in answer:
        kind, body = message[:1], message[1:].rstrip(b"\n")
        if kind == OUTPUT_LINE:
            say(out, body)
        elif kind == EXIT_STATUS:
            return int(body)
        else:
            raise ValueError(f"unexpected message {message[:40]!r}")
    say(out, b"! waka: the controller ended the connection before the deploy finished.")
    return 1


def main() -> int:
    try:
        return relay_push(sys.stdout.buffer)
    except PusherGone:
        return 1


def relay_push(out: io.BufferedIOBase) -> int:
    socket_path = os.environ.get(SOCKET_ENV)
    if not socket_path:
        say(out, f"! waka: {SOCKET_ENV} is not set; push rejected.".encode())
        return 1
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as error:
        reason = error.strerror or str(error)
        say(out, f"! waka: cannot reach the controller at {socket_path}: {reason}.".encode())
        say(out, b"! Push rejected.")
        sock.close()
        return 1
    try:
        stdin = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        request = build_request(dict(os.environ), os.getcwd(), read_updates(stdin.splitlines()))
        sock.sendall(encode_request(request))
        with open(sock.fileno(), "rb", closefd=False) as answer:
            return relay(answer, out)
    except OSError as error:
        say(out, f"! waka: lost the controller: {error}; push rejected.".encode())
        return 1
    except ValueError as error:
        say(out, f"! waka: the controller's answer is malformed: {error}.".encode())
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
