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

Trackers written on the group (``track_script``, ``track_interface``,
``track_file``, ``track_process``, ``track_bfd`` inside ``vrrp_sync_group``)
are attached to every member by :func:`member_tracks` (keepalived 2.2.7's
rules, below); the node then feeds one result of such a tracker to every
member, so a failed weight-0 group tracker faults each member and the group
follows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from chimeha.track.spec import TrackSpec
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


# --------------------------------------------------------------------------- tracking
# keepalived 2.2.7 (vrrp.c vrrp_complete_instance and sync_group_tracking_init):
#
# * a tracker written on the sync group is attached to every member, with its
#   weight (a weight-0 tracker failing puts each member, so the group, in
#   FAULT); if any member is the address owner (priority 255) the group's
#   weights are cleared ("Cannot have weighted track ... clearing weight");
# * a member's own weighted trackers are not allowed unless the group says
#   ``sync_group_tracking_weight`` (or the deprecated ``global_tracking``):
#   a weighted track_interface becomes weight 0 (it faults the instance), a
#   weighted track_script or track_bfd is dropped, a track_file with weight 1
#   (its default) becomes weight 0 and one with another weight is dropped;
#   track_process keeps its weight (2.2.7 does not check it);
# * a tracker on both the member and its group counts once: with the group's
#   weight, unless the member's own entry is unweighted (add_vrrp_to_track_script).


def member_tracks(own: Iterable[TrackSpec], group: Iterable[TrackSpec], *, tracking_weight: bool,
                  owner_in_group: bool) -> tuple[TrackSpec, ...]:
    """The trackers one sync-group member runs with: its own (after keepalived's rules) then the group's."""
    out: list[TrackSpec] = []
    for t in own:
        if t.weight and not tracking_weight:
            if t.kind == "interface" or (t.kind == "file" and t.weight == 1):
                t = replace(t, weight=0, reverse=False)
            elif t.kind in ("script", "file", "bfd"):
                continue
        out.append(t)
    for t in group:
        if owner_in_group and t.weight:
            t = replace(t, weight=0, reverse=False)
        same = next((i for i, o in enumerate(out) if (o.kind, o.name) == (t.kind, t.name)), None)
        if same is None:
            out.append(t)
        elif out[same].weight:  # on the member and the group: the group's weight, unless the member's is 0
            out[same] = replace(out[same], weight=t.weight, reverse=t.reverse, group=t.group)
    return tuple(out)


def ignored_own_weight(t: TrackSpec) -> str | None:
    """What keepalived does with a member's own weighted tracker without sync_group_tracking_weight (None: keeps it)."""
    if not t.weight:
        return None
    if t.kind == "interface" or (t.kind == "file" and t.weight == 1):
        return "its weight is ignored (weight 0: a failure puts the sync group in FAULT)"
    if t.kind in ("script", "file", "bfd"):
        return "it is ignored"
    return None
