"""One declaration per scheduler and per data plane; every list is derived from here.

Pure data (no I/O). The config builder (``lb_algo`` choices), the desired-state
check, the schedulers module, the nftables backend and the data-plane selector
all read these tuples instead of keeping lists of their own, so a new
scheduler or backend is one line here plus its implementation, and forgetting
a list can no longer silently move a service to another data plane.

``exact_on`` names the backends that implement a scheduler *exactly* (the
same choice IPVS would make): the selector only ever picks one of those.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerDecl:
    """``lb_algo NAME``: which backends implement it exactly and which flags it takes."""

    name: str
    summary: str
    exact_on: frozenset[str]
    #: its choice depends on live connection counts (or randomness): no stateless kernel NAT
    connection_aware: bool = False
    #: accepted scheduler flags ("fallback", "port"), from sh-/mh- keywords or flag-1/flag-2
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataPlaneDecl:
    """``--dataplane NAME``."""

    name: str
    summary: str
    #: preference of ``auto`` (lower first); None: never chosen by ``auto``
    rank: int | None
    #: forwards traffic at all (``none`` only runs checks and reports status)
    forwards: bool = True


DATAPLANE_DECLS: tuple[DataPlaneDecl, ...] = (
    DataPlaneDecl("auto", "per service, the fastest backend that implements it exactly", None, forwards=True),
    DataPlaneDecl("ipvs", "the kernel's IP Virtual Server over netlink (needs the ip_vs module)", 0),
    DataPlaneDecl("nft", "kernel NAT with one nftables table", 1),
    DataPlaneDecl("proxy", "userspace TCP/UDP proxy (every scheduler)", 2),
    DataPlaneDecl("none", "health checks and status only; nothing is forwarded", None, forwards=False),
)

#: Every ``--dataplane`` value.
DATAPLANES: tuple[str, ...] = tuple(d.name for d in DATAPLANE_DECLS)
#: The backends ``auto`` tries, fastest first.
ORDER: tuple[str, ...] = tuple(d.name for d in sorted((d for d in DATAPLANE_DECLS if d.rank is not None),
                                                      key=lambda d: d.rank))


_ALL = frozenset(ORDER)  # every forwarding data plane
# nft is stateless kernel NAT: it cannot see live connection counts
_COUNTS = _ALL - {"nft"}

SCHEDULERS: tuple[SchedulerDecl, ...] = (
    SchedulerDecl("rr", "round robin", _ALL),
    SchedulerDecl("wrr", "weighted round robin (interleaved)", _ALL),
    SchedulerDecl("lc", "least connections", _COUNTS, connection_aware=True),
    SchedulerDecl("wlc", "weighted least connections", _COUNTS, connection_aware=True),
    SchedulerDecl("lblc", "locality-based least connections", _COUNTS, connection_aware=True),
    SchedulerDecl("sh", "source hashing", _ALL, flags=("fallback", "port")),
    SchedulerDecl("mh", "Maglev hashing", _ALL, flags=("fallback", "port")),
    SchedulerDecl("dh", "destination hashing", _ALL),
    SchedulerDecl("fo", "weighted failover", _ALL),
    SchedulerDecl("ovf", "overflow", _COUNTS, connection_aware=True),
    SchedulerDecl("lblcr", "locality-based least connections with replication", _COUNTS, connection_aware=True),
    SchedulerDecl("sed", "shortest expected delay", _COUNTS, connection_aware=True),
    SchedulerDecl("nq", "never queue", _COUNTS, connection_aware=True),
    SchedulerDecl("twos", "weighted random of two choices", _COUNTS, connection_aware=True),
)

SCHEDULER = {s.name: s for s in SCHEDULERS}
#: Every ``lb_algo`` keepalived accepts, in keepalived's documentation order.
ALGORITHMS: tuple[str, ...] = tuple(s.name for s in SCHEDULERS)
CONNECTION_AWARE: frozenset[str] = frozenset(s.name for s in SCHEDULERS if s.connection_aware)


def implemented_by(backend: str) -> tuple[str, ...]:
    """The schedulers ``backend`` implements exactly, in declaration order."""
    return tuple(s.name for s in SCHEDULERS if backend in s.exact_on)
