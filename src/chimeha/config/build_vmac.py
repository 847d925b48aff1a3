"""``use_vmac``, ``use_ipvlan``, ``use_vmac_addr``, ``vmac_xmit_base`` of a vrrp_instance -> :class:`VmacConfig`.

Split from :mod:`chimeha.config.build`. keepalived 2.2.7 (vrrp_parser.c,
vrrp.c) reports a bad argument and ignores it; here it is an error at its
FILE:LINE: a VMAC that would come up with another name or MAC than the
operator wrote is worse than not starting. Checks across instances (two
links with one name, or one MAC twice on one interface) are in
:func:`check_links`.
"""

from __future__ import annotations

from dataclasses import replace

from ..vrrp import vmac as V
from .model import VrrpInstance
from .model_vmac import VipVmac, VmacConfig
from .parser import Stmt
from .values import Ctx


def use_vmac(s: Stmt, ctx: Ctx) -> VmacConfig:
    """``use_vmac [NAME] [MAC]`` (either order, as keepalived: a word with ':' is the MAC)."""
    f: dict = {"where": s.where}
    for w in s.words()[:2]:
        key = "mac" if ":" in w else "name"
        if key in f:
            ctx.error(s.where, "invalid-value", f"use_vmac: VMAC interface {'address' if key == 'mac' else 'name'} "
                      f"already specified; '{w}' ignored")
            continue
        try:
            if key == "mac":
                V.parse_mac(w)
            elif not V.valid_name(w):
                raise V.VmacError(f"VMAC interface name '{w}' is too long (at most {V.IFNAMSIZ - 1} characters) "
                                  "or has invalid characters ('/', ':', white space)")
        except V.VmacError as exc:
            ctx.error(s.where, "invalid-value", f"use_vmac: {exc}")
            continue
        f[key] = w
    for w in s.words()[2:]:
        ctx.warning(s.where, "unexpected-argument", f"use_vmac: extra argument '{w}' ignored")
    return VmacConfig("macvlan", **f)


def use_ipvlan(s: Stmt, ctx: Ctx) -> VmacConfig | None:
    try:
        name, address, mode = V.ipvlan_words(s.words())
    except V.VmacError as exc:
        ctx.error(s.where, "invalid-value", f"use_ipvlan: {exc}")
        return None
    return VmacConfig("ipvlan", s.where, name=name, address=address, mode=mode)


def garp_extra_if(s: Stmt, ctx: Ctx) -> tuple[bool, int] | None:
    """``garp_extra_if [all] SECONDS`` (0..86400); keepalived ignores a bad one with a config error."""
    every, seconds = V.garp_extra_words(s.words())
    if seconds is None:
        ctx.error(s.where, "invalid-value", f"{s.name} '{' '.join(s.words())}': expected [all] SECONDS (0..86400)")
        return None
    if s.name in ("vmac_garp_intvl", "vrrp_vmac_garp_intvl"):
        ctx.warning(s.where, "deprecated", f"{s.name} is deprecated; use {s.name.replace('vmac_garp_intvl', 'garp_extra_if')}")
    return every, seconds


def finish(inst: VrrpInstance, ctx: Ctx) -> VrrpInstance:
    """Instance-level rules of keepalived's vrrp_complete_instance / vrrp_end_handler."""
    link = inst.vmac
    if link is None:
        if inst.vmac_xmit_base:
            ctx.warning(inst.positions.get("vmac_xmit_base", inst.where), "vmac-xmit-base-alone",
                        f"vrrp_instance {inst.name}: vmac_xmit_base is only valid with use_vmac (ignored)")
        return inst
    changes: dict = {}
    if link.kind == "ipvlan":
        if link.address is None and inst.family == 4:
            ctx.error(link.where, "missing-parameter",
                      f"vrrp_instance {inst.name}: an IPv4 use_ipvlan needs an address (the adverts' source)")
        elif link.address is not None and (6 if ":" in link.address else 4) != inst.family:
            ctx.error(link.where, "invalid-value", f"vrrp_instance {inst.name}: use_ipvlan address {link.address} "
                      f"is not of the instance's family (IPv{inst.family})")
    # unicast without vmac_xmit_base: keepalived sets it (validate warns vmac-unicast; from_config sets it)
    if inst.strict_mode and inst.vmac_xmit_base:
        ctx.warning(inst.positions.get("vmac_xmit_base", inst.where), "vmac-strict",
                    f"vrrp_instance {inst.name}: vmac_xmit_base is incompatible with strict mode (ignored)")
        changes["vmac_xmit_base"] = False
    if inst.strict_mode and link.mac:
        ctx.warning(link.where, "vmac-strict",
                    f"vrrp_instance {inst.name}: a configured VMAC address is incompatible with strict mode; "
                    "the RFC 5798 address is used")
        changes["vmac"] = replace(link, mac=None)
    return replace(inst, **changes) if changes else inst


