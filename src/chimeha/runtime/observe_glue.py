"""Attach the observe package (journal, control socket) to a running :class:`Daemon`.

Kept apart from the daemon so the VRRP loop never depends on the status
tooling: if any of it is missing or fails, the daemon still runs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("chimeha.runtime.observe")


class _Target:
    """What :class:`chimeha.observe.control.ControlServer` asks of the daemon."""

    def __init__(self, daemon, journal):
        self.daemon = daemon
        self.journal = journal

    def status(self) -> dict[str, Any]:
        return self.daemon.snapshot()

    def journal_entries(self, limit: int | None, instance: str | None) -> list[dict[str, Any]]:
        return self.journal.entries(limit, instance)

    def subscribe(self, listener):
        return self.journal.subscribe(listener)

    async def reload(self) -> dict[str, Any]:
        result = await self.daemon.reload()
        self.journal.append("reload", "-", "-", "-", result.get("message", ""))
        return result

    def dump(self, kind: str) -> list[str]:
        from chimeha.observe.dumps import write_dump
        from chimeha.observe.schema import normalize

        snap = normalize(self.daemon.snapshot())
        kinds = ("data", "stats", "json") if kind == "all" else (kind,)
        return [write_dump(k, snap) for k in kinds]


async def attach(daemon, *, control: str | None, journal: str | None) -> list:
    """Subscribe a journal to the daemon's transitions and serve the control socket.

    Returns a list of ``async`` callables to run at shutdown.
    """
    closers = []
    from chimeha.observe.journal import Journal

    jr = Journal(journal)
    daemon.state_hooks.append(jr.record)
    daemon.journal = jr
    if control:
        from chimeha.observe.control import ControlServer

        server = ControlServer(control, _Target(daemon, jr))
        await server.start()
        closers.append(server.stop)
        log.info("control socket on %s", control)
    return closers
