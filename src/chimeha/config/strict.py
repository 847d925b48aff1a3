"""``vrrp_strict`` (global_defs) and ``strict_mode`` (vrrp_instance): keepalived 2.2.7's strict RFC mode.

An instance is strict when its own ``strict_mode`` says so, else when
global_defs has ``vrrp_strict`` (``strict_mode off`` on an instance wins over
the global). For a strict instance keepalived (vrrp.c vrrp_complete_instance)
reports and adjusts, and so does chime-ha (:func:`check_strict` for the
diagnostics here; :func:`chimeha.vrrp.strict.adjusted` for the values the
VRRP core runs with):

* authentication is ignored ("Strict mode does not support authentication");
* the initial state must match ownership: MASTER exactly when priority 255;
* preempt_delay and a down_timer_adverts other than 3 are reset;
* garp_lower_prio_repeat / garp_lower_prio_delay are forced to 0,
  lower_prio_no_advert on and higher_prio_send_advert off (each reported
  when the instance set the opposite);
* accept mode defaults off (no_accept) except for the address owner, and
  ``accept`` on a VRRPv2 non-owner is reset ("does not comply with RFC3768");
* an IPv6 instance is VRRPv3, and its first VIP must be link-local;
* at least one VIP is required (keepalived refuses to run without one).

Not strict-only, but decided here because strict mode changes its default:
:func:`chimeha.vrrp.strict.accept_of`, whether traffic to the VIPs is accepted. With accept off
keepalived installs firewall rules dropping traffic to and from the VIPs
while it holds them; chime-ha does the same with its own nftables table
(:mod:`chimeha.net.vipfilter`).

keepalived 2.2.7's check that refuses unicast peers in strict mode never
fires (it tests a flag that is set later), so unicast is allowed here too;
nor does 2.2.7 limit a strict VRRPv2 instance to 20 VIPs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..vrrp.strict import strict_of
from .values import Ctx

#: warning codes of this module that keepalived -t also reports (exit 5)
KEEPALIVED_REPORTS = frozenset({"strict-auth", "strict-state", "strict-reset", "strict-accept-v2",
                                "strict-ipv6", "strict-no-vip"})


def _pos(inst: Any, *keys: str):
    for k in keys:
        if k in inst.positions:
            return inst.positions[k]
    return inst.where


def check_strict(config: Any, ctx: Ctx) -> None:
    """Append what keepalived -t reports about each strict instance of ``config``."""
    for inst in config.instances.values():
        if strict_of(config, inst):
            _check(config, inst, ctx)


def _check(config: Any, inst: Any, ctx: Ctx) -> None:
    name = inst.name
    if inst.auth_type is not None:
        ctx.warning(_pos(inst, "authentication", "auth_type"), "strict-auth",
                    f"vrrp_instance {name}: strict mode does not support authentication; auth_type "
                    f"{inst.auth_type} is ignored")
    owner = inst.priority == 255
    if "state" in inst.positions and (inst.state == "MASTER") != owner:
        now = "MASTER" if owner else "BACKUP"
        ctx.warning(inst.positions["state"], "strict-state",
                    f"vrrp_instance {name}: in strict mode state MASTER must match being the address owner "
                    f"(priority 255); starting as {now}")
    resets = []
    if inst.preempt_delay:
        resets.append(("preempt_delay", "preempt_delay is incompatible with strict mode; reset to 0"))
    if inst.down_timer_adverts != 3:
        resets.append(("down_timer_adverts", "down_timer_adverts is incompatible with strict mode; reset to 3"))
    if inst.garp_lower_prio_repeat:
        resets.append(("garp_lower_prio_repeat", "strict mode requires no repeated lower-priority GARPs; "
                                                 "garp_lower_prio_repeat reset to 0"))
    if inst.garp_lower_prio_delay:
        resets.append(("garp_lower_prio_delay", "strict mode requires no lower-priority GARP delay; "
                                                "garp_lower_prio_delay reset to 0"))
    if "lower_prio_no_advert" in inst.positions and not inst.lower_prio_no_advert:
        resets.append(("lower_prio_no_advert", "strict mode requires lower_prio_no_advert; set on"))
    if inst.higher_prio_send_advert:
        resets.append(("higher_prio_send_advert", "strict mode requires higher_prio_send_advert to be off; "
                                                  "reset"))
    for key, text in resets:
        ctx.warning(_pos(inst, key), "strict-reset", f"vrrp_instance {name}: {text}")
    if inst.accept and not owner and inst.version == 2:
        ctx.warning(_pos(inst, "accept"), "strict-accept-v2",
                    f"vrrp_instance {name}: accept mode for VRRP version 2 does not comply with RFC 3768 in strict "
                    "mode; reset to no_accept (traffic to the VIPs is dropped)")
    if inst.family == 6 and "version" in inst.positions and inst.version == 2:
        ctx.warning(inst.positions["version"], "strict-ipv6",
                    f"vrrp_instance {name}: IPv6 cannot use VRRP version 2 in strict mode; using version 3")
    vips = [v for v in inst.virtual_ipaddresses if v.family == inst.family]
    if inst.family == 6 and not inst.unicast_peers and vips:
        first = vips[0]
        bare = first.address.split("/")[0]
        if not ipaddress.ip_address(bare).is_link_local:
            ctx.warning(getattr(first, "where", None) or _pos(inst, "virtual_ipaddress"), "strict-ipv6",
                        f"vrrp_instance {name}: in strict mode the first IPv6 VIP must be link-local, "
                        f"not {bare}")
    if not inst.virtual_ipaddresses:
        ctx.error(inst.where, "strict-no-vip",
                  f"vrrp_instance {name}: no virtual_ipaddress; strict mode requires at least one "
                  "(keepalived refuses to start)")
