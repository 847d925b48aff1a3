"""One line of ``virtual_rules`` / ``static_rules``: keepalived 2.2.7's ip rule grammar, typed.

The words are read the way keepalived's ``alloc_rule`` reads them (vrrp_iprule.c,
read for behaviour, measured with ``keepalived -t`` and a running keepalived):

* selectors ``from``/``to`` ADDRESS[/LEN] (or ``all``), ``not``, ``preference``
  | ``priority`` | ``order`` N (``pref`` is *not* a keyword in 2.2.7), ``tos`` |
  ``dsfield``, ``fwmark`` N[/MASK], ``dev`` | ``iif``, ``oif``, ``uidrange`` A-B,
  ``ipproto``, ``sport`` / ``dport`` A-B (a single port is refused by 2.2.7, and
  so here), ``tunnel-id``, ``realms`` [FROM/]TO, ``suppress_prefixlength`` |
  ``sup_pl``, ``suppress_ifgroup`` | ``sup_group``, ``protocol``, ``no_track``;
* one action: ``table`` | ``lookup`` T, ``goto`` N, ``nop``, ``l3mdev``,
  ``blackhole`` / ``unreachable`` / ``prohibit`` (optionally after ``type``);
* ``inet`` / ``inet6`` also swallow the word after them (2.2.7 steps over it).

A tracked rule (no ``no_track``) always carries protocol 18 ("keepalived"); a
rule without preference gets one from the builder (16384 counting down per
family, in file order, as keepalived does). Pure: name tables are passed in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

RTPROT_KEEPALIVED = 18
RULE_START_PRIORITY = 16384
ACTIONS = {"table": 1, "goto": 2, "nop": 3, "blackhole": 6, "unreachable": 7, "prohibit": 8}
BUILTIN_TABLES = {"unspec": 0, "default": 253, "main": 254, "local": 255}
# iproute2's rt_protos names (a route's ``protocol``).
RT_PROTOS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8, "ra": 9, "mrt": 10,
             "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15, "dhcp": 16, "keepalived": 18,
             "babel": 42, "openr": 99, "bgp": 186, "isis": 187, "ospf": 188, "rip": 189, "eigrp": 192}


def route_protocol(word: str) -> int | None:
    """A route's ``protocol`` word as a number (an rt_protos name or 0-255); None if invalid."""
    if word in RT_PROTOS:
        return RT_PROTOS[word]
    return int(word) if word.isdigit() and int(word) <= 255 else None
