"""``global_defs startup_script`` / ``shutdown_script``: run once around the daemon's life.

As keepalived 2.2.7 (core/main.c): the startup script runs before any VRRP
instance or checker starts, and the daemon starts when it has ended (whatever
its exit status: a failure is logged); the shutdown script runs after the
instances have stopped (priority 0 sent, VIPs removed) and the virtual servers
are gone, and the process exits when it has ended.  Neither runs on a reload.

Timeout (``*_script_timeout``, 1..1000 s, default 10): the script's process
group gets SIGTERM, then SIGKILL 2 s later if it is still there (keepalived's
``handle_child_timeout``); a script that ended on our SIGTERM also has its
group killed so no child it forked stays behind.

Script security as for the other scripts (:mod:`chimeha.runtime.scripts`): the
script runs as its own ``username [groupname]``, else ``global_defs
script_user``, else root; under ``enable_script_security`` a script that would
run as root from a path writable by a non-root user is not run at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from chimeha.runtime.scripts import ScriptResult, insecure_reason, spawn_detached

log = logging.getLogger("chimeha.runtime.lifecycle")

TERM_GRACE = 2.0  # s between SIGTERM and SIGKILL after a timeout (keepalived: 2 s)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_bounded(argv: tuple[str, ...], timeout: float, *, user: str | None = None,
                      group: str | None = None, grace: float = TERM_GRACE) -> ScriptResult:
    """Exec ``argv`` in its own session; past ``timeout`` SIGTERM its group, past ``grace`` more SIGKILL it."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc, failed = await spawn_detached(argv, user=user, group=group)
    if failed:
        return failed
    try:
        rc = await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
        return ScriptResult(rc == 0, rc, duration=loop.time() - started)
    except asyncio.TimeoutError:
        pass
    except BaseException:
        _killpg(proc.pid, signal.SIGKILL)
        raise
    _killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except asyncio.TimeoutError:
        pass
    _killpg(proc.pid, signal.SIGKILL)  # the leader died on SIGTERM, or did not: its group goes either way
    try:
        await asyncio.wait_for(proc.wait(), 10.0)
    except asyncio.TimeoutError:
        log.warning("%s (PID %d) failed to terminate after kill", argv[0], proc.pid)
    return ScriptResult(False, None, timed_out=True, duration=loop.time() - started)


async def run_lifecycle(kind: str, config) -> ScriptResult | None:
    """Run the ``kind`` ("startup" or "shutdown") script of ``config`` if it has one; never raises."""
    if config is None:
        return None
    gd = config.global_defs
    script = gd.startup_script if kind == "startup" else gd.shutdown_script
    if script is None:
        return None
    user = script.user or gd.script_user
    group = script.group if script.user else gd.script_group
    if gd.enable_script_security and (user or "root") == "root":
        why = insecure_reason(script.argv[0])
        if why:
            log.error("%s script %s not run (enable_script_security): %s", kind, script.argv[0], why)
            return ScriptResult(False, None, error=f"not run (enable_script_security): {why}")
    log.info("Running %s script %s", kind, script.argv[0])
    try:
        res = await run_bounded(script.argv, script.timeout, user=user if user != "root" else None, group=group)
    except Exception as exc:  # never keep the daemon from starting or stopping
        log.exception("%s script %s failed", kind, script.argv[0])
        return ScriptResult(False, None, error=str(exc))
    if res.timed_out:
        log.warning("%s script %s timed out after %g s (SIGTERM, then SIGKILL)", kind, script.argv[0], script.timeout)
    elif res.error:
        log.warning("%s script: %s", kind, res.error)
    elif res.returncode:
        log.warning("%s script %s failed, status %d", kind, script.argv[0], res.returncode)
    else:
        log.info("%s script %s succeeded", kind, script.argv[0])
    return res
