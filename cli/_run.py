"""``waka run`` (a one-off dyno attached to this terminal), ``waka run:detached``, and
``waka ps:exec`` (a command inside a running dyno, attached the same way), and ``ps:copy``.

With a terminal, keystrokes go to the dyno as they are typed (raw mode: Ctrl-C is a byte the
dyno's terminal turns into SIGINT), window size changes follow, and waka exits with the command's
exit status. Without one (``--no-tty``, or stdin not a terminal), stdin, stdout and stderr are
plain streams, so ``waka run --no-tty cmd < in > out`` works in pipes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shlex
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from waka.cli._appref import resolve_app
from waka.cli._connection import connect
from waka.cli._context import Context
from waka.cli._errors import CliError
from waka.cli._output import app_label
from waka.v1 import common_pb2, platform_pb2

_END = object()
CHUNK = 16 * 1024


def command_text(words: list[str]) -> str:
    if not words:
        raise CliError("Nothing to run: give a command, e.g. `waka run bash`.")
    # One argument is a command line already (`waka run "ls | wc"`); several are words.
    return words[0] if len(words) == 1 else shlex.join(words)


def parse_env(text: str) -> dict[str, str]:
    """``--env "K=V;K2=V2"``, as Heroku's CLI takes it."""
    env: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CliError(f'invalid --env entry "{part}": expected KEY=value')
        env[key] = value
    return env


