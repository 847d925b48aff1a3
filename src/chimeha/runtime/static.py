"""keepalived's ``static_ipaddress``, ``static_routes`` and ``static_rules``: held for the daemon's life.

They are tied to no VRRP state (keepalived 2.2.7, measured in a namespace):
added at start before any instance runs, kept while running, reconciled on
SIGHUP (what left the file is deleted, what is new is added, the rest is not
touched), and deleted at stop, after the instances have let their VIPs go.

The desired state is pure (:func:`desired`, :func:`diff`); :class:`StaticManager`
carries a diff out on the daemon's netlink worker thread (the same FIFO as the
VIPs, so at start they are in place before the first VIP). Adds go addresses,
routes, rules (a route may need the address, a rule the route's table);
deletes the other way round. A failed line is logged and the others go on,
as keepalived does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chimeha.net.addresses import AddressError, AddressManager, Route, Vip, route_from_config, vip_from_config

log = logging.getLogger("chimeha.runtime.static")

#: keepalived's interface for an address line without ``dev`` (default_interface is not implemented here).
DEFAULT_INTERFACE = "eth0"


@dataclass(frozen=True)
class StaticSet:
    """Static addresses, routes and rules, as the netlink layer adds them (order kept, no duplicates)."""

    addresses: tuple[Vip, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Any, ...] = ()  # config.rules.RuleSpec

    def __bool__(self) -> bool:
        return bool(self.addresses or self.routes or self.rules)

    def count(self) -> int:
        return len(self.addresses) + len(self.routes) + len(self.rules)


def desired(config) -> StaticSet:
    """What ``config`` asks for (lines that cannot be turned into a request are logged and left out)."""
    addresses, routes = [], []
    if config is None:
        return StaticSet()
    for va in config.static_ipaddresses:
        try:
            addresses.append(vip_from_config(va, DEFAULT_INTERFACE))
        except ValueError as exc:
            log.error("%sstatic address %s: %s", va.where, va.address, exc)
    for vr in config.static_routes:
        try:
            routes.append(route_from_config(vr, None))
        except ValueError as exc:
            log.error("%sstatic route %s: %s", vr.where, " ".join(vr.words), exc)
    rules = [r.spec for r in config.static_rules if r.spec is not None]
    return StaticSet(tuple(dict.fromkeys(addresses)), tuple(dict.fromkeys(routes)), tuple(dict.fromkeys(rules)))


def diff(old: StaticSet, new: StaticSet) -> tuple[StaticSet, StaticSet]:
    """``(to delete, to add)`` to go from ``old`` (held now) to ``new``; what both have is left alone."""
    def minus(a, b):
        keep = set(b)
        return tuple(x for x in a if x not in keep)
    return (StaticSet(minus(old.addresses, new.addresses), minus(old.routes, new.routes), minus(old.rules, new.rules)),
            StaticSet(minus(new.addresses, old.addresses), minus(new.routes, old.routes), minus(new.rules, old.rules)))


def apply(m: AddressManager, remove: StaticSet, add: StaticSet) -> int:
    """Delete ``remove`` then add ``add`` with ``m`` (worker thread); returns how many kernel objects changed."""
    changed = 0
    steps = [("rule", r, lambda r: m.rule("del", r)) for r in remove.rules]
    steps += [("route", r, lambda r: m.route("del", r)) for r in remove.routes]
    steps += [("address", a, m.delete) for a in remove.addresses]
    steps += [("address", a, m.add) for a in add.addresses]
    steps += [("route", r, lambda r: m.route("add", r)) for r in add.routes]
    steps += [("rule", r, lambda r: m.rule("add", r)) for r in add.rules]
    adding_from = len(remove.rules) + len(remove.routes) + len(remove.addresses)
    for n, (what, obj, fn) in enumerate(steps):
        verb = "added" if n >= adding_from else "removed"
        try:
            if fn(obj):
                changed += 1
                log.info("static %s %s: %s", what, verb, obj)
        except (AddressError, ValueError, OSError) as exc:
            log.error("static %s %s: %s", what, obj, exc)
    return changed


class StaticManager:
    """Holds the static set of the running configuration through a netlink worker (``submit``/``call``)."""

    def __init__(self, worker):
        self._nl = worker
        self.held = StaticSet()

    def _run(self, remove: StaticSet, add: StaticSet, wait: bool):
        if not remove and not add:
            return None
        fut = self._nl.submit(apply, remove, add)
        return fut.result() if wait else fut

    def start(self, config) -> None:
        """Add the static set of ``config``; waits, so it is in place before any instance starts."""
        want = desired(config)
        self._run(StaticSet(), want, wait=True)
        self.held = want
        if want:
            log.info("static: holding %d address(es), %d route(s), %d rule(s)",
                     len(want.addresses), len(want.routes), len(want.rules))

    def reload(self, config):
        """Reconcile with ``config`` (queued on the worker, not waited for); returns (removed, added)."""
        remove, add = diff(self.held, desired(config))
        self.held = desired(config)
        self._run(remove, add, wait=False)
        if remove or add:
            log.info("static: reload removes %d and adds %d", remove.count(), add.count())
        return remove, add

    def stop(self):
        """Queue the deletion of everything held; returns the worker's future (None when nothing is held)."""
        held, self.held = self.held, StaticSet()
        return self._run(held, StaticSet(), wait=False)
