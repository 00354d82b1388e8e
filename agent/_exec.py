"""The agent's end of `waka ps:exec`: a command started inside a running dyno, relayed to the
user over an Attach stream as an attached one-off dyno is.

The command runs in the dyno's namespaces and cgroup, as the dyno's user, with the dyno's
environment (the sandbox says how: `SandboxProcess.exec_command`). With a terminal it gets a
pseudo-terminal of its own. When the user goes away first, it gets SIGHUP, as over ssh, and
SIGKILL if it is still there after a grace.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import trio

from waka.agent._attached import AttachedIO
from waka.agent._dyno import Dyno, reported_exit_code
from waka.agent._sandbox import SandboxError
from waka.agent._wire import Controller
from waka.v1.agent_pb2 import DynoSpec, ExecJob

HANG_UP_GRACE = 2.0


async def run_exec(job: ExecJob, dyno: Dyno | None, controller: Controller) -> None:
    process: trio.Process | None = None

    def signal_command(sig: int) -> None:
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    attached = AttachedIO(
        DynoSpec(id=job.exec_id, tty=job.tty, window=job.window), controller, signal_command
    )
    user_left = trio.Event()

    async def relay(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await attached.run(task_status=task_status)
        finally:
            user_left.set()

    async with trio.open_nursery() as nursery:
        try:
            if dyno is None:
                raise SandboxError("the dyno is not on this node any more")
            argv, env = dyno.exec_command(job.command, tty=job.tty)
            env.update(job.env)
        except SandboxError as error:
            attached.open()
            attached.close_child_fds()
            await nursery.start(relay)
            await attached.fail(f"cannot exec in the dyno: {error}")
            return
        stdin, stdout, stderr = attached.open()
        await nursery.start(relay)
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, start_new_session=True
            )
        except OSError as error:
            await attached.fail(f"cannot exec in the dyno: {error}")
            return
        finally:
            attached.close_child_fds()
        nursery.start_soon(_hang_up_when_gone, user_left, process, signal_command)
        code = await process.wait()
        await attached.finish(reported_exit_code(code))


async def _hang_up_when_gone(
    user_left: trio.Event, process: trio.Process, signal_command: Callable[[int], None]
) -> None:
    await user_left.wait()
    if process.returncode is not None:
        return
    signal_command(signal.SIGHUP)
    with trio.move_on_after(HANG_UP_GRACE):
        await process.wait()
    signal_command(signal.SIGKILL)
