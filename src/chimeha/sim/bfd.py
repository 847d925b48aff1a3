"""BFD detection in the simulator: when a tracked session goes Down, and what that does (pure).

The simulator does not exchange BFD packets; it models the timing the
session would have (RFC 5880 6.8.4 and 6.8.7):

* A session between nodes X and Y exists when each has a ``bfd_instance``
  whose ``neighbor_ip`` is the other's address. It is Up while both run and
  both links are up, one slow interval (``idle_tx``, 1 s: RFC 5880 6.8.3's
  slow start, the worst case of the three-way handshake) after the later of
  the two became ready.
* X sends every ``max(X.min_tx, Y.min_rx)`` seconds from the moment the
  session came Up (jitter ignored). When X goes silent (link cut, crash,
  partition) at ``t``, Y's session goes Down at ``last packet + latency +
  detection time``, the detection time being ``X.multiplier x max(Y.min_rx,
  X.min_tx)`` (remote Detect Mult x the agreed interval): between
  ``detection - interval`` and ``detection`` after ``t``, depending on the
  phase, which ``chimeha.lab.predict`` sweeps.
* A clean stop sends AdminDown: the peer's session goes Down at once, but
  (RFC 5882 3.2) that is no path failure.

On Down the node feeds ``set_tracked(name, False, kind="bfd")`` (track_bfd
weights / FAULT) and, for a failure, ``master_unreachable(X's address)`` to
the instances tracking the session: the daemon's own reaction
(:mod:`chimeha.runtime.bfd`), so a BACKUP takes over after Skew_Time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chimeha.bfd.session import ms
from chimeha.config.build_bfd import bfd_instances

SLOW_UP = 1.0  # RFC 5880 6.8.3: at most one packet per second until Up


@dataclass(frozen=True)
class BfdModel:
    """One ``bfd_instance`` of a node, timers in seconds."""

    name: str
    neighbor: str
    min_tx: float
    min_rx: float
    multiplier: int
    idle_tx: float = SLOW_UP
    source: str | None = None


def bfd_models(config: Any) -> list[BfdModel]:
    known, _ = bfd_instances(config)
    return [BfdModel(i.name, i.neighbor_ip, i.min_tx / 1000.0, i.min_rx / 1000.0, i.multiplier,
                     max(SLOW_UP, i.idle_tx / 1000.0), i.source_ip) for i in known.values()]


def detection_time(local: BfdModel, remote: BfdModel) -> float:
    """What ``local`` waits after the remote's last packet: remote mult x max(local min_rx, remote min_tx)."""
    return remote.multiplier * max(local.min_rx, remote.min_tx)


def tx_interval(sender: BfdModel, receiver: BfdModel) -> float:
    return max(sender.min_tx, receiver.min_rx)


def last_packet_before(t: float, up_at: float, interval: float) -> float:
    """The sender's last packet at or before ``t`` when it sends every ``interval`` from ``up_at``."""
    if t <= up_at:
        return up_at
    return up_at + math.floor((t - up_at) / interval + 1e-9) * interval


def describe_down(neighbor: str, detection: float | None) -> str:
    if detection is None:
        return f"BFD to {neighbor} down: neighbor signaled session down (administratively down)"
    return f"BFD to {neighbor} down: control detection time expired, {ms(detection)}"


@dataclass
class _Directed:
    """Node ``owner``'s session ``name`` to node ``peer``."""

    owner: str
    peer: str
    local: BfdModel
    remote: BfdModel
    up: bool = False
    up_at: float | None = None
    epoch: int = 0  # bumps whenever a scheduled change becomes stale


class BfdLinks:
    """Every BFD session of a simulated segment (see the module docstring)."""

    def __init__(self) -> None:
        self.sessions: list[_Directed] = []

    def pair(self, nodes: dict[str, Any]) -> None:
        """Find the node pairs that configure sessions to each other's address."""
        self.sessions = []
        for x in nodes.values():
            for mx in getattr(x, "bfd", ()):
                y = next((n for n in nodes.values() if n is not x and _addr_of(n, mx.neighbor)), None)
                if y is None:
                    continue
                my = next((m for m in getattr(y, "bfd", ()) if _addr_of(x, m.neighbor)), None)
                if my is not None:
                    self.sessions.append(_Directed(x.name, y.name, mx, my))

    def refresh(self, seg: Any, now: float, stopped: str | None = None) -> None:
        """Something changed (start, stop, crash, link): schedule the sessions' Up / Down."""
        for s in self.sessions:
            owner, peer = seg.nodes[s.owner], seg.nodes[s.peer]
            reachable = owner.running and peer.running and owner.link_up and peer.link_up
            if reachable and not s.up:
                s.epoch += 1
                slow = max(s.local.idle_tx, s.remote.idle_tx)
                seg.schedule(now + slow, self._up, seg, s, s.epoch)
            elif not reachable and s.up:
                s.epoch += 1
                s.up = False
                if not owner.running:
                    continue  # a stopped node's sessions are gone with it
                if stopped == s.peer:  # a clean stop says AdminDown: Down at once, not a failure
                    seg.schedule(now + seg.latency, self._down, seg, s, None)
                    continue
                interval = tx_interval(s.remote, s.local)
                last = last_packet_before(now, s.up_at if s.up_at is not None else now, interval)
                detect = detection_time(s.local, s.remote)
                seg.schedule(max(now, last + seg.latency + detect), self._down, seg, s, detect)
            elif not reachable:
                s.epoch += 1  # a pending Up is stale

    def booted(self, name: str) -> None:
        """A node (re)started: its sessions start Down, as the daemon's do."""
        for s in self.sessions:
            if s.owner == name:
                s.up = False
                s.epoch += 1

    def _up(self, now: float, seg: Any, s: _Directed, epoch: int) -> None:
        if epoch != s.epoch or s.up:
            return
        s.up, s.up_at = True, now
        owner, peer = seg.nodes[s.owner], seg.nodes[s.peer]
        seg.record(now, s.owner, "event", f"BFD {s.local.name} to {s.local.neighbor} up "
                                          f"(detection time {ms(detection_time(s.local, s.remote))})")
        owner.core.set_tracked(s.local.name, True, now, kind="bfd", detail=f"to {s.local.neighbor} up")

    def _down(self, now: float, seg: Any, s: _Directed, detect: float | None) -> None:
        owner = seg.nodes[s.owner]
        if not owner.running:
            return
        why = describe_down(s.local.neighbor, detect)
        seg.record(now, s.owner, "event", f"{why} (session {s.local.name})")
        owner.core.set_tracked(s.local.name, False, now, kind="bfd", detail=why.removeprefix("BFD "))
        if detect is not None:
            names = [sp.name for sp in owner.specs
                     if any(t.kind == "bfd" and t.name == s.local.name for t in sp.tracks)]
            owner.core.master_unreachable(s.local.neighbor, now, why, names)


def _addr_of(node: Any, address: str) -> bool:
    addrs = {node.address, *(sp.primary_address for sp in getattr(node, "specs", ()))}
    return address in addrs
