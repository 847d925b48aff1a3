"""Notify scripts and the notify FIFO, in keepalived's formats.

For a transition of instance (or sync group) NAME to STATE with priority P:

* ``notify_master`` / ``notify_backup`` / ``notify_fault`` / ``notify_stop``
  run as configured (argv, no shell), chosen by STATE;
* then ``notify`` runs with four more arguments: ``INSTANCE|GROUP NAME STATE P``;
* the FIFO gets the line ``INSTANCE "NAME" STATE P`` (``GROUP "NAME" STATE 0``
  for groups, which have no priority of their own: keepalived 2.2.7 writes the 0).

Events that are not transitions (keepalived 2.2.7 vrrp_notify.c), FIFO lines only unless said:

* the effective priority changed, with ``notify_priority_changes`` (instance,
  else its sync group, else global ``vrrp_notify_priority_changes``):
  ``INSTANCE "NAME" MASTER_PRIORITY P`` as MASTER, else ``BACKUP_PRIORITY``;
* a MASTER heard a lower priority: ``INSTANCE "NAME" MASTER_RX_LOWER_PRI P``
  always, and the ``notify_master_rx_lower_pri`` script (no arguments) if set;
* a reload removed the instance: notified as ``DELETED`` with ``notify_deleted``
  (its script, if given, is the state script), else as ``FAULT``.

Scripts run in the background, in transition order per instance (a hung
script delays the next transition's scripts by at most ``ORDER_WAIT``); a
slow or failing script is logged and never blocks the VRRP loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat

from chimeha.runtime.scripts import run_program

log = logging.getLogger("chimeha.runtime.notify")

STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "DELETED")
EVENTS = ("MASTER_PRIORITY", "BACKUP_PRIORITY", "MASTER_RX_LOWER_PRI")  # FIFO words of the non-transitions
ORDER_WAIT = 10.0  # seconds a transition's scripts wait for the previous ones


def fifo_line(kind: str, name: str, state: str, priority: int | None) -> str:
    """One notify-FIFO line (with its newline); a group's priority is 0 (keepalived 2.2.7, measured)."""
    return f'{kind} "{name}" {state} {priority if kind == "INSTANCE" and priority is not None else 0}\n'


class NotifyFifo:
    """A FIFO that notify lines are written to; created if missing.

    Opened read-write and non-blocking so a missing reader neither blocks the
    daemon nor loses the FIFO: lines queue in the pipe until someone reads.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None

    def open(self) -> None:
        try:
            st = os.stat(self.path)
            if not stat.S_ISFIFO(st.st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a FIFO")
        except FileNotFoundError:
            os.mkfifo(self.path, 0o600)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def write(self, line: str) -> bool:
        if self._fd is None:
            return False
        try:
            os.write(self._fd, line.encode())
            return True
        except BlockingIOError:
            log.warning("notify FIFO %s is full; dropped: %s", self.path, line.strip())
        except OSError as exc:
            log.warning("notify FIFO %s: %s", self.path, exc)
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Notifier:
    """Dispatches transitions to scripts and FIFOs."""

    def __init__(self, fifos: list[NotifyFifo] | None = None, *, user: str | None = None,
                 group: str | None = None):
        self.fifos = list(fifos or [])
        self.user = user
        self.group = group
        self._tasks: set[asyncio.Task] = set()
        self._last: dict[tuple[str, str], asyncio.Task] = {}
        self.executed: list[tuple[str, ...]] = []  # history for status/tests (bounded)

    def notify(self, kind: str, name: str, state: str, priority: int | None, scripts) -> None:
        """Report one transition. ``scripts``: the config's VrrpInstance or SyncGroup (or None)."""
        self._fifo(kind, name, state, priority)
        argvs: list[tuple[str, ...]] = []
        if scripts is not None:
            specific = _specific_script(scripts, state)
            if specific:
                argvs.append(tuple(specific))
            generic = scripts.notify
            if generic:
                argvs.append(tuple(generic) + (kind, name, state, str(priority if priority is not None else 0)))
        self._start(kind, name, state, argvs)

    def priority_changed(self, name: str, master: bool, priority: int) -> None:
        """notify_priority_changes: the FIFO line only (keepalived runs no script for it)."""
        self._fifo("INSTANCE", name, "MASTER_PRIORITY" if master else "BACKUP_PRIORITY", priority)

    def master_rx_lower_pri(self, name: str, priority: int, script: tuple[str, ...] | None) -> None:
        """A MASTER heard a lower priority: the FIFO line, and ``script`` (no arguments added) if any."""
        self._fifo("INSTANCE", name, "MASTER_RX_LOWER_PRI", priority)
        self._start("INSTANCE", name, "MASTER_RX_LOWER_PRI", [tuple(script)] if script else [])

    def _fifo(self, kind: str, name: str, state: str, priority: int | None) -> None:
        for fifo in self.fifos:
            fifo.write(fifo_line(kind, name, state, priority))

    def _start(self, kind: str, name: str, state: str, argvs: list[tuple[str, ...]]) -> None:
        if not argvs:
            return
        previous = self._last.get((kind, name))
        task = asyncio.get_running_loop().create_task(self._run(argvs, previous), name=f"notify:{name}:{state}")
        self._last[(kind, name)] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, argvs: list[tuple[str, ...]], previous: asyncio.Task | None) -> None:
        if previous is not None and not previous.done():
            # Scripts of one instance run in transition order, but a hung
            # script may delay the next transition's scripts only so long.
            await asyncio.wait({previous}, timeout=ORDER_WAIT)
        for argv in argvs:
            self.executed.append(argv)
            del self.executed[:-100]
            res = await run_program(argv, None, user=self.user, group=self.group)
            if not res.ok:
                log.warning("notify %s: %s", " ".join(argv), res.describe())

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for running notify scripts, e.g. notify_stop at shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def close(self) -> None:
        for fifo in self.fifos:
            fifo.close()


def _specific_script(scripts, state: str) -> tuple[str, ...] | None:
    """The notify_STATE script of a VrrpInstance / SyncGroup config (keepalived has no other state script)."""
    match state:
        case "MASTER":
            return scripts.notify_master
        case "BACKUP":
            return scripts.notify_backup
        case "FAULT":
            return scripts.notify_fault
        case "STOP":
            return scripts.notify_stop
        case "DELETED":
            return getattr(scripts, "notify_deleted", None) or None  # () = the bare keyword: no script
    return None
