"""MISC_CHECK: run a program (no shell) and read its exit status.

Exit 0 is up and 1 is down. With ``misc_dynamic``, 2-255 is up with weight
``status - 2`` (keepalived.conf(5)); without it any non-zero status is down.
A program still running after ``misc_timeout`` (default: ``delay_loop``) is
killed, its whole process group, and counts as down.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import MiscCheck


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The script runs in its own session, so its children die with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def probe_misc(checker: MiscCheck, target: Target, timeout: float) -> CheckResult:
    """Run the program once; ``timeout`` is the resolved misc_timeout.

    ``misc_path`` is the argv the config parser split from the quoted command
    (``misc_path "/bin/check 'a b' c"`` is three words); it runs as is.
    """
    argv = list(checker.misc_path)
    if not argv:
        return CheckResult(False, "MISC_CHECK has no misc_path")
    kw: dict[str, Any] = {}
    if checker.user:
        kw["user"] = checker.user
        if checker.group:
            kw["group"] = checker.group
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
    if status >= 2 and checker.misc_dynamic:
        return CheckResult(True, f"{argv[0]} exited {status}: weight {status - 2}", weight=status - 2)
    return CheckResult(False, f"{argv[0]} exited {status}")
