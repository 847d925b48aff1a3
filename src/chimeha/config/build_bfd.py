"""``bfd_instance`` blocks: the generic tree in ``Config.blocks`` -> typed :class:`BfdInstance`.

keepalived.conf(5) "BFD CONFIGURATION", with keepalived 2.2.7's defaults,
ranges and units (keepalived/bfd/bfd_parser.c, include/bfd.h): intervals are
milliseconds with up to three decimals (microsecond resolution), ``min_rx``
and ``min_tx`` default 10 ms (at least 1 ms), ``idle_tx`` 1000 ms (at least
1000 ms), ``multiplier`` 5 (1..255), ``weight`` 0 (-253..253, ``reverse``),
``ttl``/``hoplimit`` 1..255, ``max_hops`` -1..255 (default 0; 255 disables
the check). A value keepalived rejects is an error here too (keepalived
reports it and keeps the default; so do we); values over keepalived's "max
sensible" (10000 ms) are warnings.

Deliberate difference: keepalived's IPv6 ``hoplimit`` default is 64; RFC 5881
section 5 requires 255 sent and received, which is our default for both
families (set ``hoplimit 64`` to copy keepalived).

Pure: no I/O. :func:`bfd_instances` returns the instances and the
diagnostics; :func:`check` appends the diagnostics to a load's list.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping

from .model import NOWHERE, Block, Config, Diagnostic, Where

DEFAULTS = {"min_rx": 10.0, "min_tx": 10.0, "idle_tx": 1000.0, "multiplier": 5, "weight": 0, "max_hops": 0}
MAX_SENSIBLE_MS = 10000.0
MAX_MS = 0xFFFFFFFF // 1000
NAME_MAX = 31  # keepalived's BFD_INAME_MAX (32) minus the NUL
_DECIMAL = re.compile(r"^\d+(\.\d{1,3})?$")


@dataclass(frozen=True)
class BfdInstance:
    """One ``bfd_instance NAME { ... }``; intervals in milliseconds as written."""

    name: str
    where: Where = NOWHERE
    neighbor_ip: str | None = None
    source_ip: str | None = None
    min_rx: float = 10.0
    min_tx: float = 10.0
    idle_tx: float = 1000.0
    multiplier: int = 5
    passive: bool = False
    ttl: int | None = None  # None: 255 (RFC 5881)
    max_hops: int = 0
    weight: int = 0
    weight_reverse: bool = False
    vrrp: bool = False
    checker: bool = False
    positions: Mapping[str, int] = field(default_factory=dict, hash=False)

    @property
    def family(self) -> int:
        return 6 if self.neighbor_ip and ":" in self.neighbor_ip else 4


class _Diags:
    def __init__(self) -> None:
        self.out: list[Diagnostic] = []

    def error(self, where: Where, code: str, msg: str) -> None:
        self.out.append(Diagnostic(where.file, where.line, "error", code, msg))

    def warn(self, where: Where, code: str, msg: str) -> None:
        self.out.append(Diagnostic(where.file, where.line, "warning", code, msg))


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _ms(d: _Diags, name: str, st: Block, low: float) -> float | None:
    word = st.args[0] if st.args else ""
    if not _DECIMAL.match(word) or not low <= float(word) <= MAX_MS:
        d.error(st.where, "invalid-value", f"bfd_instance {name}: {st.keyword} '{word}' is not valid (must be "
                                          f"{low:g}..{MAX_MS} ms, at most 3 decimals); keeping the default")
        return None
    v = float(word)
    if v > MAX_SENSIBLE_MS:
        d.warn(st.where, "not-sensible", f"bfd_instance {name}: {st.keyword} {word} ms is larger than "
                                         f"keepalived's max sensible ({MAX_SENSIBLE_MS:g} ms)")
    return v


def _int(d: _Diags, name: str, st: Block, low: int, high: int) -> int | None:
    word = st.args[0] if st.args else ""
    try:
        v = int(word)
    except ValueError:
        v = None
    if v is None or not low <= v <= high:
        d.error(st.where, "invalid-value", f"bfd_instance {name}: {st.keyword} '{word}' is not valid "
                                          f"(must be {low}..{high}); keeping the default")
        return None
    return v


def _one(block: Block, d: _Diags) -> BfdInstance | None:
    name = block.args[0] if block.args else ""
    if not name:
        d.error(block.where, "missing-name", "bfd_instance has no name")
        return None
    if len(name) > NAME_MAX:
        d.error(block.where, "invalid-name", f"bfd_instance name {name!r} is longer than {NAME_MAX} characters")
    f: dict = {"name": name, "where": block.where}
    pos: dict[str, int] = {}
    for st in block.children or ():
        k = st.keyword
        pos[k] = st.where.line
        if k in ("neighbor_ip", "neighbour_ip", "source_ip"):
            ip = _ip(st.args[0]) if st.args else None
            if ip is None:
                d.error(st.where, "invalid-address", f"bfd_instance {name}: {k} "
                                                     f"'{st.args[0] if st.args else ''}' is not an IP address")
            else:
                f["source_ip" if k == "source_ip" else "neighbor_ip"] = ip
        elif k in ("min_rx", "min_tx"):
            v = _ms(d, name, st, 1)
            if v is not None:
                f[k] = v
        elif k == "idle_tx":
            v = _ms(d, name, st, 1000)
            if v is not None:
                f[k] = v
        elif k == "multiplier":
            v = _int(d, name, st, 1, 255)
            if v is not None:
                f[k] = v
        elif k in ("ttl", "hoplimit"):
            v = _int(d, name, st, 1, 255)
            if v is not None:
                f["ttl"] = v
        elif k == "max_hops":
            v = _int(d, name, st, -1, 255)
            if v is not None:
                f[k] = v
        elif k == "weight":
            v = _int(d, name, st, -253, 253)
            if v is not None:
                f["weight"] = v
            rest = st.args[1:]
            if rest and rest[0] in ("reverse", "noreverse"):
                f["weight_reverse"] = rest[0] == "reverse"
            elif rest:
                d.error(st.where, "invalid-value", f"bfd_instance {name}: weight: unexpected '{rest[0]}' "
                                                   "(expected reverse or noreverse)")
        elif k == "passive":
            f["passive"] = True
        elif k in ("vrrp", "checker"):
            f[k] = True  # the capability declaration reports it (no-effect: one process sees every event)
        # anything else was reported by the parser (unknown-keyword)
    inst = BfdInstance(**f, positions=pos)
    if inst.neighbor_ip is None:
        d.error(block.where, "missing-parameter", f"bfd_instance {name} has no neighbor_ip address set, "
                                                  "disabling instance")
        return None
    if inst.source_ip and ipaddress.ip_address(inst.source_ip).version != ipaddress.ip_address(
            inst.neighbor_ip).version:
        d.error(Where(block.where.file, pos.get("source_ip", block.where.line)), "family-mismatch",
                f"bfd_instance {name}: source address {inst.source_ip} and neighbor address {inst.neighbor_ip} "
                "are not of the same family, disabling instance")
        return None
    if inst.ttl is not None and inst.max_hops > inst.ttl:
        d.warn(Where(block.where.file, pos.get("max_hops", block.where.line)), "max-hops-exceeds-ttl",
               f"bfd_instance {name}: max_hops {inst.max_hops} exceeds ttl/hoplimit {inst.ttl}; using {inst.ttl}")
        inst = BfdInstance(**{**f, "max_hops": inst.ttl}, positions=pos)
    return inst


def bfd_instances(config: Config) -> tuple[dict[str, BfdInstance], list[Diagnostic]]:
    """Every usable ``bfd_instance`` of ``config`` (file order) and the diagnostics about them."""
    d = _Diags()
    out: dict[str, BfdInstance] = {}
    seen_addr: dict[tuple[str, str | None], str] = {}
    for block in getattr(config, "blocks", ()):
        if block.keyword != "bfd_instance":
            continue
        inst = _one(block, d)
        if inst is None:
            continue
        if inst.name in out:
            d.error(block.where, "duplicate-name", f"bfd_instance {inst.name} is defined twice "
                                                   f"(first at {out[inst.name].where.file}:{out[inst.name].where.line});"
                                                   " ignoring this one")
            continue
        key = (inst.neighbor_ip, inst.source_ip)
        if key in seen_addr:
            d.error(block.where, "duplicate-address", f"bfd_instance {inst.name} has the same neighbor/source "
                                                      f"address {inst.neighbor_ip} as {seen_addr[key]}; ignoring it")
            continue
        seen_addr[key] = inst.name
        out[inst.name] = inst
    _refs(config, out, d)
    return out, d.out


def _refs(config: Config, known: Mapping[str, BfdInstance], d: _Diags) -> None:
    holders = [("vrrp_instance", n, i) for n, i in getattr(config, "instances", {}).items()]
    holders += [("vrrp_sync_group", n, g) for n, g in getattr(config, "sync_groups", {}).items()]
    for kind, owner, node in holders:
        for ref in getattr(node, "track_bfds", ()) or ():
            if ref.name not in known:
                d.warn(ref.where, "unknown-bfd", f"{kind} {owner}: track_bfd {ref.name}: no bfd_instance of that "
                                                 "name (ignored)")
            elif ref.weight is not None and not -253 <= ref.weight <= 253:
                d.error(ref.where, "invalid-value", f"{kind} {owner}: track_bfd {ref.name} weight {ref.weight} is "
                                                    "out of range (-253..253)")
    for vs in getattr(config, "virtual_servers", ()):
        for rs in vs.real_servers:
            for chk in rs.checkers:
                if getattr(chk, "kind", "") == "BFD_CHECK" and chk.name and chk.name not in known:
                    d.warn(chk.where, "unknown-bfd", f"BFD_CHECK {chk.name}: no bfd_instance of that name "
                                                     "(the real server stays down)")


def check(config: Config, diags: list[Diagnostic]) -> None:
    """Append the ``bfd_instance`` / ``track_bfd`` / ``BFD_CHECK`` diagnostics of ``config`` to ``diags``."""
    diags.extend(bfd_instances(config)[1])