def resolve(instances: dict, prefix: str | None, addr_prefix: str | None = None, ctx: Ctx | None = None) -> dict:
    """Give every link its name (keepalived's create_vmac_name, in file order); instances without one unchanged.

    The instances' own links first, then the VIPs' (``vmac_addr_prefix``, else ``vmac_prefix``).
    """
    taken = {i.vmac.name for i in instances.values() if i.vmac is not None and i.vmac.name}
    out = {}
    for n, inst in instances.items():
        link = inst.vmac
        if link is not None and not link.name and inst.virtual_router_id:
            name = V.default_name(prefix or "vrrp", inst.virtual_router_id, inst.family, taken)
            taken.add(name)
            inst = replace(inst, vmac=replace(link, name=name))
        out[n] = inst
    for n, inst in out.items():
        vips = _vip_vmacs(inst, addr_prefix or prefix or "vrrp", taken, ctx)
        if vips:
            out[n] = replace(inst, vip_vmacs=vips)
    return out


def _vip_vmacs(inst: VrrpInstance, prefix: str, taken: set, ctx: Ctx | None) -> tuple[VipVmac, ...]:
    """keepalived 2.2.7 vrrp_complete_instance: which VIPs need a VMAC of their own, one per (interface, family)."""
    if not inst.virtual_router_id or not inst.interface:
        return ()
    base = inst.interface
    own = inst.vmac is not None and inst.vmac.kind == "macvlan"
    made: dict[tuple[str, int], str] = {}
    out = []
    for va in tuple(inst.virtual_ipaddresses) + tuple(inst.virtual_ipaddresses_excluded):
        on_base = va.dev in (None, base)
        flag = va.use_vmac is not None
        if flag and on_base and own and va.family == inst.family:
            _warn(ctx, va, f"vrrp_instance {inst.name}: use_vmac given for VIP {va.address} and for the "
                  "instance: it goes on the instance's VMAC")
            flag = False
        elif flag and (not on_base or va.family != inst.family) and inst.use_vmac_addr:
            _warn(ctx, va, f"vrrp_instance {inst.name}: use_vmac_addr and use_vmac for VIP {va.address}")
            flag = False
        if on_base:
            if own and va.family == inst.family:
                continue  # the instance's own VMAC
            needed = flag or (inst.use_vmac_addr and va.family != inst.family)
        else:
            needed = flag or inst.use_vmac_addr
        if not needed:
            continue
        key = (va.dev or base, va.family)
        if key not in made:
            made[key] = V.default_name(prefix, inst.virtual_router_id, va.family, taken)
            taken.add(made[key])
        out.append(VipVmac(va.address, made[key], key[0], va.family))
    return tuple(out)


def _warn(ctx: Ctx | None, va, msg: str) -> None:
    if ctx is not None:
        ctx.warning(va.where, "vmac-both", msg)


def _links_of(inst: VrrpInstance):
    """(name, kind, base, MAC or None, where) of every link ``inst`` needs."""
    link = inst.vmac
    if link is not None:
        try:
            mac = V.mac_for(link.mac, inst.virtual_router_id, inst.family) if link.kind == "macvlan" else None
        except V.VmacError:
            mac = None  # reported where the MAC was read
        yield link.name, link.kind, inst.interface or "", mac, link.where
    seen = set()
    for vv in inst.vip_vmacs:
        if vv.name not in seen:
            seen.add(vv.name)
            mac = V.mac_for(link.mac if link is not None and link.kind == "macvlan" else None,
                            inst.virtual_router_id, vv.family)
            where = next((a.where for a in tuple(inst.virtual_ipaddresses) + tuple(inst.virtual_ipaddresses_excluded)
                          if a.address == vv.address), inst.where)
            yield vv.name, "macvlan", vv.base, mac, where


def check_links(instances: dict, ctx: Ctx) -> None:
    """Two instances naming one link, or two links with one MAC on one interface, are errors."""
    names: dict[str, VrrpInstance] = {}
    macs: dict[tuple[str, str], VrrpInstance] = {}
    for inst in instances.values():
        if not inst.virtual_router_id:
            continue
        for name, kind, base, mac, where in _links_of(inst):
            if name in names:
                ctx.error(where, "vmac-name-clash", f"vrrp_instance {inst.name}: interface {name} is "
                          f"already a link of vrrp_instance {names[name].name} ({names[name].where})")
            elif name == inst.interface:
                ctx.error(where, "vmac-name-clash",
                          f"vrrp_instance {inst.name}: the {kind} cannot be named like its interface {name}")
            names[name] = inst
            if mac is None:
                continue
            other = macs.get((base, mac))
            if other is not None:
                ctx.error(where, "vmac-mac-clash",
                          f"vrrp_instance {inst.name}: VMAC address {mac} on {base} is already the VMAC of "
                          f"vrrp_instance {other.name} ({other.where}); give one of them another MAC in use_vmac")
            else:
                macs[(base, mac)] = inst
