"""vrrp_sync_group: instances that change state together (keepalived extension).

Theory of operation
-------------------
VRRP itself (RFC 5798) has no groups; keepalived's sync groups make a bundle
of instances behave as one router: if any member enters FAULT every member
does, when the last fault clears they all return to BACKUP, and when one
member becomes MASTER (or drops back to BACKUP) the others follow. The group
is pure: after feeding an event to any member, call :meth:`SyncGroup.sync`
with the same ``now``; it compares member states with what it saw last time
and forces the others, which queue their own actions.
"""

from __future__ import annotations

from typing import Iterable

from chimeha.vrrp.events import State
from chimeha.vrrp.instance import VrrpInstance


class SyncGroup:
    """A named set of :class:`VrrpInstance` kept in step."""

    def __init__(self, name: str, members: Iterable[VrrpInstance]):
        self.name = name
        self.members = list(members)
        self._seen = {m.name: m.state for m in self.members}

    def sync(self, now: float) -> None:
        """Propagate member changes since the last call (idempotent)."""
        for _ in range(len(self.members) + 2):
            if not self._sync_once(now):
                break

    def _sync_once(self, now: float) -> bool:
        changed = False
        own_faulty = [m for m in self.members if m.own_faults]
        if own_faulty:
            culprit = own_faulty[0]
            reason = f"sync group {self.name}: {culprit.name} is FAULT ({culprit.fault_reason()})"
            for m in self.members:
                if m is not culprit and not m.own_faults and m.group_fault != reason:
                    m.set_group_fault(reason, now)
                    changed = True
        else:
            for m in self.members:
                if m.group_fault is not None:
                    m.set_group_fault(None, now)
                    changed = True
        if not changed:
            for m in self.members:
                before = self._seen.get(m.name)
                if m.state is before:
                    continue
                if m.state is State.MASTER:
                    for other in self.members:
                        if other is not m and other.state is State.BACKUP:
                            other.force_state(State.MASTER, now, f"sync group {self.name}: {m.name} became MASTER")
                            changed = True
                elif m.state is State.BACKUP and before is State.MASTER:
                    for other in self.members:
                        if other is not m and other.state is State.MASTER:
                            other.force_state(State.BACKUP, now, f"sync group {self.name}: {m.name} became BACKUP")
                            changed = True
                if changed:
                    break
        self._seen = {m.name: m.state for m in self.members}
        return changed
