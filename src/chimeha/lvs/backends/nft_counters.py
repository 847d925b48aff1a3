"""Per-real-server named counters in the ``inet chimeha`` table (pure: render and read back).

Three named counters per real server of an address service:

* ``..._c``: connections, the first packet of each new flow DNATed to it;
* ``..._i``: packets and bytes from clients to it (conntrack's original direction);
* ``..._o``: packets and bytes from it back to clients (the reply direction).

Maps ``VIP . real server address . real server port : counter`` pick the
counter. Connections are counted in ``count_new``, a NAT chain on postrouting
just before source NAT: the kernel runs NAT chains for a connection's first
packet only, so that count costs nothing per packet. Packets and bytes are
counted by two filter chains after NAT, ``count_pre`` (prerouting: remote
clients and replies of remote real servers; loopback is skipped, it was
counted on output) and ``count_out`` (output: local clients and replies of a
real server on the director), one rule per direction. Only DNATed connections
(``ct status dnat``) are looked up. The key has no VIP port (nftables cannot concatenate
``ct original proto-dst``): a real server behind two ports of one VIP is
counted for the first of those services only.

A reload replaces the table, so the counters' values are read from the live
table first and written into the new one (:func:`carried`): what arrives
between that read and the load (a few milliseconds) is not counted.
"""

from __future__ import annotations

import hashlib

from ..types import DesiredState, ServiceKey

PROTOS = "meta l4proto { tcp, udp, sctp }"


def counter_base(key: ServiceKey, dest_key: object) -> str:
    return "n_" + hashlib.sha1(f"{key}|{dest_key}".encode()).hexdigest()[:10]


def _entries(state: DesiredState) -> dict[int, list[tuple[str, str, int, str]]]:
    """Per family: (VIP, real server, port, counter base), one per VIP . server . port."""
    out: dict[int, list] = {4: [], 6: []}
    seen: set[tuple[str, str, int]] = set()
    for key in sorted(state.services, key=ServiceKey.sort_key):
        if key.fwmark is None:
            for d in state.services[key].destinations:
                port = d.port or key.port
                if (":" in d.address) != (key.family == 6) or (key.address, d.address, port) in seen:
                    continue
                seen.add((key.address, d.address, port))
                out[key.family].append((key.address, d.address, port, counter_base(key, d.key)))
    return out


def render(state: DesiredState, values: dict[str, tuple[int, int]]) -> list[str]:
    """Counter declarations (with carried values), lookup maps and the two counting chains."""
    lines: list[str] = []
    rules: list[str] = []  # per packet, after NAT
    new_rules: list[str] = []  # per connection (first packet)
    for fam, entries in _entries(state).items():
        if not entries:
            continue
        famname, addr = ("ip6", "ipv6_addr") if fam == 6 else ("ip", "ipv4_addr")
        for _vip, _rs, _port, base in entries:
            for suffix in ("c", "i", "o"):
                p, b = values.get(f"{base}_{suffix}", (0, 0))
                lines.append(f"  counter {base}_{suffix} {{\n    packets {p} bytes {b}\n  }}")
        for suffix in ("c", "i", "o"):
            elems = ", ".join(f"{vip} . {rs} . {port} : \"{base}_{suffix}\"" for vip, rs, port, base in entries)
            lines.append(f"  map rs{suffix}{fam} {{\n    type {addr} . {addr} . inet_service : counter\n"
                         f"    elements = {{ {elems} }}\n  }}")
        to_rs = f"ct original {famname} daddr . {famname} daddr . th dport"
        from_rs = f"ct original {famname} daddr . {famname} saddr . th sport"
        new_rules.append(f"ct status dnat {PROTOS} counter name {to_rs} map @rsc{fam}")
        rules += [f"ct status dnat ct direction original {PROTOS} counter name {to_rs} map @rsi{fam}",
                  f"ct status dnat ct direction reply {PROTOS} counter name {from_rs} map @rso{fam}"]
    if not rules:
        return lines
    # srcnat - 1: before the table's source NAT rule, whose verdict ends its chain
    lines.append("  chain count_new {\n    type nat hook postrouting priority srcnat - 1; policy accept;\n"
                 + "".join(f"    {r}\n" for r in new_rules) + "  }")
    for chain, hook, first in (("count_pre", "prerouting", ["iif lo return"]), ("count_out", "output", [])):
        lines.append(f"  chain {chain} {{\n    type filter hook {hook} priority 10; policy accept;\n"
                     + "".join(f"    {r}\n" for r in first + rules) + "  }")
    return lines


def carried(doc: dict | None) -> dict[str, tuple[int, int]]:
    """(packets, bytes) of every per-real-server counter in a live listing."""
    out = {}
    for obj in (doc or {}).get("nftables", []):
        c = obj.get("counter")
        if c and str(c.get("name", "")).startswith("n_"):
            out[c["name"]] = (int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


def stats(state: DesiredState, doc: dict | None) -> dict:
    """``{service: {"real_servers": {"addr:port": {connections, packets_in, ...}}}}`` from a listing."""
    values = carried(doc)
    out: dict = {}
    for key in state.services:
        if key.fwmark is not None:
            continue
        rss = {}
        for d in state.services[key].destinations:
            base = counter_base(key, d.key)
            if f"{base}_c" not in values:
                continue
            (conns, _), (pi, bi), (po, bo) = (values.get(f"{base}_{s}", (0, 0)) for s in "cio")
            rss[f"{d.address}:{d.port or key.port}"] = {"connections": conns, "packets_in": pi, "bytes_in": bi,
                                                        "packets_out": po, "bytes_out": bo}
        if rss:
            out[str(key)] = {"real_servers": rss}
    return out
