"""Build :class:`InstanceSpec` objects from the parsed configuration model.

Pure glue between ``chimeha.config.model`` and the VRRP core. The node's
primary address is not in the config (keepalived reads it from the
interface); ``primary_address`` is ``unicast_src_ip`` or ``mcast_src_ip`` when
given, else empty, and the runtime (or the simulator) fills it in with
:func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

from chimeha.vrrp.events import InstanceSpec, TrackSpec
from chimeha.vrrp.strict import accept_of, adjusted, strict_of
from chimeha.vrrp.sync_group import member_tracks
from chimeha.vrrp.vmac import Link, mac_for


def _where(node: Any) -> str:
    where = getattr(node, "where", None)
    return f"{where.file}:{where.line}: " if where is not None and getattr(where, "line", 0) else ""


def _refs_tracks(config: Any, holder: Any, group: str = "") -> list[TrackSpec]:
    """TrackSpecs of the track_script / track_interface / track_file / track_process refs of ``holder``."""
    out: list[TrackSpec] = []
    for ref in holder.track_scripts:
        script = config.vrrp_scripts.get(ref.name)
        weight = ref.weight if ref.weight is not None else (script.weight if script else 0)
        reverse = ref.reverse or (ref.weight is None and script is not None and script.weight_reverse)
        init_ok = not (script.init_fail if script else False)
        out.append(TrackSpec(ref.name, "script", weight, reverse, init_ok, group=group))
    for ref in holder.track_interfaces:
        out.append(TrackSpec(ref.name, "interface", ref.weight or 0, ref.reverse, group=group))
    for ref in holder.track_files:
        tf = config.track_files.get(ref.name)
        weight = ref.weight if ref.weight is not None else (tf.weight if tf else 1)
        # As for scripts: the block's ``weight N reverse`` applies when the
        # instance does not override the weight.
        reverse = ref.reverse or (ref.weight is None and tf is not None and tf.weight_reverse)
        out.append(TrackSpec(ref.name, "file", weight, reverse, group=group))
    for ref in holder.track_processes:
        tp = config.track_processes.get(ref.name)
        weight = ref.weight if ref.weight is not None else (tp.weight if tp else 0)
        reverse = ref.reverse or (ref.weight is None and tp is not None and tp.weight_reverse)
        out.append(TrackSpec(ref.name, "process", weight, reverse, group=group))
    return out


def sync_group_of(config: Any, name: str) -> Any:
    """The vrrp_sync_group that ``name`` belongs to (keepalived: the first naming it), or None."""
    return next((g for g in config.sync_groups.values() if name in g.group), None)


def _tracks(config: Any, inst: Any) -> tuple[TrackSpec, ...]:
    from chimeha.bfd.tracks import bfd_track_specs  # track_bfd (src/chimeha/bfd/tracks.py)

    out = _refs_tracks(config, inst)
    out.extend(bfd_track_specs(config, inst, groups=False))
    grp = sync_group_of(config, inst.name)
    if grp is not None:
        gtracks = _refs_tracks(config, grp, grp.name)
        gtracks.extend(replace(t, group=grp.name) for t in bfd_track_specs(config, grp, groups=False))
        owner = any(config.instances[m].priority == 255 for m in grp.group if m in config.instances)
        out = list(member_tracks(out, gtracks, owner_in_group=owner,
                                 tracking_weight=grp.sync_group_tracking_weight or grp.global_tracking))
    # keepalived watches the instance's own interface unless told not to: a
    # carrier loss puts the instance in FAULT.
    if inst.interface and not inst.dont_track_primary and not any(
        t.kind == "interface" and t.name == inst.interface for t in out
    ):
        out.append(TrackSpec(inst.interface, "interface", 0, False))
    return tuple(out)


def _auth_type(inst: Any) -> str | None:
    # keepalived ignores authentication with VRRPv3 (IPv6 instances are v3), and says so at
    # start-up; `chime-ha check` warns auth-v3.
    if inst.auth_type is None or inst.version == 3 or (inst.auth_type == "AH" and inst.family == 6):
        return None
    return inst.auth_type


def _initial_state(inst: Any) -> str:
    # keepalived starts a non-owner AH instance as BACKUP: it must hear the master's AH sequence
    # number before it speaks, or its adverts are dropped as replays (`chime-ha check`: ah-master).
    if _auth_type(inst) == "AH" and inst.state == "MASTER" and inst.priority != 255:
        return "BACKUP"
    return inst.state


def _seconds(words) -> float | None:
    try:
        value = float(words[0])
    except (IndexError, ValueError):
        return None
    return value if value >= 0 else None


def garp_intervals(config: Any) -> dict[str, tuple[float | None, float | None]]:
    """Interface -> (garp_interval, gna_interval) from the ``garp_group`` blocks (None: not set there).

    keepalived: an interface takes the first garp_group naming it; others use the global
    vrrp_garp_interval / vrrp_gna_interval.
    """
    out: dict[str, tuple[float | None, float | None]] = {}
    for block in getattr(config, "blocks", ()) or ():
        if block.keyword != "garp_group":
            continue
        garp = gna = None
        names: list[str] = []
        for child in block.children or ():
            if child.keyword == "garp_interval":
                garp = _seconds(child.args)
            elif child.keyword == "gna_interval":
                gna = _seconds(child.args)
            elif child.keyword == "interface" and child.args:
                names.append(child.args[0])
            elif child.keyword == "interfaces":
                names.extend(child.args)
                names.extend(c.keyword for c in child.children or ())
        for name in names:
            out.setdefault(name, (garp, gna))
    return out


def _garp_settings(config: Any, inst: Any) -> dict[str, Any]:
    """The lower-priority GARP, higher_prio_send_advert and pacing fields of a spec (keepalived's defaults)."""
    gd = config.global_defs
    strict = strict_of(config, inst)
    repeat = inst.garp_lower_prio_repeat
    if repeat is None:
        repeat = gd.vrrp_garp_lower_prio_repeat if gd.vrrp_garp_lower_prio_repeat is not None else gd.vrrp_garp_master_repeat
    delay = inst.garp_lower_prio_delay
    if delay is None:
        delay = gd.vrrp_garp_lower_prio_delay if gd.vrrp_garp_lower_prio_delay is not None else gd.vrrp_garp_master_delay
    higher = inst.higher_prio_send_advert
    if higher is None:
        higher = gd.vrrp_higher_prio_send_advert
    garp, gna = garp_intervals(config).get(inst.interface or "", (None, None))
    if garp is None and gna is None:  # no garp_group for this interface: the global values
        garp, gna = gd.vrrp_garp_interval, gd.vrrp_gna_interval
    return {
        # keepalived 2.2.7 (vrrp.c): strict mode turns both off.
        "garp_lower_prio_repeat": 0 if strict else repeat,
        "garp_lower_prio_delay": 0.0 if strict else delay,
        "higher_prio_send_advert": False if strict else bool(higher),
        "garp_interval": garp or 0.0,
        "gna_interval": gna or 0.0,
    }


_STANDARD_GROUP = {4: "224.0.0.18", 6: "ff02::12"}


def _mcast_group(gd: Any, inst: Any) -> str:
    """keepalived: mcast_dst_ip, else the global vrrp_mcast_group4/6; "" = the standard group (or unicast)."""
    if inst.unicast_peers:
        return ""
    group = getattr(inst, "mcast_dst_ip", None) or getattr(gd, f"vrrp_mcast_group{inst.family}", "")
    return "" if group == _STANDARD_GROUP.get(inst.family) else group or ""


def _config_fault(inst: Any) -> str | None:
    if getattr(inst, "unicast_fault_no_peer", False) and not inst.unicast_peers:
        return "unicast configured without any unicast_peer (unicast_fault_no_peer)"
    return None
def _link(inst: Any) -> Link | None:
    """The use_vmac / use_ipvlan link of ``inst`` (its name was resolved by the config build)."""
    v = getattr(inst, "vmac", None)
    if v is None or not inst.interface or not v.name:
        return None
    other_family = any(a.family != inst.family for a in inst.virtual_ipaddresses_excluded)
    if v.kind == "ipvlan":
        return Link("ipvlan", v.name, inst.interface, inst.family, mode=v.mode, address=v.address,
                    ipv6=inst.family == 6 or other_family)
    return Link("macvlan", v.name, inst.interface, inst.family, mac=mac_for(v.mac, inst.virtual_router_id or 0,
                                                                           inst.family),
                # keepalived: "unicast with use_vmac requires vmac_xmit_base - setting"
                xmit_base=bool(inst.vmac_xmit_base or inst.unicast_peers), ipv6=inst.family == 6 or other_family)


def _extra_links(inst: Any, link: Link | None) -> tuple[Link, ...]:
    """The VIPs' own VMACs (config ``vip_vmacs``): the instance's MAC rule with the VIP's family."""
    out: dict[str, Link] = {}
    v = getattr(inst, "vmac", None)
    configured = v.mac if v is not None and v.kind == "macvlan" else None
    for vv in getattr(inst, "vip_vmacs", ()):
        out.setdefault(vv.name, Link("macvlan", vv.name, vv.base, vv.family,
                                     mac=mac_for(configured, inst.virtual_router_id or 0, vv.family),
                                     ipv6=vv.family == 6))
    return tuple(out.values())


def _garp_extra(config: Any, inst: Any, link: Link | None, extra: tuple[Link, ...], vips: tuple) -> dict:
    """keepalived's vmac_garp_intvl (garp_extra_if): which VIPs, how often (vrrp_send_vmac_update)."""
    setting = getattr(inst, "garp_extra_if", None) or getattr(config.global_defs, "vrrp_garp_extra_if", None)
    every, seconds = setting or (False, 0)
    if not seconds:
        return {}
    own = link.name if link is not None else inst.interface
    ours = {lk.name for lk in extra} | ({link.name} if link is not None else set())
    xmit_base = link is not None and link.xmit_base
    out, done, extra_vmac = [], set(), False
    for va in vips:
        dev = va.dev or own
        if dev != own:
            extra_vmac = extra_vmac or dev in ours
        if (dev not in ours and not every) or (dev == own and not xmit_base) or dev in done:
            continue
        done.add(dev)
        out.append(va)
    if not out or not (extra_vmac or every):
        return {}  # keepalived: no extra interface, no extra GARPs
    return {"garp_extra_interval": float(seconds), "garp_extra_addresses": tuple(out)}


def _placed(addresses, inst: Any, link: Link | None) -> tuple:
    """Where each VIP goes with a link (keepalived 2.2.7 vrrp_complete_instance): on its own VMAC
    (``vip_vmacs``); else, one of the instance's family without a dev, or with the instance's
    interface as dev, on the instance's link; one of the other family without a dev on the
    interface itself (the link's MAC is of the wrong family)."""
    own = {vv.address: vv.name for vv in getattr(inst, "vip_vmacs", ())}
    if link is None and not own:
        return tuple(addresses)
    out = []
    for va in addresses:
        if va.address in own:
            va = dataclasses.replace(va, dev=own[va.address])
        elif link is not None and va.dev in (None, link.base):
            va = dataclasses.replace(va, dev=link.name if va.family == inst.family else link.base)
        out.append(va)
    return tuple(out)


def instance_spec(config: Any, inst: Any, primary_address: str = "") -> InstanceSpec:
    """One :class:`InstanceSpec` for the model's ``VrrpInstance`` ``inst`` (strict mode applied)."""
    spec = _spec(config, inst, primary_address)
    return replace(spec, accept=accept_of(config, inst), **adjusted(config, inst))


def _spec(config: Any, inst: Any, primary_address: str) -> InstanceSpec:
    gd = config.global_defs
    family = inst.family
    advert = tuple(v.ip for v in inst.virtual_ipaddresses if v.family == family)
    grp = sync_group_of(config, inst.name)
    group = grp.name if grp is not None else None
    link = _link(inst)
    # keepalived: an ipvlan's address is the adverts' source (as if it were mcast_src_ip).
    src = inst.unicast_src_ip or inst.mcast_src_ip or (link.address.split("/")[0] if link and link.address else "")
    vips = _placed(inst.virtual_ipaddresses, inst, link)
    evips = _placed(inst.virtual_ipaddresses_excluded, inst, link)
    extra = _extra_links(inst, link)
    return InstanceSpec(
        name=inst.name,
        vrid=inst.virtual_router_id or 0,
        priority=inst.priority,
        version=inst.version,
        family=family,
        advert_int=inst.advert_int,
        advert_addresses=advert,
        primary_address=primary_address or src,
        source_configured=bool(src),
        interface=link.socket_interface if link else inst.interface or "",
        link=link,
        extra_links=extra,
        **_garp_extra(config, inst, link, extra, vips + evips),
        initial_state=_initial_state(inst),
        nopreempt=inst.nopreempt,
        preempt_delay=inst.preempt_delay,
        down_timer_adverts=inst.down_timer_adverts,
        auth_type=_auth_type(inst),
        auth_pass=inst.auth_pass,
        unicast_peers=tuple(p.address for p in inst.unicast_peers),
        # A TTL bound is only checked on a known peer, so it implies the source check.
        check_unicast_src=inst.check_unicast_src
        or any(p.min_ttl is not None or p.max_ttl is not None for p in inst.unicast_peers),
        unicast_peer_ttl=tuple((p.address, p.min_ttl, p.max_ttl) for p in inst.unicast_peers
                               if p.min_ttl is not None or p.max_ttl is not None),
        mcast_group=_mcast_group(gd, inst),
        unicast_ttl=getattr(inst, "unicast_ttl", None) if inst.unicast_peers else None,
        config_fault=_config_fault(inst),
        skip_check_adv_addr=bool(inst.skip_check_adv_addr or gd.vrrp_skip_check_adv_addr),
        tracks=_tracks(config, inst),
        garp_master_delay=inst.garp_master_delay,
        garp_master_repeat=inst.garp_master_repeat,
        garp_master_refresh=inst.garp_master_refresh,
        garp_master_refresh_repeat=inst.garp_master_refresh_repeat,
        lower_prio_no_advert=inst.lower_prio_no_advert,
        **_garp_settings(config, inst),
        virtual_ipaddresses=vips,
        virtual_ipaddresses_excluded=evips,
        virtual_routes=tuple(inst.virtual_routes),
        virtual_rules=tuple(r.spec for r in inst.virtual_rules if r.spec is not None),
        sync_group=group,
        where=_where(inst),
    )


def instance_specs(config: Any, primary_address: str = "") -> list[InstanceSpec]:
    """Every vrrp_instance of ``config`` as an :class:`InstanceSpec`, in file order."""
    return [instance_spec(config, inst, primary_address) for inst in config.instances.values()]


def sync_groups(config: Any) -> dict[str, tuple[str, ...]]:
    """Sync group name -> member instance names (only members that exist).

    An instance named by two groups stays in the first (keepalived 2.2.7: "cannot exist in more
    than one sync group"); a group left without members is dropped.
    """
    out: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    for name, g in config.sync_groups.items():
        members = tuple(m for m in g.group if m in config.instances and m not in claimed)
        claimed.update(members)
        if members:
            out[name] = members
    return out
