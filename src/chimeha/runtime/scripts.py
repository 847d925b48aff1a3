"""Running external programs without a shell: vrrp_script checks and notify scripts.

keepalived splits a ``script`` line into argv itself and execs it; so do we
(the config model hands us the argv). Each run gets its own session so that a
timeout kills the whole process group (a check script that forks ``sleep`` must
not leave it behind). Output is discarded; only the exit status counts: 0 is
success, anything else, a timeout or a failure to start is a failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import stat
import time
from dataclasses import dataclass

from chimeha.track.hysteresis import Hysteresis

log = logging.getLogger("chimeha.runtime.scripts")


@dataclass(frozen=True)
class ScriptResult:
    """The outcome of one run."""

    ok: bool
    returncode: int | None  # None when it never started or was killed on timeout
    timed_out: bool = False
    error: str | None = None  # could not start: missing file, permission...
    duration: float = 0.0

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration:.3f} s (killed)"
        return f"exit status {self.returncode}"


def _user_ids(user: str | None, group: str | None) -> tuple[int | None, int | None]:
    if not user:
        return None, None
    pw = pwd.getpwnam(user)
    gid = pw.pw_gid
    if group:
        import grp

        gid = grp.getgrnam(group).gr_gid
    return pw.pw_uid, gid


async def run_program(argv: tuple[str, ...] | list[str], timeout: float | None = None, *,
                      user: str | None = None, group: str | None = None,
                      env: dict[str, str] | None = None) -> ScriptResult:
    """Exec ``argv`` (no shell), wait at most ``timeout`` seconds, kill its group on timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not argv:
        return ScriptResult(False, None, error="empty command")
    try:
        uid, gid = _user_ids(user, group)
    except KeyError as exc:
        return ScriptResult(False, None, error=f"unknown user or group: {exc.args[0]}")
    kw: dict = {}
    if uid is not None:
        kw["user"] = uid
        kw["group"] = gid
        kw["extra_groups"] = []
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            **kw,
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ScriptResult(False, None, error=f"cannot run {argv[0]}: {reason}")
    try:
        rc = await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        return ScriptResult(False, None, timed_out=True, duration=loop.time() - started)
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        raise
    return ScriptResult(rc == 0, rc, duration=loop.time() - started)


def insecure_reason(program: str) -> str | None:
    """Why ``program`` is unsafe to run as root under ``enable_script_security``, or None.

    The rule keepalived documents: the script and every directory above it
    must be writable by root only (owner root, no group/other write bit
    unless the group is root's), else any such user could become root.
    """
    path = shutil.which(program) if "/" not in program else program
    if not path or not os.path.exists(path):
        return None  # the run reports "cannot run" itself
    path = os.path.realpath(path)
    current = path
    while True:
        st = os.stat(current)
        if st.st_uid != 0:
            return f"{current} is owned by uid {st.st_uid}, not root"
        if st.st_mode & stat.S_IWOTH:
            return f"{current} is writable by everyone"
        if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
            return f"{current} is writable by group {st.st_gid}"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _kill_group(pid: int) -> None:
    # The child leads its own session, so its pgid is its pid: this reaches the
    # children it forked and nothing else.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ScriptTracker:
    """Runs one vrrp_script every ``interval`` and reports state changes.

    ``on_change(name, ok, result)`` is called when the hysteresis state flips
    (rise/fall counted by :class:`chimeha.track.hysteresis.Hysteresis`, which
    starts OK unless ``init_fail``). ``last`` keeps the latest result.
    """

    def __init__(self, name: str, argv: tuple[str, ...], *, interval: float = 1.0,
                 timeout: float | None = None, rise: int = 1, fall: int = 1,
                 init_fail: bool = False, user: str | None = None, group: str | None = None,
                 on_change=None, secure: bool = False):
        self.name = name
        self.argv = tuple(argv)
        self.interval = max(0.01, float(interval))
        # keepalived: a script with no timeout may run for one interval.
        self.timeout = float(timeout) if timeout else self.interval
        self.user = user
        self.group = group
        self.state = Hysteresis(max(1, rise), max(1, fall), init_fail)
        self.on_change = on_change
        self.last: ScriptResult | None = None
        self.last_run_at: float | None = None  # wall clock
        self.runs = 0
        self._task: asyncio.Task | None = None
        self._logged_error: str | None = None
        # enable_script_security with root: an insecure script is never run.
        self.refused = insecure_reason(self.argv[0]) if (secure and self.argv and not user) else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"script:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run_once(self) -> ScriptResult:
        if self.refused:
            res = ScriptResult(False, None, error=f"not run (enable_script_security): {self.refused}")
        else:
            res = await run_program(self.argv, self.timeout, user=self.user, group=self.group)
        self.last = res
        self.last_run_at = time.time()
        self.runs += 1
        if res.error and res.error != self._logged_error:
            log.warning("vrrp_script %s: %s", self.name, res.error)
            self._logged_error = res.error
        log.debug("vrrp_script %s: %s", self.name, res.describe())
        changed = self.state.feed(res.ok)
        if changed is not None:
            log.info("vrrp_script %s is now %s (%s)", self.name, "OK" if changed else "FAILED", res.describe())
            if self.on_change:
                self.on_change(self.name, changed, res)
        return res

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a callback must not stop the checks
                log.exception("vrrp_script %s: unexpected error", self.name)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "ok": self.state.ok,
            "runs": self.runs,
            "last": None if self.last is None else {
                "ok": self.last.ok,
                "returncode": self.last.returncode,
                "timed_out": self.last.timed_out,
                "error": self.last.error,
                "duration": round(self.last.duration, 4),
            },
        }
