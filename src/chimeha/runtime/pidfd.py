"""Process exits as events: one pidfd per watched PID on the asyncio loop.

A pidfd (``os.pidfd_open``, Linux 5.3) becomes readable when its process
exits (turns zombie), in any PID namespace and without polling; the loop's
``add_reader`` reports it at once. Used by fast script detection
(:mod:`chimeha.runtime.fast_detect`) and by ``vrrp_track_process``
(:mod:`chimeha.runtime.proc_monitor`): one code path for both.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable


class ExitWatcher:
    """Calls ``on_exit(pid)`` once when a watched process exits.

    :meth:`watch` returns False when the process is already gone and raises
    ``OSError`` when pidfds are not available (ENOSYS on an old kernel).
    """

    def __init__(self, on_exit: Callable[[int], None], loop: asyncio.AbstractEventLoop | None = None):
        self.on_exit = on_exit
        self._loop = loop
        self._fds: dict[int, int] = {}  # pid -> pidfd

    @property
    def pids(self) -> set[int]:
        return set(self._fds)

    def __contains__(self, pid: int) -> bool:
        return pid in self._fds

    def __len__(self) -> int:
        return len(self._fds)

    def watch(self, pid: int) -> bool:
        """Start watching ``pid`` (idempotent); False if it does not exist any more."""
        if pid in self._fds:
            return True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        self._fds[pid] = fd
        self._loop.add_reader(fd, self._readable, pid)
        return True

    def unwatch(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _readable(self, pid: int) -> None:
        if pid not in self._fds:
            return
        self.unwatch(pid)
        self.on_exit(pid)

    def close(self) -> None:
        for pid in list(self._fds):
            self.unwatch(pid)
