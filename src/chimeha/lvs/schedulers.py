"""Pure connection schedulers: every ``lb_algo`` keepalived accepts.

Theory of operation
-------------------
A scheduler chooses the real server for a *new* connection (or the first
datagram of a UDP flow). It sees the servers of one virtual service in
configuration order, each with its weight and its active/inactive connection
counts, the client address, the destination (virtual) address and ``now``.
It never reads a clock, a socket or the kernel: the caller (the userspace
proxy, or a test) owns the counters and passes time in. Randomness (only
``twos`` uses it) comes from an injectable ``rng``.

The algorithms follow the documented semantics of Linux IPVS (ipvsadm(8),
the LVS scheduling documentation) so that a service behaves the same on every
chime-ha data plane:

``rr``    round robin over servers with weight > 0.
``wrr``   interleaved weighted round robin: a current weight steps down by the
          gcd of the weights from the maximum; servers whose weight is at
          least the current weight are picked in turn (3,1 -> A A A B).
``lc``    least connections; load = active * 256 + inactive.
``wlc``   least load / weight.
``sed``   shortest expected delay: least (active + 1) / weight.
``nq``    never queue: an idle server if there is one, else ``sed``.
``sh``    source hashing into a 256-bucket table in which each server holds
          ``weight`` consecutive turns; an unavailable server's buckets drop
          (or, with ``fallback``, move to the next available server).
``dh``    the same table keyed by the destination address.
``mh``    Maglev hashing (Eisenbud et al., NSDI 2016) with a 251-entry table,
          weights as extra turns in the population rounds.
``lblc``  locality-based least connection: a destination keeps its server
          until that server is overloaded (active > weight while another has
          less than half its weight in use) or the entry idles 6 minutes.
``lblcr`` as ``lblc`` with a *set* of servers per destination: grows on
          overload, sheds its most loaded member after 6 minutes unchanged.
``fo``    weighted failover: the available server with the highest weight.
``ovf``   overflow: the highest-weight server whose active connections are
          below its weight.
``twos``  weighted random of two choices, the less loaded per weight wins.

Persistence (``persistence_timeout`` / ``persistence_granularity``) is the
:class:`Persistence` wrapper: a template maps the client's masked address to
the server chosen for its first connection; every new connection through the
template re-arms it, and it never expires while one of its connections is open.
A template pointing at a removed or weight-0 server is discarded and the
client rescheduled (IPVS with ``expire_quiescent_template=1``).
"""

from __future__ import annotations

import ipaddress
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .types import DestKey, LvsConfigError

# Every lb_algo and which depend on live counts: declared once in catalog.py.
from .catalog import ALGORITHMS, CONNECTION_AWARE  # noqa: E402  (re-exported)

SH_TABLE_SIZE = 256
MH_TABLE_SIZE = 251  # a prime, so every skip value generates a full permutation
LBLC_ENTRY_TIMEOUT = 6 * 60.0


@dataclass(eq=False)
class Server:
    """Scheduling view of one real server; the caller keeps the counters current."""

    key: DestKey
    weight: int = 1
    active: int = 0
    inactive: int = 0

    @property
    def available(self) -> bool:
        return self.weight > 0

    @property
    def load(self) -> int:
        # IPVS weighs an active connection as 256 idle ones.
        return self.active * 256 + self.inactive


def _addr_int(addr: str) -> int:
    return int(ipaddress.ip_address(addr))


def hash32(value: int) -> int:
    """Multiplicative (Knuth) hash of an integer folded to 32 bits."""
    while value >> 32:
        value = (value & 0xFFFFFFFF) ^ (value >> 32)
    return (value * 2654435761) & 0xFFFFFFFF


def fnv1a(data: bytes, seed: int = 0x811C9DC5) -> int:
    h = seed
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


class Scheduler:
    """Base class. ``update(servers)`` replaces the server list (resetting
    position state, as IPVS does on an edit); ``schedule`` picks one."""

    name = ""

    def __init__(self, servers: Sequence[Server] = (), rng: Callable[[int], int] | None = None, **flags):
        self._rng = rng or random.Random().randrange
        self.flags = flags
        self.servers: list[Server] = []
        self.update(servers)

    def update(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)

    def schedule(self, client: str, dest: str = "", now: float = 0.0, client_port: int = 0) -> Server | None:
        raise NotImplementedError

    def _available(self) -> list[Server]:
        return [s for s in self.servers if s.available]


