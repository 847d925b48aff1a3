"""BFD_CHECK: a real server is up while its BFD session (``bfd_instance NAME``) is Up.

keepalived.conf(5): ``BFD_CHECK { name NAME }`` follows the state of the
named ``bfd_instance``. The sessions live in :mod:`chimeha.runtime.bfd`,
which publishes every state change to :data:`STATES`; a probe only reads it,
and the checker runner wakes on a change (:meth:`SessionStates.wait`) instead
of waiting for ``delay_loop``, so a session going Down takes its real server
out at once (``retry`` and ``warmup`` default to 0 for this checker).

Before the session has ever been Up, and for a name no bfd_instance has, the
checker is down (keepalived: the session starts Down).
"""

from __future__ import annotations

import asyncio

from chimeha.check.spec import CheckResult, Target


class SessionStates:
    """Up/down of every BFD session of this process, with a wake-up per change."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[bool, str]] = {}
        self._events: dict[str, asyncio.Event] = {}

    def publish(self, name: str, up: bool, detail: str) -> None:
        self._states[name] = (up, detail)
        ev = self._events.pop(name, None)
        if ev is not None:
            ev.set()

    def forget(self, name: str) -> None:
        self.publish(name, False, f"BFD session {name} was removed")
        self._states.pop(name, None)

    def clear(self) -> None:
        for name in list(self._states):
            self.forget(name)

    def get(self, name: str) -> tuple[bool, str] | None:
        return self._states.get(name)

    async def wait(self, name: str, timeout: float) -> bool:
        """Sleep up to ``timeout`` s; True if the session's state changed meanwhile."""
        ev = self._events.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), max(0.0, timeout))
            return True
        except asyncio.TimeoutError:
            return False


STATES = SessionStates()


async def probe_bfd(checker, target: Target, timeout: float) -> CheckResult:
    """One look at the session named by ``checker.name``."""
    name = checker.name or ""
    if not name:
        return CheckResult(False, "BFD_CHECK has no name")
    state = STATES.get(name)
    if state is None:
        return CheckResult(False, f"BFD_CHECK {name}: no BFD session of that name is running")
    up, detail = state
    return CheckResult(up, f"BFD_CHECK {name}: {detail}")
