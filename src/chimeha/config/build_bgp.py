"""``chimeha_bgp { ... }``: the typed BGP model from the generic block tree.

keepalived has no BGP keywords; the block is kept by the builder as a generic
:class:`~chimeha.config.model.Block` (``keepalived -t`` reports it as an
unknown keyword and carries on). This module types it and reports every
problem with FILE:LINE (see docs/bgp.md for the grammar)::

    chimeha_bgp {
        local_as 65010
        router_id 10.77.1.11
        hold_time 3                 # keepalive defaults to hold_time / 3
        neighbor 10.77.1.1 {
            remote_as 65000
            bfd
        }
        announce {
            192.168.60.10           # a virtual_server address or a VRRP VIP
        }
        community 65010:100 no-export
        med 10
        prepend 2
        forwarding direct           # nat (default) | direct: stateless Maglev steering, DSR
        track_script {              # optional: announce only while these vrrp_scripts pass
            chk_chime_server
        }
    }
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from chimeha.config.model_bgp import Announce, BgpConfig, Neighbor

from .model import Block, Config, Diagnostic, Where

KEYWORD = "chimeha_bgp"
KEYWORDS = frozenset({"local_as", "router_id", "hold_time", "keepalive", "neighbor", "announce", "community",
                      "med", "prepend", "state_dir", "speaker", "forwarding", "track_script"})
FORWARDING = ("nat", "direct")
NEIGHBOR_KEYWORDS = frozenset({"remote_as", "bfd"})
WELL_KNOWN_COMMUNITIES = frozenset({"no-export", "no-advertise", "local-AS", "graceful-shutdown", "blackhole",
                                    "no-peer"})
AS_TRANS = 23456
MAX_PREPEND = 10


class _Sink:
    def __init__(self, diags: list[Diagnostic]):
        self.diags = diags
        self.failed = False

    def error(self, where: Where, code: str, msg: str) -> None:
        self.failed = True
        self.diags.append(Diagnostic(where.file, where.line, "error", code, f"{KEYWORD}: {msg}"))

    def warning(self, where: Where, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(where.file, where.line, "warning", code, f"{KEYWORD}: {msg}"))


def _one(s: _Sink, b: Block) -> str | None:
    if not b.args:
        s.error(b.where, "missing-parameter", f"'{b.keyword}' is missing its value")
        return None
    if len(b.args) > 1:
        s.warning(b.where, "unexpected-argument", f"'{b.keyword}' takes one value; extra words ignored")
    return b.args[0]


def _int(s: _Sink, b: Block, lo: int, hi: int, code: str = "bad-number") -> int | None:
    word = _one(s, b)
    if word is None:
        return None
    try:
        n = int(word)
    except ValueError:
        s.error(b.where, code, f"{b.keyword} '{word}' is not a number")
        return None
    if not lo <= n <= hi:
        s.error(b.where, code, f"{b.keyword} {n} is out of range {lo}..{hi}")
        return None
    return n


def parse_as(s: _Sink, b: Block, word: str) -> int | None:
    """An AS number: plain (1..4294967295) or asdot (``1.10``); 0 and AS_TRANS are refused."""
    try:
        if "." in word:
            hi, lo = word.split(".", 1)
            n = (int(hi) << 16) | int(lo)
            if not (0 <= int(hi) <= 65535 and 0 <= int(lo) <= 65535):
                raise ValueError
        else:
            n = int(word)
    except ValueError:
        s.error(b.where, "bad-as", f"{b.keyword} '{word}' is not an AS number")
        return None
    if not 1 <= n <= 4294967295:
        s.error(b.where, "bad-as", f"{b.keyword} {word} is out of range 1..4294967295")
        return None
    if n == AS_TRANS:
        s.error(b.where, "bad-as", f"{b.keyword} {n} is AS_TRANS (RFC 6793), not a real AS")
        return None
    return n


def valid_community(word: str) -> bool:
    """RFC 1997 ``ASN:VALUE`` (each 0..65535) or a well-known community name."""
    if word in WELL_KNOWN_COMMUNITIES:
        return True
    parts = word.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return False
    return all(0 <= int(p) <= 65535 for p in parts)


def _ip(s: _Sink, b: Block, word: str, what: str) -> str | None:
    try:
        return str(ipaddress.ip_address(word))
    except ValueError:
        s.error(b.where, "bad-address", f"{what} '{word}' is not an IP address")
        return None


def service_addresses(config: Config) -> set[str]:
    """Addresses chime-ha may announce: virtual_server addresses and VRRP VIPs."""
    out = set()
    for vs in config.virtual_servers:
        if vs.address:
            out.add(str(ipaddress.ip_address(vs.address)))
    for grp in getattr(config, "virtual_server_groups", {}).values():
        for entry in getattr(grp, "members", ()) or ():
            addr = getattr(entry, "address", None)
            if addr:
                try:
                    out.add(str(ipaddress.ip_address(addr)))
                except ValueError:
                    pass
    for inst in config.instances.values():
        for va in inst.virtual_ipaddresses:
            out.add(str(ipaddress.ip_interface(va.address).ip))
    return out


def _neighbor(s: _Sink, b: Block) -> Neighbor | None:
    addr = _ip(s, b, b.args[0], "neighbor") if b.args else None
    if not b.args:
        s.error(b.where, "missing-parameter", "'neighbor' is missing its address")
    remote_as, bfd = None, False
    for c in b.children or ():
        if c.keyword == "remote_as":
            w = _one(s, c)
            remote_as = parse_as(s, c, w) if w is not None else None
        elif c.keyword == "bfd":
            bfd = True  # chime-ha then runs zebra and bfdd next to bgpd (runtime/bgp.py)
        else:
            s.warning(c.where, "unknown-keyword", f"unknown keyword '{c.keyword}' in neighbor (ignored)")
    if b.children is None and len(b.args) >= 3 and b.args[1] == "remote_as":
        # one-line form: neighbor IP remote_as N
        remote_as = parse_as(s, b, b.args[2])
    if addr is None:
        return None
    if remote_as is None:
        s.error(b.where, "missing-parameter", f"neighbor {addr} has no valid remote_as")
        return None
    return Neighbor(addr, remote_as, bfd, b.where)


def _announce(s: _Sink, b: Block, known: set[str]) -> list[Announce]:
    words: list[tuple[str, Where]] = [(w, b.where) for w in b.args]
    for c in b.children or ():
        words += [(c.keyword, c.where)] + [(w, c.where) for w in c.args]
    out = []
    for word, where in words:
        holder = Block("announce", where)
        addr = _ip(s, holder, word.split("/")[0], "announce")
        if addr is None:
            continue
        if addr not in known:
            s.error(where, "unknown-vip", f"announce {addr}: no virtual_server or vrrp_instance has this address")
            continue
        out.append(Announce(addr, where))
    return out


def build_bgp(config: Config, diags: list[Diagnostic]) -> BgpConfig | None:
    """The typed block, or None (no block, or errors: then ``diags`` says why)."""
    blocks = [b for b in config.blocks if b.keyword == KEYWORD]
    if not blocks:
        return None
    s = _Sink(diags)
    for extra in blocks[1:]:
        s.error(extra.where, "duplicate-block", f"a second {KEYWORD} block (the first is at "
                                                f"{blocks[0].where.file}:{blocks[0].where.line})")
    top = blocks[0]
    f: dict = {"where": top.where}
    neighbors: list[Neighbor] = []
    announce: list[Announce] = []
    communities: list[str] = []
    tracked: list[str] = []
    known = service_addresses(config)
    keepalive_set = False
    for b in top.children or ():
        k = b.keyword
        if k == "local_as":
            w = _one(s, b)
            if w is not None:
                f["local_as"] = parse_as(s, b, w)
        elif k == "router_id":
            w = _one(s, b)
            if w is not None:
                try:
                    ipaddress.IPv4Address(w)
                    f["router_id"] = w
                except ValueError:
                    s.error(b.where, "bad-address", f"router_id '{w}' is not an IPv4 address")
        elif k == "hold_time":
            n = _int(s, b, 0, 65535)
            if n is not None and 0 < n < 3:
                s.error(b.where, "bad-number", f"hold_time {n}: must be 0 or at least 3 (RFC 4271 4.2)")
            elif n is not None:
                f["hold_time"] = n
        elif k == "keepalive":
            n = _int(s, b, 0, 65535)
            if n is not None:
                f["keepalive"] = n
                keepalive_set = True
        elif k == "neighbor":
            nb = _neighbor(s, b)
            if nb is not None:
                if any(n.address == nb.address for n in neighbors):
                    s.error(b.where, "duplicate-name", f"neighbor {nb.address} is listed twice")
                else:
                    neighbors.append(nb)
        elif k == "announce":
            announce += _announce(s, b, known)
        elif k == "community":
            if not b.args:
                s.error(b.where, "missing-parameter", "'community' is missing its value")
            for w in b.args:
                if valid_community(w):
                    communities.append(w)
                else:
                    s.error(b.where, "bad-community", f"community '{w}' is neither ASN:VALUE (0..65535 each) "
                                                      f"nor one of {', '.join(sorted(WELL_KNOWN_COMMUNITIES))}")
        elif k == "med":
            f["med"] = _int(s, b, 0, 4294967295)
        elif k == "prepend":
            n = _int(s, b, 0, MAX_PREPEND)
            if n is not None:
                f["prepend"] = n
        elif k == "forwarding":
            w = _one(s, b)
            if w is not None and w not in FORWARDING:
                s.error(b.where, "bad-value", f"forwarding '{w}': expected one of {', '.join(FORWARDING)}")
            elif w is not None:
                f["forwarding"] = w
        elif k == "track_script":
            names = list(b.args) + [c.keyword for c in b.children or ()]
            if not names:
                s.error(b.where, "missing-parameter", "track_script names no vrrp_script")
            for name in names:
                if name not in config.vrrp_scripts:
                    s.error(b.where, "unknown-script", f"track_script {name}: no vrrp_script {name} is defined")
                elif name not in tracked:
                    tracked.append(name)
        elif k in ("state_dir", "speaker"):
            w = _one(s, b)
            if w is not None:
                if not w.startswith("/"):
                    s.error(b.where, "bad-path", f"{k} '{w}' must be an absolute path")
                else:
                    f[k] = w
        else:
            _unknown(s, b, KEYWORDS)
    if f.get("local_as") is None:
        if "local_as" not in [b.keyword for b in top.children or ()]:
            s.error(top.where, "missing-parameter", "no local_as")
        f.pop("local_as", None)
    if not neighbors:
        s.error(top.where, "missing-parameter", "no neighbor: there is nobody to announce to")
    if not announce and not s.failed:
        s.warning(top.where, "bgp-nothing", "no announce entries: the speaker will announce nothing")
    hold = f.get("hold_time", 9)
    if not keepalive_set:
        f["keepalive"] = max(1, hold // 3) if hold else 0
    elif hold and f["keepalive"] >= hold:
        s.error(top.where, "bad-number", f"keepalive {f['keepalive']} must be below hold_time {hold}")
    if f.get("med") is None:
        f.pop("med", None)
    if s.failed or "local_as" not in f:
        return None
    return BgpConfig(neighbors=tuple(neighbors), announce=tuple(announce), communities=tuple(communities),
                     track_scripts=tuple(tracked), **f)


def _unknown(s: _Sink, b: Block, known: Iterable[str]) -> None:
    import difflib

    hint = difflib.get_close_matches(b.keyword, sorted(known), n=1, cutoff=0.75)
    s.warning(b.where, "unknown-keyword", f"unknown keyword '{b.keyword}' (ignored)"
              + (f"; did you mean '{hint[0]}'?" if hint else ""))


def validate_bgp(config: Config, diags: list[Diagnostic]) -> None:
    """For ``validate``: append the block's diagnostics (the model is rebuilt where needed)."""
    build_bgp(config, diags)
