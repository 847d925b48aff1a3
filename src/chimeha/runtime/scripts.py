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


def user_ids(user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """(uid, gid) to run a script as ``user`` [``group``]; (None, None) for no user. KeyError if unknown."""
    if not user:
        return None, None
    pw = pwd.getpwnam(user)
    gid = pw.pw_gid
    if group:
        import grp

        gid = grp.getgrnam(group).gr_gid
    return pw.pw_uid, gid


async def spawn_detached(argv, *, user: str | None = None, group: str | None = None,
                         env: dict[str, str] | None = None):
    """Start ``argv`` (no shell) as ``user`` [``group``] in its own session, stdio on /dev/null.

    Returns ``(process, None)``, or ``(None, failure)`` with a ScriptResult that
    says why it could not start (unknown user or group, missing file...). Its
    own session makes its pgid its pid, so a timeout can kill every child it forks.
    """
    try:
        uid, gid = user_ids(user, group)
    except KeyError as exc:
        return None, ScriptResult(False, None, error=f"unknown user or group: {exc.args[0]}")
    kw: dict = {}
    if uid is not None:
        kw.update(user=uid, group=gid, extra_groups=[])  # drop root's supplementary groups too
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, env=env, **kw)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, ScriptResult(False, None, error=f"cannot run {argv[0]}: {reason}")
    return proc, None


async def run_program(argv: tuple[str, ...] | list[str], timeout: float | None = None, *,
                      user: str | None = None, group: str | None = None,
                      env: dict[str, str] | None = None) -> ScriptResult:
    """Exec ``argv`` (no shell), wait at most ``timeout`` seconds, kill its group on timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if not argv:
        return ScriptResult(False, None, error="empty command")
    proc, failed = await spawn_detached(argv, user=user, group=group, env=env)
    if failed:
        return failed
    try:
        rc = await wait_bounded(proc.wait(), timeout)
    except BaseException:  # cancelled (stop, reload) or worse: never leave the group behind
        _kill_group(proc.pid)
        _reap_later(proc)
        raise
    if rc is _TIMED_OUT:
        _kill_group(proc.pid)
        try:
            await wait_bounded(proc.wait(), REAP_WAIT)
        except BaseException:
            _reap_later(proc)
            raise
        return ScriptResult(False, None, timed_out=True, duration=loop.time() - started)
    return ScriptResult(rc == 0, rc, duration=loop.time() - started)


_TIMED_OUT = object()
REAP_WAIT = 5.0  # seconds to wait for a killed group's leader to be reaped
STOP_WAIT = 2.0  # seconds ScriptTracker.stop() waits for its loop to end
_reapers: set[asyncio.Task] = set()


async def wait_bounded(aw, timeout: float | None):
    """Await ``aw`` for at most ``timeout`` seconds; ``_TIMED_OUT`` when it did not finish.

    Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation of the caller
    that arrives in the same loop iteration as ``aw``'s result is never
    swallowed (bpo-42130 / gh-86296): ``asyncio.wait`` does not cancel-and-
    await the inner future, so the caller's CancelledError always propagates.
    The inner future is cancelled when the wait ends without it.
    """
    fut = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({fut}, timeout=timeout)
    except BaseException:
        fut.cancel()
        raise
    if fut in done:
        return fut.result()
    fut.cancel()
    return _TIMED_OUT


def _reap_later(proc) -> None:
    """Collect a killed child in the background (bounded), so no zombie or open transport stays."""
    async def reap() -> None:
        await wait_bounded(proc.wait(), REAP_WAIT)

    try:
        task = asyncio.get_running_loop().create_task(reap())
    except RuntimeError:  # loop closing
        return
    _reapers.add(task)
    task.add_done_callback(_reapers.discard)


def insecure_reason(program: str) -> str | None:
    """Why ``program`` is unsafe to run as root under ``enable_script_security``, or None.

    The rule keepalived documents: the script and every directory above it
    must be writable by root only (owner root, no group/other write bit
    unless the group is root's), else any such user could become root.  A
    root-owned directory with the sticky bit (``/tmp``) passes, as in keepalived.
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
        # keepalived 2.2.7 (lib/notify.c): a root-owned sticky directory such as /tmp is safe
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & stat.S_IWOTH and not sticky:
            return f"{current} is writable by everyone"
        if st.st_mode & stat.S_IWGRP and st.st_gid != 0 and not sticky:
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
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self.woken = 0  # early runs asked for by wake()
        # Called with every ScriptResult (after hysteresis), e.g. by runtime.fast_detect.
        self.result_hooks: list = []
        self._logged_error: str | None = None
        # enable_script_security with root: an insecure script is never run.
        self.refused = insecure_reason(self.argv[0]) if (secure and self.argv and not user) else None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"script:{self.name}")

    async def stop(self, timeout: float = STOP_WAIT) -> bool:
        """End the loop and kill a running script's process group; True when it ended.

        Bounded: the loop checks a stop flag besides being cancelled, so even a
        cancellation lost inside the event loop cannot keep it running, and
        this never waits longer than ``timeout``.
        """
        task, self._task = self._task, None
        self._stopping = True
        if task is None or task.done():
            return True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()  # once more; the flag ends it at its next step anyway
            log.warning("vrrp_script %s: did not stop within %.1f s; abandoned", self.name, timeout)
            return False
        if not task.cancelled() and task.exception() is not None:
            log.error("vrrp_script %s: loop failed: %r", self.name, task.exception())
        return True

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
        if self._stopping:
            return res  # stopped while it ran: nobody is to be told any more
        changed = self.state.feed(res.ok)
        if changed is not None:
            log.info("vrrp_script %s is now %s (%s)", self.name, "OK" if changed else "FAILED", res.describe())
            if self.on_change:
                self.on_change(self.name, changed, res)
        for hook in list(self.result_hooks):
            try:
                hook(res)
            except Exception:
                log.exception("vrrp_script %s: result hook failed", self.name)
        return res

    def wake(self) -> None:
        """Run the script now instead of at its next interval (a wake during a run: once more after it)."""
        if self._wake is not None and not self._stopping:
            self.woken += 1
            self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            if self._wake is not None:
                self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a callback must not stop the checks
                log.exception("vrrp_script %s: unexpected error", self.name)
            if self._stopping:
                break
            delay = max(0.0, self.interval - (loop.time() - started))
            if self._wake is None:
                await asyncio.sleep(delay)
            else:
                await wait_bounded(self._wake.wait(), delay)

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


async def stop_all(trackers, timeout: float = STOP_WAIT) -> int:
    """Stop many trackers at once (bounded by ``timeout`` overall); returns how many were abandoned."""
    trackers = list(trackers)
    if not trackers:
        return 0
    results = await asyncio.gather(*(t.stop(timeout) for t in trackers), return_exceptions=True)
    return sum(1 for r in results if r is not True)
