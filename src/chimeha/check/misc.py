"""MISC_CHECK: run a program (no shell) and read its exit status.

Exit 0 is up and 1 is down. With ``misc_dynamic``, 2-255 is up with weight
``status - 2`` (keepalived.conf(5)); without it any non-zero status is down.
A program still running after ``misc_timeout`` (default: ``delay_loop``) is
killed, its whole process group, and counts as down.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from typing import Any

from chimeha.check.spec import CheckResult, Target


def misc_argv(checker: Any) -> list[str]:
    """``misc_path`` as argv: a tuple is used as is, a string is split like a shell would (no shell runs)."""
    path = getattr(checker, "misc_path", None)
    if isinstance(path, str):
        return shlex.split(path)
    return [str(p) for p in (path or ())]


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The script runs in its own session, so its children die with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def probe_misc(checker: Any, target: Target, timeout: float) -> CheckResult:
    """Run the program once; ``timeout`` is the resolved misc_timeout."""
    argv = misc_argv(checker)
    if not argv:
        return CheckResult(False, "MISC_CHECK has no misc_path")
    user = getattr(checker, "user", None)
    group = getattr(checker, "group", None)
    kw: dict[str, Any] = {}
    if user:
        kw["user"] = user
        if group:
            kw["group"] = group
        kw["extra_groups"] = []
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, **kw)
    except (OSError, ValueError, KeyError) as exc:
        return CheckResult(False, f"cannot run {argv[0]}: {exc}")
    try:
        async with asyncio.timeout(timeout):
            status = await proc.wait()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return CheckResult(False, f"{argv[0]} still running after {timeout:g} s, killed")
    except BaseException:
        # Cancelled (the runner stops): kill and reap, so no zombie outlives the loop.
        _kill_group(proc)
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except BaseException:
            pass
        raise
    if status < 0:
        return CheckResult(False, f"{argv[0]} killed by signal {-status}")
    if status == 0:
        return CheckResult(True, f"{argv[0]} exited 0")
    if status >= 2 and getattr(checker, "misc_dynamic", False):
        return CheckResult(True, f"{argv[0]} exited {status}: weight {status - 2}", weight=status - 2)
    return CheckResult(False, f"{argv[0]} exited {status}")
