"""Two BFD nodes joined by a simulated link (fake clock, no sockets)."""

from __future__ import annotations

import heapq
import itertools

from chimeha.bfd.node import BfdNode
from chimeha.bfd.packet import encode
from chimeha.bfd.session import SendControl, SessionChanged, SessionSpec


class Pair:
    """Nodes ``a`` (address A) and ``b`` (address B), one session each, a link with ``delay``.

    ``cut`` drops everything in both directions; ``changes`` records every
    SessionChanged with the node's name; ``sent`` every packet put on the link.
    """

    A, B = "192.0.2.1", "192.0.2.2"

    def __init__(self, spec_a: dict | None = None, spec_b: dict | None = None, delay: float = 0.001,
                 random=lambda: 1.0, ttl: int = 255):
        self.a = BfdNode([SessionSpec("s", self.B, self.A, **(spec_a or {}))], random=_discr(random, 11))
        self.b = BfdNode([SessionSpec("s", self.A, self.B, **(spec_b or {}))], random=_discr(random, 22))
        self.delay = delay
        self.ttl = ttl
        self.cut = False
        self.now = 0.0
        self.changes: list[tuple[str, SessionChanged]] = []
        self.sent: list[tuple[str, float, SendControl]] = []
        self._q: list = []
        self._seq = itertools.count()

    @property
    def sa(self):
        return self.a.sessions["s"]

    @property
    def sb(self):
        return self.b.sessions["s"]

    def start(self, a: bool = True, b: bool = True) -> None:
        if a:
            self.a.start(self.now)
        if b:
            self.b.start(self.now)
        self._flush()

    def _flush(self) -> None:
        for name, node, other in (("a", self.a, self.b), ("b", self.b, self.a)):
            for act in node.pop_actions():
                if isinstance(act, SessionChanged):
                    self.changes.append((name, act))
                elif isinstance(act, SendControl):
                    self.sent.append((name, self.now, act))
                    if not self.cut:
                        src = self.A if node is self.a else self.B
                        heapq.heappush(self._q, (self.now + self.delay, next(self._seq), other, encode(act.packet),
                                                 src, act.neighbor))

    def run_until(self, t_end: float) -> None:
        """Advance the fake clock to ``t_end``, delivering packets and firing timers in order."""
        while True:
            cands = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            if self._q:
                cands.append(self._q[0][0])
            t = min(cands) if cands else None
            if t is None or t > t_end:
                break
            self.now = max(self.now, t)
            while self._q and self._q[0][0] <= self.now:
                _, _, node, data, src, dst = heapq.heappop(self._q)
                node.receive(data, src, dst, self.ttl, self.now)
            for node in (self.a, self.b):
                nt = node.get_timer()
                if nt is not None and nt <= self.now:
                    node.handle_timer(self.now)
            self._flush()
        self.now = t_end

    def changes_of(self, name: str) -> list[SessionChanged]:
        return [c for n, c in self.changes if n == name]


def _discr(random, seed: int):
    first = [True]

    def r() -> float:
        if first[0]:  # the discriminator draw: distinct per node
            first[0] = False
            return seed / 1000
        return random()

    return r
