"""All BFD sessions of one node: receive checks, demultiplexing, one timer (pure).

Theory of operation
-------------------
The node is what the runtime drives (the unit of sans-I/O, like the VRRP
node): :meth:`BfdNode.receive` takes one datagram with its source,
destination and received TTL, applies the stateless checks of
:func:`chimeha.bfd.packet.validate` (RFC 5880 section 6.8.6), then finds the
session (6.8.6: by Your Discriminator when non-zero, else - single hop,
RFC 5881 section 3 - by the source address, and the destination when the
session has a ``source_ip``), checks the TTL against that session's
``ttl - max_hops`` (RFC 5881 section 5: 255) and hands the packet over.
Every discarded packet is counted by :class:`~chimeha.bfd.packet.DropReason`
(node-wide and, when a session is known, per session); nothing a peer sends
can raise out of :meth:`receive`.

Local discriminators are drawn from the injected ``random`` source, non-zero
and unique on the node (RFC 5880 section 6.3).
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections import Counter
from typing import Callable, Iterable

from chimeha.bfd.packet import ControlPacket, Drop, DropReason, validate
from chimeha.bfd.session import Session, SessionSpec


def _norm(addr: str | None) -> str | None:
    if addr is None:
        return None
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class BfdNode:
    """The sessions of one node (pure; see the module docstring)."""

    def __init__(self, specs: Iterable[SessionSpec] = (), *, random: Callable[[], float] = _random.random):
        self.random = random
        self.sessions: dict[str, Session] = {}
        self._by_discr: dict[int, Session] = {}
        self.drops: Counter = Counter()
        self.received = 0
        self._started_at: float | None = None
        self._stash: list = []  # actions of removed sessions
        for spec in specs:
            self.add(spec)

    # -- sessions --------------------------------------------------------
    def add(self, spec: SessionSpec, now: float | None = None) -> Session:
        """Add a session (started at once if the node has started)."""
        if spec.name in self.sessions:
            raise ValueError(f"BFD session {spec.name} exists already")
        sess = Session(spec, self._new_discr(), random=self.random)
        self.sessions[spec.name] = sess
        self._by_discr[sess.local_discr] = sess
        if self._started_at is not None:
            sess.start(self._started_at if now is None else now)
        return sess

    def remove(self, name: str, now: float) -> None:
        """Stop a session: the remote is told AdminDown once, then it is forgotten."""
        sess = self.sessions.pop(name, None)
        if sess is None:
            return
        sess.admin_down(now)
        self._stash.extend(sess.pop_actions())
        self._by_discr.pop(sess.local_discr, None)

    def _new_discr(self) -> int:
        while True:
            d = 1 + int(self.random() * 0xFFFFFFFE)
            if 0 < d <= 0xFFFFFFFF and d not in self._by_discr:
                return d

    def start(self, now: float) -> None:
        self._started_at = now
        for sess in self.sessions.values():
            sess.start(now)

    # -- inputs ----------------------------------------------------------
    def receive(self, data: bytes, source: str, destination: str | None, ttl: int | None,
                now: float) -> Session | Drop:
        """One UDP datagram to port 3784; the session that took it, or the :class:`Drop`."""
        self.received += 1
        try:
            verdict = validate(data, ttl=None)
            if isinstance(verdict, Drop):
                return self._drop(verdict, None)
            sess = self._demux(verdict, _norm(source), _norm(destination))
            if isinstance(sess, Drop):
                return self._drop(sess, None)
            if ttl is not None and ttl < sess.spec.min_ttl:
                return self._drop(Drop(DropReason.TTL, f"TTL {ttl} < {sess.spec.min_ttl}"), sess)
            sess.handle_packet(verdict, now)
            return sess
        except Exception as exc:  # never let one packet stop the node
            return self._drop(Drop(DropReason.INTERNAL, repr(exc)), None)

    def _demux(self, p: ControlPacket, source: str | None, destination: str | None) -> Session | Drop:
        if p.your_discr:
            sess = self._by_discr.get(p.your_discr)
            if sess is None:
                return Drop(DropReason.UNKNOWN_SESSION, f"Your Discriminator {p.your_discr} from {source}")
            if _norm(sess.spec.neighbor) != source:
                return Drop(DropReason.WRONG_ADDRESS, f"session {sess.name} is with {sess.spec.neighbor}, "
                                                      f"packet from {source}")
            return sess
        for sess in self.sessions.values():
            if _norm(sess.spec.neighbor) == source and (
                    sess.spec.source is None or destination is None or _norm(sess.spec.source) == destination):
                return sess
        return Drop(DropReason.UNKNOWN_SESSION, f"no session with {source}")

    def _drop(self, drop: Drop, sess: Session | None) -> Drop:
        self.drops[drop.reason.value] += 1
        if sess is not None:
            d = sess.counters.drops
            d[drop.reason.value] = d.get(drop.reason.value, 0) + 1
        return drop

    def handle_timer(self, now: float) -> None:
        for sess in self.sessions.values():
            t = sess.get_timer()
            if t is not None and now >= t:
                sess.handle_timer(now)

    def get_timer(self) -> float | None:
        times = [t for t in (s.get_timer() for s in self.sessions.values()) if t is not None]
        return min(times) if times else None

    def admin_down(self, name: str, now: float) -> None:
        self.sessions[name].admin_down(now)

    def admin_up(self, name: str, now: float) -> None:
        self.sessions[name].admin_up(now)

    def pop_actions(self) -> list:
        out, self._stash = self._stash, []
        for sess in self.sessions.values():
            out.extend(sess.pop_actions())
        return out

    def snapshot(self) -> dict:
        """``{"sessions": {name: ...}, "drops_by_reason": {...}, "received": n}``."""
        return {"sessions": {n: s.snapshot() for n, s in self.sessions.items()},
                "drops_by_reason": dict(self.drops), "received": self.received}
