"""Virtual IP addresses and virtual routes over netlink (pyroute2).

Operations are idempotent: adding an address already present or deleting one
that is gone is not an error, because the kernel's state is the truth and a
previous run (killed with SIGKILL) may have left a VIP behind. Every call
reports what it changed so the daemon can log it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from chimeha.config.rules import RTPROT_KEEPALIVED, route_protocol

log = logging.getLogger("chimeha.net.addresses")

IFA_F_NODAD = 0x02
_EEXIST = 17
_EADDRNOTAVAIL = 99
_ESRCH = 3
_ENOENT = 2

_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


class AddressError(OSError):
    """A netlink request for a VIP or route failed for a reason other than 'already done'."""


@dataclass(frozen=True)
class Vip:
    """One address to hold on an interface while MASTER."""

    address: str  # bare address
    prefixlen: int
    dev: str
    label: str | None = None
    scope: int | None = None
    broadcast: str | None = None
    peer: str | None = None
    nodad: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen} dev {self.dev}"


def parse_scope(scope: str | int | None) -> int | None:
    """Map keepalived's scope words (or a number) to the kernel's value."""
    if scope is None or isinstance(scope, int):
        return scope
    word = str(scope).strip().lower()
    if word.isdigit():
        return int(word)
    if word not in _SCOPES:
        raise ValueError(f"unknown address scope {scope!r}")
    return _SCOPES[word]


def vip_from_config(va, default_dev: str) -> Vip:
    """Build a :class:`Vip` from a config ``VirtualAddress`` (duck-typed)."""
    iface = ipaddress.ip_interface(va.address)
    scope = parse_scope(getattr(va, "scope", None))
    return Vip(
        address=str(iface.ip),
        prefixlen=iface.network.prefixlen,
        dev=getattr(va, "dev", None) or default_dev,
        label=getattr(va, "label", None),
        scope=scope,
        broadcast=getattr(va, "broadcast", None),
        peer=getattr(va, "peer", None),
        # IPv6 VIPs must be usable at once: duplicate address detection would
        # hold them "tentative" for a second after every failover.
        nodad=bool(getattr(va, "nodad", False)) or ":" in str(iface.ip),
    )


class AddressManager:
    """Adds and removes VIPs and routes in the current network namespace."""

    def __init__(self, ipr: IPRoute | None = None):
        self._ipr = ipr or IPRoute()
        self._own_ipr = ipr is None
        self._index_cache: dict[str, int] | None = None  # only inside cached_lookups()

    @property
    def ipr(self) -> IPRoute:
        """The pyroute2 socket (links are made on it too: chimeha.runtime.vmac)."""
        return self._ipr

    def close(self) -> None:
        if self._own_ipr:
            self._ipr.close()

    @contextlib.contextmanager
    def cached_lookups(self):
        """Interface indexes looked up once for the duration of the block (one batch of changes).

        Outside such a block every call looks the interface up again: it may have been
        recreated with a new index since.
        """
        self._index_cache = {}
        try:
            yield self
        finally:
            self._index_cache = None

    def ifindex(self, dev: str) -> int:
        cache = self._index_cache
        if cache is not None and dev in cache:
            return cache[dev]
        if self._own_ipr:
            # Our own socket is in this thread's namespace: one ioctl instead of a link dump
            # (measured ~0.4 ms each with pyroute2's link_lookup).
            try:
                idx = socket.if_nametoindex(dev)
            except (OSError, ValueError):
                raise AddressError(f"interface {dev!r} does not exist") from None
        else:
            found = self._ipr.link_lookup(ifname=dev)
            if not found:
                raise AddressError(f"interface {dev!r} does not exist")
            idx = found[0]
        if cache is not None:
            cache[dev] = idx
        return idx

    def present(self, vip: Vip) -> bool:
        """Whether the kernel has ``vip`` (address and prefix) on its interface."""
        try:
            idx = self.ifindex(vip.dev)
        except AddressError:
            return False
        fam = 2 if vip.family == 4 else 10
        for msg in self._ipr.get_addr(index=idx, family=fam):
            if msg.get("IFA_ADDRESS") == vip.address or msg.get("IFA_LOCAL") == vip.address:
                return True
        return False

    def raw_addresses(self, index: int, family: int):
        """The kernel's address messages for interface ``index`` (pyroute2 objects)."""
        return list(self._ipr.get_addr(index=index, family=family))

    def addresses(self, dev: str) -> set[str]:
        """Addresses currently on ``dev`` (without prefix)."""
        idx = self.ifindex(dev)
        out = set()
        for msg in self._ipr.get_addr(index=idx):
            addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if addr:
                out.add(addr)
        return out

    def add(self, vip: Vip) -> bool:
        """Add ``vip``; True if it was added, False if already present."""
        kw: dict = {"index": self.ifindex(vip.dev), "address": vip.address, "prefixlen": vip.prefixlen}
        if vip.family == 4:
            kw["local"] = vip.address
            if vip.peer:
                kw["address"] = vip.peer
            if vip.label:
                kw["label"] = vip.label
            if vip.broadcast:
                kw["broadcast"] = vip.broadcast
        if vip.scope is not None:
            kw["scope"] = vip.scope
        if vip.nodad and vip.family == 6:
            kw["flags"] = IFA_F_NODAD
        try:
            self._ipr.addr("add", **kw)
        except NetlinkError as exc:
            if exc.code == _EEXIST:
                return False
            raise AddressError(f"cannot add {vip}: {exc.args[-1] if exc.args else exc}") from exc
        return True

    def delete(self, vip: Vip) -> bool:
        """Delete ``vip``; True if it was there, False if it was already gone."""
        try:
            idx = self.ifindex(vip.dev)
        except AddressError:
            return False
        kw: dict = {"index": idx, "address": vip.address, "prefixlen": vip.prefixlen}
        if vip.family == 4:
            kw["local"] = vip.address
            if vip.peer:
                kw["address"] = vip.peer
        try:
            self._ipr.addr("del", **kw)
        except NetlinkError as exc:
            if exc.code in (_EADDRNOTAVAIL, _ESRCH, _ENOENT):
                return False
            raise AddressError(f"cannot delete {vip}: {exc.args[-1] if exc.args else exc}") from exc
        return True

    # -- routes --------------------------------------------------------------
    def route(self, op: str, route: "Route") -> bool:
        """Add or delete one virtual route; idempotent like the address calls."""
        kw: dict = {"dst": route.dst}
        if route.gateway:
            kw["gateway"] = route.gateway
        if route.dev:
            kw["oif"] = self.ifindex(route.dev)
        if route.src:
            kw["prefsrc"] = route.src
        if route.metric is not None:
            kw["priority"] = route.metric
        if route.table is not None:
            kw["table"] = route.table
        if route.scope is not None:
            kw["scope"] = route.scope
        if route.type:
            kw["type"] = route.type
        if route.protocol is not None:
            kw["proto"] = route.protocol
        try:
            self._ipr.route(op, **kw)
        except NetlinkError as exc:
            if op == "add" and exc.code == _EEXIST:
                return False
            if op == "del" and exc.code in (_ESRCH, _ENOENT, _EADDRNOTAVAIL):
                return False
            raise AddressError(f"cannot {op} route {route}: {exc.args[-1] if exc.args else exc}") from exc
        return True

    # -- rules ---------------------------------------------------------------
    def rule(self, op: str, spec) -> bool:
        """Add or delete one ip rule (a ``config.rules.RuleSpec``); idempotent like the others."""
        try:
            self._ipr.rule(op, **rule_request(spec))
        except NetlinkError as exc:
            if op == "add" and exc.code == _EEXIST:
                return False
            if op == "del" and exc.code in (_ESRCH, _ENOENT):
                return False
            raise AddressError(f"cannot {op} rule {spec}: {exc.args[-1] if exc.args else exc}") from exc
        return True


