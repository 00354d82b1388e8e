"""The agent's end of `waka run`: a terminal (or pipes) between a one-off dyno and an Attach stream.

With a terminal the dyno gets a pseudo-terminal: the user's keystrokes are written to its master
side as they arrive (so Ctrl-C becomes SIGINT in the dyno by the terminal's own rules), window
sizes are set on it, and everything the dyno writes comes back as stdout. Without one, stdin,
stdout and stderr are three pipes. Output is relayed until the dyno's side is closed, and only then
the exit code, so the user sees every byte before waka exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import termios
from collections.abc import Callable

import grpc
import trio

from waka.agent._wire import Controller, Outbox, responses
from waka.v1.agent_pb2 import AttachFrame, DynoSpec

READ_SIZE = 32 * 1024


def set_window(fd: int, cols: int, rows: int) -> None:
    if cols > 0 and rows > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class AttachedIO:
    def __init__(
        self,
        spec: DynoSpec,
        controller: Controller,
        signal_dyno: Callable[[int], None],
    ) -> None:
        self._spec = spec
        self._controller = controller
        self._signal_dyno = signal_dyno
        self._outbox: Outbox[AttachFrame] = Outbox()
        self._child_fds: list[int] = []
        self._streams: dict[str, trio.lowlevel.FdStream] = {}
        self._readers_done = trio.Event()
        self._readers = 0

    @property
    def tty(self) -> bool:
        return self._spec.tty

    def open(self) -> tuple[int, int, int]:
        """Creates the dyno's stdio; returns (stdin, stdout, stderr) for the sandbox."""
        if self.tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            set_window(slave, self._spec.window.cols, self._spec.window.rows)
            self._streams["tty"] = trio.lowlevel.FdStream(master)
            self._child_fds = [slave]
            return slave, slave, slave
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        self._streams = {
            "stdin": trio.lowlevel.FdStream(stdin_write),
            "stdout": trio.lowlevel.FdStream(out_read),
            "stderr": trio.lowlevel.FdStream(err_read),
        }
        self._child_fds = [stdin_read, out_write, err_write]
        return stdin_read, out_write, err_write

    def close_child_fds(self) -> None:
        """After the sandbox started: our copies of its ends must go, or EOF never comes."""
        for fd in self._child_fds:
            os.close(fd)
        self._child_fds = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Opens the Attach stream and relays both ways until the stream or the dyno ends."""
        self._outbox.put(AttachFrame(dyno_id=self._spec.id))
        call = self._controller.stub.Attach(iter(self._outbox), metadata=self._controller.metadata)
        async with trio.open_nursery() as nursery:
            self._readers = 1 if self.tty else 2
            if self.tty:
                nursery.start_soon(self._read, self._streams["tty"], "stdout")
            else:
                nursery.start_soon(self._read, self._streams["stdout"], "stdout")
                nursery.start_soon(self._read, self._streams["stderr"], "stderr")
            task_status.started()
            with contextlib.suppress(grpc.RpcError):
                async for frame in responses(call):
                    await self._input(frame)
            # The user went away (or the controller did): nothing more to send.
            nursery.cancel_scope.cancel()

    async def _input(self, frame: AttachFrame) -> None:
        kind = frame.WhichOneof("frame")
        target = self._streams.get("tty") or self._streams.get("stdin")
        if kind == "stdin" and target is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await target.send_all(frame.stdin)
        elif kind == "stdin_eof" and "stdin" in self._streams:
            await self._streams["stdin"].aclose()
        elif kind == "resize" and "tty" in self._streams:
            with contextlib.suppress(OSError):
                set_window(self._streams["tty"].fileno(), frame.resize.cols, frame.resize.rows)
        elif kind == "signal":
            self._signal_dyno(frame.signal)

    async def _read(self, stream: trio.lowlevel.FdStream, name: str) -> None:
        try:
            while True:
                try:
                    data = await stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, OSError) as error:
                    # A terminal's master side reports EIO once the dyno's side is closed.
                    cause = (
                        error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
                    )
                    if not isinstance(cause, OSError) or cause.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return
                self._outbox.put(AttachFrame(**{name: data}))
        finally:
            self._readers -= 1
            if not self._readers:
                self._readers_done.set()

    async def fail(self, message: str) -> None:
        """The command could not start (its ends of the stdio are closed): says why instead of
        an exit code."""
        await self._end(AttachFrame(error=message))

    async def finish(self, exit_code: int) -> None:
        """After the command exited: the rest of its output, then its exit code."""
        await self._end(AttachFrame(exit_code=exit_code))

    async def _end(self, last: AttachFrame) -> None:
        # The readers first: a stream closed under a reader would fail it, not end it.
        with trio.move_on_after(5):
            await self._readers_done.wait()
        self._outbox.put(last)
        self._outbox.close()
        for stream in self._streams.values():
            with contextlib.suppress(trio.ClosedResourceError, OSError):
                await stream.aclose()
