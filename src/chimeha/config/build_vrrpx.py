"""Multicast group and unicast keyword checks, as keepalived 2.2.7 makes them (issue 10 item 5).

keepalived reports each of these and carries on with its default (so
``keepalived -t`` exits 5): chime-ha warns at the keyword's FILE:LINE and
runs with the same default.

* ``vrrp_mcast_group4`` must be an IPv4 multicast address,
  ``vrrp_mcast_group6`` an IPv6 multicast one (a warning, kept, when it is not
  link-local, ff02::/16); else the standard group stays (global_parser.c).
* ``mcast_dst_ip`` must be of the instance's family and multicast (IPv6:
  link-local multicast); else ignored (vrrp_parser.c). With unicast peers
  it is ignored too (vrrp.c vrrp_complete_instance).
* ``unicast_ttl`` without unicast peers is ignored.
* A unicast keyword (``unicast_src_ip``, ``unicast_peer``,
  ``check_unicast_src``, ``old_unicast_checksum``) without any peer means
  multicast, and keepalived calls that deprecated, unless
  ``unicast_fault_no_peer`` is set: then the instance stays in FAULT.
"""

from __future__ import annotations

import ipaddress

from .model import VrrpInstance
from .values import Ctx

#: keywords that make keepalived treat an instance as "unicast configured" (VRRP_FLAG_UNICAST_CONFIGURED)
UNICAST_KEYWORDS = ("unicast_src_ip", "unicast_peer", "check_unicast_src", "old_unicast_checksum",
                    "unicast_fault_no_peer")


def global_group(ctx: Ctx, where, keyword: str, value: str | None) -> str | None:
    """``vrrp_mcast_group4`` / ``vrrp_mcast_group6``: the group to use, or None (keep the standard one)."""
    if value is None:
        return None
    ip = ipaddress.ip_address(value)
    family = 4 if keyword.endswith("4") else 6
    if ip.version != family:
        ctx.warning(where, "mcast-group", f"{keyword} {value} is not IPv{family}; ignored, as keepalived does")
        return None
    if not ip.is_multicast:
        ctx.warning(where, "mcast-group", f"{keyword} {value} is not multicast; ignored, as keepalived does")
        return None
    if family == 6 and not _link_local_mc(ip):
        ctx.warning(where, "mcast-group-scope", f"{keyword} {value} should be link-local multicast (ff02::/16)")
    return str(ip)


def _link_local_mc(ip) -> bool:
    return ip.version == 6 and ip.is_multicast and (ip.packed[1] & 0x0F) == 2


def finish(inst: VrrpInstance, ctx: Ctx) -> dict:
    """Field changes for ``inst`` (family known) after the checks above; the reports go to ``ctx``."""
    pos = inst.positions
    changes: dict = {}
    dst = inst.mcast_dst_ip
    if dst is not None:
        ip = ipaddress.ip_address(dst)
        where = pos.get("mcast_dst_ip", inst.where)
        if ip.version != inst.family:
            ctx.warning(where, "mcast-dst", f"vrrp_instance {inst.name}: mcast_dst_ip {dst} must match the "
                        f"instance family (IPv{inst.family}); ignored, as keepalived does")
            dst = None
        elif not (ip.is_multicast if ip.version == 4 else _link_local_mc(ip)):
            kind = "multicast" if ip.version == 4 else "link-local multicast (ff02::/16)"
            ctx.warning(where, "mcast-dst", f"vrrp_instance {inst.name}: mcast_dst_ip {dst} is not {kind}; "
                        "ignored, as keepalived does")
            dst = None
        elif inst.unicast_peers:
            ctx.warning(where, "mcast-dst", f"vrrp_instance {inst.name}: mcast_dst_ip with unicast peers; "
                        "ignored, as keepalived does")
            dst = None
        if dst is None:
            changes["mcast_dst_ip"] = None
    if inst.unicast_ttl is not None and not inst.unicast_peers:
        ctx.warning(pos.get("unicast_ttl", inst.where), "unicast-no-peers",
                    f"vrrp_instance {inst.name}: unicast_ttl without unicast peers; ignored, as keepalived does")
        changes["unicast_ttl"] = None
    used = sorted((k for k in UNICAST_KEYWORDS if k in pos), key=lambda k: (pos[k].file, pos[k].line))
    if used and not inst.unicast_peers and not inst.unicast_fault_no_peer:
        ctx.warning(pos[used[0]], "unicast-no-peers",
                    f"vrrp_instance {inst.name}: {used[0]} without unicast_peer: adverts go multicast "
                    "(keepalived calls this deprecated; add unicast_fault_no_peer to get FAULT instead)")
    elif inst.unicast_fault_no_peer and not inst.unicast_peers:
        ctx.warning(pos["unicast_fault_no_peer"], "unicast-fault-no-peer",
                    f"vrrp_instance {inst.name}: unicast_fault_no_peer without any unicast_peer: the instance "
                    "stays in FAULT")
    return changes
