"""Typed data the :class:`~chimeha.vrrp.node.VrrpNode` keeps and reports (pure).

``InstanceStatus`` is what a status page, ``chime-ha status`` and ``/metrics``
read about one instance; ``ReloadPlan`` is what a reload will do, computed
before anything is touched. Both are frozen: the node builds them, nobody
else mutates them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from chimeha.vrrp.events import InstanceSpec, State, StateChanged

#: Failover durations kept per instance for status (the count is a total).
RECENT_FAILOVERS = 20


@dataclass
class InstanceStats:
    """Node-side bookkeeping of one instance (mutable; only the node writes it)."""

    sent: int = 0
    send_errors: int = 0
    received: int = 0
    drops: Counter = field(default_factory=Counter)
    vips_owned: bool = False
    last_change: StateChanged | None = None
    last_rx: float | None = None
    failovers: list[float] = field(default_factory=list)  # the most recent, oldest first (capped)
    failover_count: int = 0
    split_peer: str | None = None
    split_since: float | None = None

    def note_failover(self, seconds: float) -> None:
        self.failovers.append(seconds)
        self.failover_count += 1
        del self.failovers[:-RECENT_FAILOVERS]


@dataclass(frozen=True)
class InstanceStatus:
    """One instance as the node sees it now (times are the node's ``now`` clock)."""

    name: str
    spec: InstanceSpec
    state: State
    priority: int
    master: str | None  # the current master's primary address (ours when MASTER)
    advert_interval: float
    counters: dict[str, int]
    sent: int
    send_errors: int
    received: int
    drops: dict[str, int]
    vips_owned: bool
    last_change: StateChanged | None
    failovers: tuple[float, ...]
    failover_count: int
    split_brain_peer: str | None
    split_brain_since: float | None
    faults: tuple[str, ...]

    @property
    def split_brain(self) -> bool:
        return self.split_brain_peer is not None


def strip_where(obj):
    if dataclasses.is_dataclass(obj) and any(f.name == "where" for f in dataclasses.fields(obj)):
        return dataclasses.replace(obj, where=None)
    return obj


def spec_key(spec: InstanceSpec | None):
    """A spec with its file:line positions removed: moving a block is not a change."""
    if spec is None:
        return None
    return dataclasses.replace(
        spec, where="",
        virtual_ipaddresses=tuple(map(strip_where, spec.virtual_ipaddresses)),
        virtual_ipaddresses_excluded=tuple(map(strip_where, spec.virtual_ipaddresses_excluded)),
        virtual_routes=tuple(map(strip_where, spec.virtual_routes)))


@dataclass(frozen=True)
class ReloadPlan:
    """What :meth:`VrrpNode.apply_reload` will do; computed without touching anything.

    ``specs``/``groups``: the new configuration. ``kept`` instances keep their
    state, timers and VIPs; ``changed`` ones are rebuilt (a MASTER stays
    MASTER, VIPs it no longer lists are in ``vips_removed``, virtual routes and
    rules in ``routes_removed``: deleted, the rest re-added); ``added`` ones
    start; ``removed`` ones shut down (priority 0, VIPs removed).
    """

    specs: tuple[InstanceSpec, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    kept: tuple[str, ...]
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    vips_removed: tuple[tuple[str, tuple], ...] = ()  # (instance, VIP config objects to delete)
    routes_removed: tuple[tuple[str, tuple, tuple], ...] = ()  # (instance, routes, rules to delete)

    def summary(self) -> str:
        return (f"{len(self.kept)} instance(s) unchanged, {len(self.changed)} changed, "
                f"{len(self.added)} added, {len(self.removed)} removed")