# Protocol names when /etc/protocols is not readable (values above 127 are refused by 2.2.7).
BUILTIN_PROTOCOLS = {"ip": 0, "icmp": 1, "igmp": 2, "tcp": 6, "egp": 8, "udp": 17, "dccp": 33, "ipv6": 41, "gre": 47,
                     "esp": 50, "ah": 51, "ipv6-icmp": 58, "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115}


@dataclass(frozen=True)
class RuleSpec:
    """A routing policy rule as chime-ha adds it (fields of ``struct fib_rule_hdr`` + FRA_* attributes)."""

    family: int = 4
    action: str = "table"  # one of ACTIONS, or "l3mdev"
    table: int = 0
    goto: int = 0
    priority: int | None = None
    src: str | None = None  # CIDR; None is "all"
    dst: str | None = None
    invert: bool = False
    tos: int = 0
    fwmark: int | None = None
    fwmask: int | None = None
    realms: int = 0
    suppress_prefixlen: int | None = None
    suppress_ifgroup: int | None = None
    iif: str | None = None
    oif: str | None = None
    tunnel_id: int = 0
    uidrange: tuple[int, int] | None = None
    ipproto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    protocol: int | None = RTPROT_KEEPALIVED
    no_track: bool = False

    def __str__(self) -> str:
        parts = ["inet6"] if self.family == 6 else []
        parts += ["not"] * self.invert + [f"from {self.src or 'all'}"]
        for key, val in (("to", self.dst), ("priority", self.priority), ("iif", self.iif), ("oif", self.oif)):
            if val is not None:
                parts.append(f"{key} {val}")
        if self.fwmark is not None:
            parts.append(f"fwmark {self.fwmark:#x}" + (f"/{self.fwmask:#x}" if self.fwmask is not None else ""))
        if self.action == "table":
            parts.append(f"lookup {self.table}")
        elif self.action == "goto":
            parts.append(f"goto {self.goto}")
        else:
            parts.append(self.action)
        return " ".join(parts)


@dataclass(frozen=True)
class Names:
    """Name tables the grammar resolves (rt_tables, rt_dsfield, protocols); numbers always work."""

    tables: dict
    dsfield: dict
    protocols: dict


DEFAULT_NAMES = Names(dict(BUILTIN_TABLES), {}, dict(BUILTIN_PROTOCOLS))


class RuleError(ValueError):
    """A word of the rule is invalid; str() is keepalived's complaint in chime-ha's words."""


def _uint(word: str, hi: int, what: str, base: int = 0) -> int:
    try:
        val = int(word, base)
    except (TypeError, ValueError):
        raise RuleError(f"invalid {what} '{word}'") from None
    if not 0 <= val <= hi:
        raise RuleError(f"{what} '{word}' is out of range (0-{hi})")
    return val


def _range(word: str, hi: int, what: str) -> tuple[int, int]:
    a, sep, b = word.partition("-")
    if not sep:
        raise RuleError(f"invalid {what} range '{word}': give START-END (keepalived 2.2.7 refuses a single value)")
    lo, up = _uint(a, hi, what, 10), _uint(b, hi, what, 10)
    return lo, up


def _address(word: str) -> tuple[str | None, int | None]:
    if word in ("all", "any", "default"):
        return None, None
    try:
        net = ipaddress.ip_interface(word)
    except ValueError:
        raise RuleError(f"'{word}' is not an address or ADDRESS/PREFIX") from None
    return str(net), net.version


def _named(word: str, table: dict, hi: int, what: str) -> int:
    if word in table:
        return table[word]
    return _uint(word, hi, what)


def parse_rule(words, names: Names = DEFAULT_NAMES, static: bool = False) -> tuple[RuleSpec, list[tuple[str, str]]]:
    """``(spec, warnings)`` for one rule line; raises :class:`RuleError` for a rule keepalived refuses.

    ``warnings`` are ``(code, message)``. ``spec.priority`` is None when the line gives none: the
    builder numbers it. ``static``: a static_rules line, which may name a ``track_group``.
    """
    f: dict = {}
    family = None
    action = None
    table_option = False
    protocol_given = None
    warnings: list[tuple[str, str]] = []
    words = list(words)
    i = 0

    def arg() -> str:
        if i + 1 >= len(words):
            raise RuleError(f"'{words[i]}' is missing its value")
        return words[i + 1]

    def set_family(fam: int, why: str) -> None:
        nonlocal family
        if family is not None and family != fam:
            raise RuleError(why)
        family = fam

    def set_action(act: str) -> None:
        nonlocal action
        if action is not None:
            raise RuleError("more than one of table/goto/nop/blackhole/prohibit/unreachable/l3mdev in one rule")
        action = act

    while i < len(words):
        w = words[i]
        if w in ("inet", "inet6"):
            set_family(6 if w == "inet6" else 4, f"{w} given for an IPv{4 if w == 'inet6' else 6} rule")
            i += 2  # keepalived 2.2.7 steps over the next word too
            continue
        if w in ("from", "to"):
            addr, fam = _address(arg())
            f["src" if w == "from" else "dst"] = addr
            if fam is not None:
                set_family(fam, "rule mixes IPv4 and IPv6")
            i += 2
            continue
        if w in ("table", "lookup"):
            t = _named(arg(), names.tables, 2**32 - 1, "routing table")
            if t == 0:
                raise RuleError("table 0 is not valid")
            set_action("table")
            f["table"] = t
        elif w in ("preference", "priority", "order"):
            f["priority"] = _uint(arg(), 2**32 - 1, "rule preference")
        elif w in ("tos", "dsfield"):
            f["tos"] = _named(arg(), names.dsfield, 255, "TOS value")
        elif w == "fwmark":
            mark, sep, mask = arg().partition("/")
            f["fwmark"] = _uint(mark, 2**32 - 1, "fwmark")
            if sep:
                f["fwmask"] = _uint(mask, 2**32 - 1, "fwmark mask")
        elif w == "realms":
            a, sep, b = arg().partition("/")
            f["realms"] = (_uint(a, 0xFFFF, "realm") << 16 | _uint(b, 0xFFFF, "realm")) if sep \
                else _uint(a, 0xFFFF, "realm")
            table_option = True
            set_family(4, "realms is only valid for IPv4")
        elif w in ("suppress_prefixlength", "sup_pl"):
            f["suppress_prefixlen"] = _uint(arg(), 2**31 - 1, "suppress_prefixlength")
            table_option = True
        elif w in ("suppress_ifgroup", "sup_group"):
            f["suppress_ifgroup"] = 0 if arg() == "default" else _uint(arg(), 2**32 - 1, "suppress_ifgroup")
            table_option = True
        elif w in ("dev", "iif"):
            f["iif"] = arg()
        elif w == "oif":
            f["oif"] = arg()
        elif w == "tunnel-id":
            f["tunnel_id"] = _uint(arg(), 2**64 - 1, "tunnel-id", 10)
        elif w == "uidrange":
            a, sep, b = arg().partition("-")
            if not sep:
                raise RuleError(f"invalid uidrange '{arg()}': give START-END")
            f["uidrange"] = (_uint(a, 2**32 - 1, "uid", 10), _uint(b, 2**32 - 1, "uid", 10))
        elif w == "l3mdev":
            set_action("l3mdev")
            i += 1
            continue
        elif w == "protocol":
            protocol_given = _uint(arg(), 255, "protocol", 10)
        elif w == "ipproto":
            word = arg()
            proto = names.protocols.get(word)
            f["ipproto"] = proto if proto is not None else _uint(word, 127, "ipproto", 10)
            if f["ipproto"] > 127:
                raise RuleError(f"ipproto '{word}' is out of range (0-127 in keepalived 2.2.7)")
        elif w in ("sport", "dport"):
            f[w] = _range(arg(), 0xFFFF, w)
        elif w == "no_track":
            f["no_track"] = True
            i += 1
            continue
        elif w == "track_group" and static:
            warnings.append(("not-implemented", f"track_group {arg()}: not implemented in chime-ha (the rule is "
                             "held whatever its interfaces do)"))
        elif w == "not":
            f["invert"] = True
            i += 1
            continue
        else:
            word = w
            if w == "type":
                if i + 1 >= len(words):
                    raise RuleError("'type' is missing its value")
                i += 1
                word = words[i]
            if word == "goto":
                if i + 1 >= len(words):
                    raise RuleError("'goto' is missing its target")
                f["goto"] = _uint(words[i + 1], 2**32 - 1, "goto target")
                set_action("goto")
                i += 2
                continue
            if word in ("nop", "blackhole", "unreachable", "prohibit"):
                set_action(word)
                i += 1
                continue
            if word in ("unicast", "local", "broadcast", "anycast", "multicast", "throw", "nat", "xresolve"):
                raise RuleError(f"invalid rule action '{word}'")
            raise RuleError(f"unknown rule option '{word}'")
        i += 2
    if action is None:
        raise RuleError("no action (table, goto, nop, blackhole, unreachable, prohibit or l3mdev) in the rule")
    if action == "goto":
        if f.get("priority") is None:
            raise RuleError(f"goto target {f['goto']} given without a preference")
        if f["priority"] >= f["goto"]:
            raise RuleError(f"preference {f['priority']} is not below the goto target {f['goto']}")
    if table_option and action != "table":
        raise RuleError("suppress_prefixlength / suppress_ifgroup / realms need a table action")
    if f.get("no_track"):
        f["protocol"] = protocol_given
    else:
        if protocol_given is not None and protocol_given != RTPROT_KEEPALIVED:
            warnings.append(("rule-protocol-reset", f"protocol {protocol_given} is reset to {RTPROT_KEEPALIVED} "
                             "(keepalived): a tracked rule always has it (add no_track to keep yours)"))
        f["protocol"] = RTPROT_KEEPALIVED
    return RuleSpec(family=family or 4, action=action, **f), warnings


def read_names(read=None) -> Names:
    """The name tables of this host (/etc/iproute2/rt_tables[.d], rt_dsfield, /etc/protocols).

    ``read(path)`` returns a file's text or None (the config reader's file access); missing
    files leave the built-in names.
    """
    if read is None:
        return DEFAULT_NAMES
    tables, dsfield, protocols = dict(BUILTIN_TABLES), {}, dict(BUILTIN_PROTOCOLS)
    for path, into, col in (("/etc/iproute2/rt_tables", tables, 0), ("/etc/iproute2/rt_dsfield", dsfield, 0),
                            ("/etc/protocols", protocols, 1)):
        text = read(path)
        for line in (text or "").splitlines():
            cols = line.split("#", 1)[0].split()
            if len(cols) < 2:
                continue
            try:
                if col == 0:
                    into[cols[1]] = int(cols[0], 0)
                else:
                    into[cols[0]] = int(cols[1])
            except ValueError:
                continue
    return Names(tables, dsfield, protocols)
