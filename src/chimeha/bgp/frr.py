"""FRR bgpd: the configuration chime-ha starts it with, vtysh commands, JSON parsing.

Pure: strings in, strings out. The speaker is FRR's ``bgpd`` run on its own
(``-Z``: no zebra, ``-n``: nothing into the kernel, since a director only
originates routes); chime-ha changes its RIB with ``vtysh`` configuration
commands (``network P`` / ``no network P``) and reads it back with
``show bgp ... json``. Why FRR: docs/bgp.md.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterable

from chimeha.config.model_bgp import BgpConfig

ROUTE_MAP_OUT = "CHIMEHA-OUT"
ROUTE_MAP_IN = "CHIMEHA-IN"


def _afi(addr: str) -> str:
    return "ipv6" if ":" in addr else "ipv4"


def render_config(bgp: BgpConfig, hostname: str = "chime-ha") -> str:
    """bgpd.conf: the session(s), timers, export policy; no network statements (added live)."""
    lines = ["frr defaults datacenter", f"hostname {hostname}", "!"]
    sets = []
    if bgp.communities:
        sets.append("set community " + " ".join(bgp.communities))
    if bgp.med is not None:
        sets.append(f"set metric {bgp.med}")
    if bgp.prepend:
        sets.append("set as-path prepend " + " ".join([str(bgp.local_as)] * bgp.prepend))
    lines += [f"route-map {ROUTE_MAP_OUT} permit 10", *(f" {s}" for s in sets), "exit", "!"]
    # A director takes no routes from the router: it only originates its VIPs.
    lines += [f"route-map {ROUTE_MAP_IN} deny 10", "exit", "!"]
    lines.append(f"router bgp {bgp.local_as}")
    if bgp.router_id:
        lines.append(f" bgp router-id {bgp.router_id}")
    lines += [" no bgp network import-check", " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast",
              f" timers bgp {bgp.keepalive} {bgp.hold_time}"]
    for n in bgp.neighbors:
        lines.append(f" neighbor {n.address} remote-as {n.remote_as}")
        lines.append(f" neighbor {n.address} timers connect 1")
        if n.bfd:  # bfdd (reached through zebra) tears the session down on BFD loss, not the hold timer
            lines.append(f" neighbor {n.address} bfd")
    for afi in ("ipv4", "ipv6"):
        peers = [n for n in bgp.neighbors if _afi(n.address) == afi]
        if not peers:
            continue
        lines.append(f" address-family {afi} unicast")
        for n in peers:
            lines += [f"  neighbor {n.address} activate",
                      f"  neighbor {n.address} route-map {ROUTE_MAP_OUT} out",
                      f"  neighbor {n.address} route-map {ROUTE_MAP_IN} in"]
        lines.append(" exit-address-family")
    lines += ["exit", "!"]
    return "\n".join(lines) + "\n"


def wants_bfd(bgp: BgpConfig) -> bool:
    """BFD needs zebra and bfdd next to bgpd (bgpd reaches bfdd only through zebra)."""
    return any(n.bfd for n in bgp.neighbors)


def change_commands(bgp: BgpConfig, announce: Iterable[str], withdraw: Iterable[str]) -> list[str]:
    """vtysh ``-c`` commands (in order) that add and remove ``network`` statements."""
    by_afi: dict[str, list[str]] = {}
    for p in withdraw:
        by_afi.setdefault(_afi(p), []).append(f"no network {p}")
    for p in announce:
        by_afi.setdefault(_afi(p), []).append(f"network {p}")
    if not by_afi:
        return []
    cmds = ["configure terminal", f"router bgp {bgp.local_as}"]
    for afi in sorted(by_afi):
        cmds += [f"address-family {afi} unicast", *by_afi[afi], "exit-address-family"]
    return cmds + ["end"]


def originated(rib_json: str) -> set[str]:
    """Prefixes this speaker originates, from ``show bgp <afi> unicast json``."""
    try:
        data = json.loads(rib_json or "{}")
    except ValueError:
        return set()
    out = set()
    for prefix, paths in (data.get("routes") or {}).items():
        for p in paths if isinstance(paths, list) else [paths]:
            # locally originated: learned from no peer (FRR says peerId "(unspec)" / path "" / sourced)
            if p.get("peerId") in ("(unspec)", "0.0.0.0", "::") or p.get("origin") == "IGP" and not p.get("path"):
                out.add(str(ipaddress.ip_network(prefix)))
                break
    return out


def sessions(summary_json: str) -> dict[str, dict[str, Any]]:
    """Per neighbor: state, uptime, prefixes sent/received, from ``show bgp summary json``."""
    try:
        data = json.loads(summary_json or "{}")
    except ValueError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for afi_data in data.values():
        if not isinstance(afi_data, dict):
            continue
        for addr, p in (afi_data.get("peers") or {}).items():
            out[addr] = {"state": p.get("state", "unknown"), "remote_as": p.get("remoteAs"),
                         "uptime_ms": p.get("peerUptimeMsec", 0), "prefixes_sent": p.get("pfxSnt", 0),
                         "prefixes_received": p.get("pfxRcd", 0),
                         "established": p.get("connectionsEstablished", 0),
                         "dropped": p.get("connectionsDropped", 0)}
    return out