_FR_ACTIONS = {"table": 1, "l3mdev": 1, "goto": 2, "nop": 3, "blackhole": 6, "unreachable": 7, "prohibit": 8}


def rule_request(spec) -> dict:
    """pyroute2 ``rule()`` keywords for a ``RuleSpec``: the fields keepalived 2.2.7 sends (vrrp_iprule.c)."""
    fam = socket.AF_INET6 if spec.family == 6 else socket.AF_INET
    kw: dict = {"family": fam, "action": _FR_ACTIONS[spec.action], "priority": spec.priority, "tos": spec.tos}
    if spec.action == "table":
        kw["table"] = spec.table
    elif spec.action == "goto":
        kw["goto"] = spec.goto
    elif spec.action == "l3mdev":
        kw["l3mdev"] = 1
    if spec.invert:
        kw["flags"] = 2  # FIB_RULE_INVERT
    for key, cidr in (("src", spec.src), ("dst", spec.dst)):
        if cidr:
            iface = ipaddress.ip_interface(cidr)
            kw[key], kw[f"{key}_len"] = str(iface.ip), iface.network.prefixlen
    for key, val in (("fwmark", spec.fwmark), ("fwmask", spec.fwmask), ("suppress_prefixlen", spec.suppress_prefixlen),
                     ("suppress_ifgroup", spec.suppress_ifgroup), ("iifname", spec.iif), ("oifname", spec.oif),
                     ("protocol", spec.protocol), ("ip_proto", spec.ipproto)):
        if val is not None:
            kw[key] = val
    if spec.realms:
        kw["flow"] = spec.realms
    if spec.tunnel_id:
        kw["tun_id"] = spec.tunnel_id
    for key, rng in (("uid_range", spec.uidrange), ("sport_range", spec.sport), ("dport_range", spec.dport)):
        if rng is not None:
            kw[key] = f"{rng[0]}:{rng[1]}"
    return kw