def detached(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    command = command_text(args.command)
    spec = platform_pb2.RunSpec(app=app, command=command, size=args.size, env=parse_env(args.env))
    ctx.stdout.write(f"Running `{command}` on {app_label(app)}... ")
    ctx.stdout.flush()
    try:
        with connect(args.data_dir, ctx.environ) as api:
            dyno = api.dynos.RunDetached(spec)
    except BaseException:
        ctx.stdout.write("!\n")
        raise
    ctx.stdout.write(f"up, {dyno.name}\n")
    ctx.stdout.write(f"Use `waka logs -a {app} -d {dyno.name}` to view the output.\n")
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    app = resolve_app(args.app, ctx)
    command = command_text(args.command)
    spec = platform_pb2.RunSpec(app=app, command=command, size=args.size, env=parse_env(args.env))
    ctx.stderr.write(f"Running `{command}` on {app_label(app)}... ")
    return _attached(args, ctx, spec, "Run")


def exec_in_dyno(args: argparse.Namespace, ctx: Context) -> int:
    """``waka ps:exec [-d web.1] [COMMAND]``: a shell (or COMMAND) inside a running dyno."""
    app = resolve_app(args.app, ctx)
    command = command_text(args.command) if args.command else "bash"
    spec = platform_pb2.RunSpec(app=app, command=command, dyno=args.dyno)
    ctx.stderr.write(f"Connecting to {args.dyno} on {app_label(app)}... ")
    return _attached(args, ctx, spec, "Exec")


def copy_from_dyno(args: argparse.Namespace, ctx: Context) -> int:
    """``ps:copy FILE [-d web.1] [-o LOCAL]``: a file of a running dyno, to this machine."""
    app = resolve_app(args.app, ctx)
    output = ctx.cwd / (args.output or Path(args.file).name)
    if output.exists() and not args.force:
        raise CliError(f"{output} exists; give another --output, or --force to overwrite it")
    spec = platform_pb2.RunSpec(
        app=app, dyno=args.dyno, command=shlex.join(["cat", "--", args.file])
    )
    ctx.stdout.write(f"Copying {args.file} from {args.dyno} on {app_label(app)} to {output}... ")
    ctx.stdout.flush()
    inputs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    inputs.put(platform_pb2.RunInput(spec=spec))
    with connect(args.data_dir, ctx.environ) as api:
        try:
            return _copy(api.dynos.Exec(_requests(inputs)), ctx, args.file, args.dyno, output)
        finally:
            inputs.put(_END)  # the request stream stays open until then: its end means "gone"


def _copy(
    events: Iterator[platform_pb2.RunEvent], ctx: Context, file: str, dyno: str, output: Path
) -> int:
    data, errors = bytearray(), bytearray()
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "stdout":
            data += event.stdout
        elif kind == "stderr":
            errors += event.stderr
        elif kind == "error":
            ctx.stdout.write("!\n")
            raise CliError(event.error)
        elif kind == "exit_code":
            ctx.stdout.write("!\n" if event.exit_code else "")
            if event.exit_code:
                said = errors.decode(errors="replace").strip() or f"cat exited {event.exit_code}"
                raise CliError(f"cannot copy {file} from {dyno}: {said}")
            try:
                output.write_bytes(data)
            except OSError as error:
                ctx.stdout.write("!\n")
                raise CliError(f"cannot write {output}: {error.strerror}") from None
            ctx.stdout.write(f"done, {len(data)} bytes\n")
            return 0
    ctx.stdout.write("!\n")
    raise CliError("the connection to the dyno ended before the copy finished")


def _attached(
    args: argparse.Namespace, ctx: Context, spec: platform_pb2.RunSpec, method: str
) -> int:
    """Runs `spec` through the Dynos.`method` stream with this terminal (or these pipes)."""
    stdin_fd = sys.stdin.fileno() if ctx.stdin is sys.stdin else None
    use_tty = not args.no_tty and stdin_fd is not None and os.isatty(stdin_fd)
    if use_tty:
        spec.tty = True
        spec.cols, spec.rows = _window(stdin_fd)
        spec.env.setdefault("TERM", ctx.environ.get("TERM", "xterm-256color"))
    inputs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    inputs.put(platform_pb2.RunInput(spec=spec))
    ctx.stderr.flush()
    with connect(args.data_dir, ctx.environ) as api:
        events = getattr(api.dynos, method)(_requests(inputs))
        try:
            with _terminal(stdin_fd if use_tty else None, inputs):
                return _relay(events, inputs, ctx, stdin_fd, use_tty)
        finally:
            # The request stream ends before the channel closes: its end means "gone".
            inputs.put(_END)


def _requests(inputs: queue.SimpleQueue[Any]) -> Iterator[platform_pb2.RunInput]:
    while (item := inputs.get()) is not _END:
        yield item


def _relay(
    events: Iterator[platform_pb2.RunEvent],
    inputs: queue.SimpleQueue[Any],
    ctx: Context,
    stdin_fd: int | None,
    use_tty: bool,
) -> int:
    out = getattr(ctx.stdout, "buffer", None)
    err = getattr(ctx.stderr, "buffer", None)
    interrupted = 0
    while True:
        try:
            event = next(events, None)
        except KeyboardInterrupt:
            # Without a terminal Ctrl-C reaches us, not the dyno: pass it on, then give up.
            interrupted += 1
            if interrupted > 1:
                raise CliError("interrupted; the command is being stopped") from None
            inputs.put(platform_pb2.RunInput(signal=signal.SIGINT))
            continue
        if event is None:
            raise CliError("the connection to the dyno ended before the command finished")
        kind = event.WhichOneof("event")
        if kind == "started":
            ctx.stderr.write(f"up, {event.started.name}\n")
            ctx.stderr.flush()
            if stdin_fd is not None:
                _start_stdin_reader(stdin_fd, inputs, use_tty)
        elif kind == "stdout":
            _write(out, ctx.stdout, event.stdout)
        elif kind == "stderr":
            _write(err, ctx.stderr, event.stderr)
        elif kind == "exit_code":
            return event.exit_code
        elif kind == "error":
            raise CliError(event.error)


def _write(binary: Any, text_stream: Any, data: bytes) -> None:
    if binary is not None:
        binary.write(data)
        binary.flush()
    else:
        text_stream.write(data.decode("utf-8", "replace"))
        text_stream.flush()


def _start_stdin_reader(fd: int, inputs: queue.SimpleQueue[Any], use_tty: bool) -> None:
    def read() -> None:
        while True:
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                if not use_tty:
                    inputs.put(platform_pb2.RunInput(stdin_eof=True))
                return
            inputs.put(platform_pb2.RunInput(stdin=data))

    # A daemon thread: it blocks in read() and must not keep waka alive after the dyno exits.
    threading.Thread(target=read, name="stdin", daemon=True).start()


def _window(fd: int | None) -> tuple[int, int]:
    if fd is None:
        return 0, 0
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.columns, size.lines


@contextlib.contextmanager
def _terminal(fd: int | None, inputs: queue.SimpleQueue[Any]) -> Iterator[None]:
    """Raw mode and window-size forwarding for the run's duration; restored however it ends."""
    if fd is None:
        yield
        return
    saved = termios.tcgetattr(fd)

    def resized(_signum: int, _frame: object) -> None:
        cols, rows = _window(fd)
        inputs.put(platform_pb2.RunInput(resize=common_pb2.WindowSize(cols=cols, rows=rows)))

    previous = signal.signal(signal.SIGWINCH, resized)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