def _least(servers: Sequence[Server], key: Callable[[Server], tuple[int, int]]) -> Server | None:
    """First server minimising num/den, compared exactly by cross-multiplication."""
    best = None
    bn = bd = 0
    for s in servers:
        if not s.available:
            continue
        n, d = key(s)
        if best is None or n * bd < bn * d:
            best, bn, bd = s, n, d
    return best


class RoundRobin(Scheduler):
    name = "rr"

    def update(self, servers):
        super().update(servers)
        self._last = -1

    def schedule(self, client, dest="", now=0.0, client_port=0):
        n = len(self.servers)
        for step in range(1, n + 1):
            i = (self._last + step) % n
            if self.servers[i].available:
                self._last = i
                return self.servers[i]
        return None


class WeightedRoundRobin(Scheduler):
    name = "wrr"

    def update(self, servers):
        super().update(servers)
        weights = [s.weight for s in self.servers if s.weight > 0]
        self._max = max(weights, default=0)
        self._gcd = math.gcd(*weights) if weights else 1
        self._i = -1
        self._cw = 0

    def schedule(self, client, dest="", now=0.0, client_port=0):
        n = len(self.servers)
        if self._max <= 0 or n == 0:
            return None
        # At most one full cycle of current weights is needed to find a server.
        for _ in range(n * (self._max // self._gcd + 1)):
            self._i = (self._i + 1) % n
            if self._i == 0:
                self._cw -= self._gcd
                if self._cw <= 0:
                    self._cw = self._max
            s = self.servers[self._i]
            if s.weight >= self._cw and s.weight > 0:
                return s
        return None

    def cycle(self) -> list[Server]:
        """One full period of the sequence this scheduler produces (state untouched)."""
        saved = (self._i, self._cw)
        total = sum(s.weight for s in self.servers if s.weight > 0) // (self._gcd or 1)
        out = [self.schedule("0.0.0.0") for _ in range(total)]
        self._i, self._cw = saved
        return [s for s in out if s is not None]


class LeastConnection(Scheduler):
    name = "lc"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        return _least(self.servers, lambda s: (s.load, 1))


class WeightedLeastConnection(Scheduler):
    name = "wlc"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        return _least(self.servers, lambda s: (s.load, s.weight))


class ShortestExpectedDelay(Scheduler):
    name = "sed"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        return _least(self.servers, lambda s: (s.active + 1, s.weight))


class NeverQueue(Scheduler):
    name = "nq"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        for s in self.servers:
            if s.available and s.active == 0:
                return s
        return _least(self.servers, lambda s: (s.active + 1, s.weight))


class SourceHash(Scheduler):
    """``sh``; flags ``fallback`` (sh-fallback) and ``port`` (sh-port)."""

    name = "sh"

    def update(self, servers):
        super().update(servers)
        self.table: list[int] = []
        if not self.servers:
            return
        # Each server holds `weight` consecutive turns (at least one, so that a
        # quiescent server keeps its buckets rather than reshuffling everyone).
        i = turns = 0
        for _ in range(SH_TABLE_SIZE):
            self.table.append(i)
            turns += 1
            if turns >= max(self.servers[i].weight, 1):
                i = (i + 1) % len(self.servers)
                turns = 0

    def _key(self, client: str, dest: str, client_port: int) -> str:
        return client

    def bucket(self, addr: str, port: int = 0) -> int:
        v = _addr_int(addr)
        if self.flags.get("port"):
            v = v ^ (port << 16)
        return hash32(v) >> 24  # top 8 bits: 256 buckets

    def schedule(self, client, dest="", now=0.0, client_port=0):
        if not self.table:
            return None
        b = self.bucket(self._key(client, dest, client_port), client_port)
        for probe in range(SH_TABLE_SIZE if self.flags.get("fallback") else 1):
            s = self.servers[self.table[(b + probe) % SH_TABLE_SIZE]]
            if s.available:
                return s
        return None


class DestinationHash(SourceHash):
    name = "dh"

    def _key(self, client, dest, client_port):
        return dest or client


class MaglevHash(Scheduler):
    """``mh``; flags ``fallback`` (mh-fallback) and ``port`` (mh-port)."""

    name = "mh"

    def update(self, servers):
        super().update(servers)
        m = MH_TABLE_SIZE
        live = [i for i, s in enumerate(self.servers) if s.weight > 0]
        self.table: list[int] = [-1] * m
        if not live:
            return
        g = math.gcd(*(self.servers[i].weight for i in live))
        perms = {}
        for i in live:
            name = str(self.servers[i].key).encode()
            offset = fnv1a(name) % m
            skip = fnv1a(name, seed=0x01234567) % (m - 1) + 1
            perms[i] = (offset, skip)
        nxt = {i: 0 for i in live}
        filled = 0
        while filled < m:
            for i in live:
                offset, skip = perms[i]
                for _ in range(self.servers[i].weight // g):
                    while True:
                        c = (offset + nxt[i] * skip) % m
                        nxt[i] += 1
                        if self.table[c] < 0:
                            break
                    self.table[c] = i
                    filled += 1
                    if filled == m:
                        return

    def bucket(self, addr: str, port: int = 0) -> int:
        v = _addr_int(addr)
        if self.flags.get("port"):
            v = v ^ (port << 16)
        return hash32(v) % MH_TABLE_SIZE

    def schedule(self, client, dest="", now=0.0, client_port=0):
        if not self.table or self.table[0] < 0:
            return None
        b = self.bucket(client, client_port)
        for probe in range(MH_TABLE_SIZE if self.flags.get("fallback") else 1):
            s = self.servers[self.table[(b + probe) % MH_TABLE_SIZE]]
            if s.available:
                return s
        return None


def _overloaded(s: Server, servers: Sequence[Server]) -> bool:
    """Busier than its weight while some other server is under half its weight."""
    if s.active <= s.weight:
        return False
    return any(o.available and o.active * 2 < o.weight for o in servers)


class LocalityLeastConnection(Scheduler):
    name = "lblc"

    def update(self, servers):
        super().update(servers)
        self._table: dict[str, tuple[DestKey, float]] = {}

    def expire(self, now: float) -> None:
        for k in [k for k, (_, used) in self._table.items() if now - used > LBLC_ENTRY_TIMEOUT]:
            del self._table[k]

    def schedule(self, client, dest="", now=0.0, client_port=0):
        self.expire(now)
        key = dest or client
        byk = {s.key: s for s in self.servers}
        entry = self._table.get(key)
        s = byk.get(entry[0]) if entry else None
        if s is None or not s.available or _overloaded(s, self.servers):
            s = _least(self.servers, lambda x: (x.load, x.weight))
        if s is not None:
            self._table[key] = (s.key, now)
        return s


class LocalityLeastConnectionReplicated(Scheduler):
    name = "lblcr"

    def update(self, servers):
        super().update(servers)
        # destination -> [server keys in the set, last used, last modified]
        self._table: dict[str, list] = {}

    def schedule(self, client, dest="", now=0.0, client_port=0):
        for k in [k for k, e in self._table.items() if now - e[1] > LBLC_ENTRY_TIMEOUT]:
            del self._table[k]
        key = dest or client
        byk = {s.key: s for s in self.servers}
        entry = self._table.setdefault(key, [[], now, now])
        members = [byk[k] for k in entry[0] if k in byk]
        entry[0] = [m.key for m in members]
        s = _least(members, lambda x: (x.load, x.weight))
        if len(members) > 1 and now - entry[2] > LBLC_ENTRY_TIMEOUT:
            # The set was stable for long enough: shed its most loaded member.
            worst = max((m for m in members), key=lambda x: x.load / max(x.weight, 1))
            entry[0].remove(worst.key)
            entry[2] = now
            if s is worst:
                s = _least([byk[k] for k in entry[0]], lambda x: (x.load, x.weight))
        if s is None or _overloaded(s, self.servers):
            s = _least(self.servers, lambda x: (x.load, x.weight))
            if s is not None and s.key not in entry[0]:
                entry[0].append(s.key)
                entry[2] = now
        entry[1] = now
        return s


class WeightedFailover(Scheduler):
    name = "fo"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        best = None
        for s in self.servers:
            if s.available and (best is None or s.weight > best.weight):
                best = s
        return best


class Overflow(Scheduler):
    name = "ovf"

    def schedule(self, client, dest="", now=0.0, client_port=0):
        best = None
        for s in self.servers:
            if s.available and s.active < s.weight and (best is None or s.weight > best.weight):
                best = s
        return best


class TwoChoices(Scheduler):
    name = "twos"

    def _pick(self, live: list[Server], total: int) -> Server:
        r = self._rng(total)
        for s in live:
            if r < s.weight:
                return s
            r -= s.weight
        return live[-1]

    def schedule(self, client, dest="", now=0.0, client_port=0):
        live = self._available()
        if not live:
            return None
        total = sum(s.weight for s in live)
        a, b = self._pick(live, total), self._pick(live, total)
        # b wins only if strictly less loaded per unit of weight.
        return b if b.load * a.weight < a.load * b.weight else a


_CLASSES = {c.name: c for c in (
    RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection, ShortestExpectedDelay,
    NeverQueue, SourceHash, DestinationHash, MaglevHash, LocalityLeastConnection,
    LocalityLeastConnectionReplicated, WeightedFailover, Overflow, TwoChoices)}


def make_scheduler(name: str, servers: Sequence[Server] = (), rng: Callable[[int], int] | None = None,
                   **flags) -> Scheduler:
    """A scheduler for ``lb_algo`` ``name``; raises LvsConfigError for an unknown one."""
    cls = _CLASSES.get(name)
    if cls is None:
        raise LvsConfigError(f"unknown lb_algo {name!r} (known: {' '.join(ALGORITHMS)})")
    return cls(servers, rng=rng, **flags)


def mask_client(addr: str, granularity: str | None) -> str:
    """The client address reduced to its persistence granularity (a netmask or prefix length)."""
    if not granularity:
        return addr
    ip = ipaddress.ip_address(addr)
    try:
        # ip_network takes both forms: a prefix length ("64") or a netmask ("255.255.255.0")
        net = ipaddress.ip_network(f"{addr}/{granularity}", strict=False)
    except ValueError as e:
        raise LvsConfigError(f"bad persistence_granularity {granularity!r}: {e}") from None
    if net.version != ip.version:
        return addr
    return str(net.network_address)


@dataclass
class _Template:
    server: DestKey
    expires: float
    open: int = 0


@dataclass
class Persistence:
    """Client affinity on top of any scheduler (``persistence_timeout``)."""

    scheduler: Scheduler
    timeout: float
    granularity: str | None = None
    templates: dict[str, _Template] = field(default_factory=dict)

    def _expire(self, now: float) -> None:
        dead = [k for k, t in self.templates.items() if t.open <= 0 and t.expires <= now]
        for k in dead:
            del self.templates[k]

    def schedule(self, client, dest="", now=0.0, client_port=0) -> Server | None:
        """Pick a server for a new connection from ``client``; counts it as open."""
        self._expire(now)
        key = mask_client(client, self.granularity)
        byk = {s.key: s for s in self.scheduler.servers}
        t = self.templates.get(key)
        s = byk.get(t.server) if t else None
        if s is None or not s.available:
            s = self.scheduler.schedule(client, dest, now, client_port)
            if s is None:
                self.templates.pop(key, None)
                return None
            t = self.templates[key] = _Template(s.key, now + self.timeout)
        t.expires = now + self.timeout
        t.open += 1
        return s

    def closed(self, client: str, now: float) -> None:
        """A connection scheduled through the template for ``client`` ended."""
        t = self.templates.get(mask_client(client, self.granularity))
        if t is not None and t.open > 0:
            t.open -= 1

    def update(self, servers: Sequence[Server]) -> None:
        self.scheduler.update(servers)

    @property
    def servers(self) -> list[Server]:
        return self.scheduler.servers