@dataclass(frozen=True)
class Route:
    """A virtual route held while MASTER (keepalived's ``virtual_routes``)."""

    dst: str  # CIDR or "default"
    gateway: str | None = None
    dev: str | None = None
    src: str | None = None
    metric: int | None = None
    table: int | None = None
    scope: int | None = None
    type: str | None = None  # "blackhole", "unreachable", "prohibit"...
    protocol: int | None = 18  # RTPROT_KEEPALIVED, as keepalived 2.2.7 adds its routes

    def __str__(self) -> str:
        parts = [self.dst]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        return " ".join(parts)


_ROUTE_TYPES = ("blackhole", "unreachable", "prohibit", "throw")


def _route_words(words) -> dict:
    """The keywords of a keepalived route line (``src``, ``metric``, ``table``...)."""
    out: dict = {}
    words = list(words or ())
    i = 0
    while i < len(words):
        w = words[i]
        if w in _ROUTE_TYPES:
            out["type"] = w
            i += 1
        elif w == "no_track":
            out["no_track"] = True
            i += 1
        elif w in ("src", "metric", "table", "scope", "via", "gw", "dev", "protocol") and i + 1 < len(words):
            out["gateway" if w in ("via", "gw") else w] = words[i + 1]
            i += 2
        else:
            i += 1
    return out


def route_from_config(vr, default_dev: str | None = None) -> Route:
    """Build a :class:`Route` from a config ``Route`` (destination/via/dev + its words) or a dict."""
    if isinstance(vr, dict):
        fields = dict(vr)
    else:
        fields = _route_words(getattr(vr, "words", ()))
        for attr, key in (("destination", "dst"), ("via", "gateway"), ("dev", "dev")):
            if getattr(vr, attr, None):
                fields[key] = getattr(vr, attr)
    dst = fields.get("dst") or fields.get("to") or fields.get("destination")
    if dst in (None, "default"):
        dst = "0.0.0.0/0"
    elif "/" not in str(dst):
        dst = f"{dst}/{128 if ':' in str(dst) else 32}"
    gw = fields.get("gateway") or fields.get("via")
    table = fields.get("table")
    metric = fields.get("metric")
    rtype = fields.get("type")
    proto = fields.get("protocol")
    # A tracked route always carries protocol 18 (keepalived resets any other); no_track keeps the given one.
    protocol = (route_protocol(str(proto)) if proto is not None else None) if fields.get("no_track") else \
        RTPROT_KEEPALIVED
    return Route(
        dst=str(dst),
        gateway=gw,
        dev=fields.get("dev") or (default_dev if not gw and not rtype else None),
        src=fields.get("src"),
        metric=int(metric) if metric is not None else None,
        table=int(table) if table is not None and str(table).isdigit() else None,
        scope=parse_scope(fields.get("scope")),
        type=rtype if rtype not in (None, "unicast") else None,
        protocol=protocol,
    )
