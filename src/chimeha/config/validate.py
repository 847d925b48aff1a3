"""Semantic checks on a built model: one node, and several nodes together.

``validate(config)`` finds what a single node's config gets wrong or what
would surprise its operator; ``cross_check(configs)`` compares the VRRP
instances that several nodes share (same VRID and address family), which is
where the seed's own mistake (two ``priority 255`` owners) shows.

``KEEPALIVED_REPORTS`` lists the warning codes for which ``keepalived -t``
also complains (it exits 5 on any logged configuration problem): the
agreement test uses it to predict keepalived's verdict from ours.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Iterable

from .model import Config, Diagnostic, VrrpInstance, Where
from .strict import KEEPALIVED_REPORTS as _STRICT_REPORTS
from .strict import check_strict
from .validate_sync import KEEPALIVED_REPORTS as _SYNC_REPORTS
from .validate_sync import check_sync_groups
from .values import Ctx

# Warning codes on which keepalived -t also reports a problem (exit status 5).
KEEPALIVED_REPORTS = frozenset({
    "unknown-keyword", "unknown-block", "nopreempt-master", "auth-pass-too-long", "auth-v3",
    "protocol-missing", "bare-weight", "no-vip", "unexpected-block", "unexpected-argument",
    "track-weight-owner", "advert-int-rounded", "ah-master", "fwmark-protocol", "route-untracked",
    "deprecated", "rule-no-preference", "unterminated-quote", "duplicate-real-server", "mixed-family",
    "quorum-unreachable", "track-own-interface", "unicast-no-peers", "vmac-unicast", "fwmark-rs-port",
    "out-of-range", "native-ipv6-ignored", "rule-protocol-reset", "route-protocol-reset",
    "duplicate-script", "mcast-group", "mcast-group-scope", "mcast-dst",
}) | _SYNC_REPORTS | _STRICT_REPORTS
# Warning codes keepalived -t reports only through its script-security exit status (6).
KEEPALIVED_SECURITY = frozenset({"script-security"})


def validate(config: Config, diags: list[Diagnostic]) -> None:
    """Append single-node findings about ``config`` to ``diags``."""
    ctx = Ctx(diags)
    _instances(config, ctx)
    _duplicate_vrids(config, ctx)
    check_sync_groups(config, ctx)
    check_strict(config, ctx)
    _virtual_servers(config, ctx)
    _script_security(config, ctx)
    from .build_bfd import check as _bfd_check  # bfd_instance / track_bfd / BFD_CHECK (config/build_bfd.py)
    _bfd_check(config, diags)
    from .build_bgp import validate_bgp  # chime-ha's chimeha_bgp extension block
    validate_bgp(config, diags)


def _pos(inst, key: str) -> Where:
    return inst.positions.get(key, inst.where)


def _instances(config: Config, ctx: Ctx) -> None:
    for inst in config.instances.values():
        if inst.nopreempt and inst.state == "MASTER":
            ctx.warning(_pos(inst, "nopreempt"), "nopreempt-master",
                        f"vrrp_instance {inst.name}: nopreempt has no effect with state MASTER "
                        "(keepalived clears it); use state BACKUP on every node")
        if inst.auth_type and inst.version == 3:
            ctx.warning(_pos(inst, "auth_type"), "auth-v3",
                        f"vrrp_instance {inst.name}: VRRPv3 has no authentication; auth_type {inst.auth_type} is ignored")
        if inst.auth_pass is not None and len(inst.auth_pass.encode()) > 8:
            ctx.warning(_pos(inst, "auth_pass"), "auth-pass-too-long",
                        f"vrrp_instance {inst.name}: auth_pass is {len(inst.auth_pass.encode())} bytes; "
                        f"only the first 8 ('{inst.auth_pass.encode()[:8].decode(errors='replace')}') are used")
        if inst.auth_type == "PASS" and not inst.auth_pass:
            ctx.error(_pos(inst, "auth_type"), "missing-auth-pass",
                      f"vrrp_instance {inst.name}: auth_type PASS without auth_pass")
        if inst.auth_type == "AH" and inst.state == "MASTER" and inst.priority != 255:
            ctx.warning(_pos(inst, "auth_type"), "ah-master",
                        f"vrrp_instance {inst.name}: auth_type AH is incompatible with state MASTER "
                        "(keepalived starts it as BACKUP)")
        for ref in inst.track_interfaces:
            if ref.name == inst.interface:
                ctx.warning(ref.where, "track-own-interface",
                            f"vrrp_instance {inst.name} already tracks its own interface {ref.name}; "
                            "this track_interface entry is ignored")
        if inst.use_vmac is not None and inst.unicast_peers and not inst.vmac_xmit_base:
            ctx.warning(_pos(inst, "use_vmac"), "vmac-unicast",
                        f"vrrp_instance {inst.name}: use_vmac with unicast peers needs vmac_xmit_base "
                        "(keepalived sets it)")
        if inst.priority == 255 and inst.state == "BACKUP":
            ctx.warning(_pos(inst, "priority"), "owner-backup",
                        f"vrrp_instance {inst.name}: priority 255 makes this node the address owner, "
                        "which preempts any other node regardless of state BACKUP; use 1-254 on backups")
        for kind, refs, table in (
            ("vrrp_script", inst.track_scripts, config.vrrp_scripts),
            ("track_file", inst.track_files, config.track_files),
            ("vrrp_track_process", inst.track_processes, config.track_processes),
        ):
            for ref in refs:
                obj = table.get(ref.name)
                if obj is None:
                    near = _near(ref.name, table)
                    ctx.error(ref.where, "undefined-track",
                              f"vrrp_instance {inst.name} tracks {kind} '{ref.name}', which is not defined{near}")
                    continue
                weight = ref.weight if ref.weight is not None else obj.weight
                if weight and inst.priority == 255:
                    ctx.warning(ref.where, "track-weight-owner",
                                f"vrrp_instance {inst.name} has priority 255 (address owner): the weight {weight} "
                                f"of {kind} '{ref.name}' cannot change it; use priority <= 254 or weight 0")
        for ref in inst.track_interfaces:
            if ref.weight and inst.priority == 255:
                ctx.warning(ref.where, "track-weight-owner",
                            f"vrrp_instance {inst.name} has priority 255 (address owner): the weight of "
                            f"track_interface {ref.name} cannot change it")
    for sg in config.sync_groups.values():
        for member in sg.group:
            if member not in config.instances:
                ctx.error(sg.where, "undefined-instance",
                          f"vrrp_sync_group {sg.name} names vrrp_instance '{member}', which is not defined"
                          f"{_near(member, config.instances)}")


def _near(name: str, table) -> str:
    import difflib

    hint = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def _duplicate_vrids(config: Config, ctx: Ctx) -> None:
    seen: dict[tuple, VrrpInstance] = {}
    for inst in config.instances.values():
        if inst.virtual_router_id is None:
            continue
        key = (inst.interface, inst.family, inst.virtual_router_id)
        other = seen.get(key)
        if other is not None:
            ctx.error(_pos(inst, "virtual_router_id"), "duplicate-vrid",
                      f"vrrp_instance {inst.name} uses virtual_router_id {inst.virtual_router_id} on "
                      f"{inst.interface}, like vrrp_instance {other.name} ({other.where})")
        else:
            seen[key] = inst


def _vip_networks(config: Config) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for inst in config.instances.values():
        for vip in inst.virtual_ipaddresses:
            iface = ipaddress.ip_interface(vip.address)
            if iface.network.prefixlen == iface.max_prefixlen:
                # A host-route VIP lives on the interface's subnet; assume the usual /24 (/64).
                nets.append(ipaddress.ip_interface(f"{iface.ip}/{24 if iface.version == 4 else 64}").network)
            else:
                nets.append(iface.network)
    return nets


def _virtual_servers(config: Config, ctx: Ctx) -> None:
    nets = _vip_networks(config)
    groups = config.virtual_server_groups
    for vs in config.virtual_servers:
        if not vs.protocol_explicit and vs.fwmark is None:
            ctx.warning(vs.where, "protocol-missing",
                        f"virtual_server {vs.key} has no 'protocol': UDP is used (as keepalived silently does); "
                        "write 'protocol TCP' if this is a TCP service")
        if vs.fwmark is not None and vs.protocol_explicit:
            ctx.warning(vs.positions.get("protocol", vs.where), "fwmark-protocol",
                        f"virtual_server fwmark {vs.fwmark}: 'protocol' is ignored for a fwmark service")
        if vs.fwmark is not None:
            for rs in vs.real_servers:
                if rs.port is not None:
                    ctx.warning(rs.where, "fwmark-rs-port",
                                f"real_server {rs.address} {rs.port} of fwmark service {vs.fwmark}: the port is "
                                "ignored (the fwmark decides what is forwarded)")
        if vs.group is not None and vs.group not in groups:
            ctx.error(vs.where, "undefined-group",
                      f"virtual_server group '{vs.group}' is not defined{_near(vs.group, groups)}")
        if not vs.real_servers and vs.sorry_server is None:
            ctx.warning(vs.where, "no-real-server", f"virtual_server {vs.key} has no real_server")
        if vs.quorum > max(1, sum(rs.weight for rs in vs.real_servers)) and vs.real_servers:
            ctx.warning(vs.positions.get("quorum", vs.where), "quorum-unreachable",
                        f"virtual_server {vs.key}: quorum {vs.quorum} exceeds the total weight of its real servers")
        seen_rs: dict[tuple, object] = {}
        for rs in vs.real_servers:
            key = (rs.address, rs.port)
            if key in seen_rs:
                ctx.warning(rs.where, "duplicate-real-server",
                            f"real_server {rs.address} {rs.port} appears twice in virtual_server {vs.key}")
            seen_rs[key] = rs
        if vs.lb_kind == "NAT" and vs.address is not None:
            # Only the VIP network the service itself is on: real servers on another VIP's network
            # (a two-legged NAT director) reply through the director.
            own = [n for n in nets if _in(vs.address, n)]
            shared = [rs for rs in vs.real_servers if any(_in(rs.address, n) for n in own)]
            if shared:
                addrs = ", ".join(rs.address for rs in shared)
                ctx.warning(vs.positions.get("lb_kind", vs.where), "nat-same-subnet",
                            f"virtual_server {vs.key}: lb_kind NAT with real servers ({addrs}) on the VIP's "
                            "subnet: their replies to clients on that subnet bypass the director and are "
                            "dropped unless source NAT (full NAT) is used or they route via the director")


def _in(addr: str, net) -> bool:
    try:
        return ipaddress.ip_address(addr) in net
    except (ValueError, TypeError):
        return False


def _script_security(config: Config, ctx: Ctx) -> None:
    """One ``script-security`` warning, at the first script that would run as root.

    As keepalived 2.2.7 (``-t`` exits 6): without ``enable_script_security`` a
    script runs as its own ``user``, else ``global_defs script_user``, else
    root; ``script_user root`` is no protection.  Only tracked vrrp_scripts
    that have a command run (a script without one is dropped); notify
    scripts of instances and sync groups and MISC_CHECK paths count.
    """
    g = config.global_defs
    if g.enable_script_security:
        return
    default = g.script_user or "root"
    first: Where | None = None

    def root(where: Where, user: str | None) -> None:
        nonlocal first
        if (user or default) == "root" and (first is None or where < first):
            first = where

    # keepalived only runs (and so only checks) scripts that something tracks.
    tracked = {r.name for i in config.instances.values() for r in i.track_scripts}
    tracked |= {r.name for sg in config.sync_groups.values() for r in sg.track_scripts}
    for sc in config.vrrp_scripts.values():
        if sc.script and sc.name in tracked:
            root(sc.positions.get("script", sc.where), sc.user)
    notify_keys = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
    for inst in config.instances.values():
        for key in (*notify_keys, "notify_master_rx_lower_pri", "notify_deleted"):
            value = getattr(inst, key)
            if value is not None and (value or key != "notify_deleted"):  # bare notify_deleted runs nothing
                root(inst.positions.get(key, inst.where), inst.script_users.get(key, (None,))[0])
    for sg in config.sync_groups.values():
        for key in notify_keys:
            if getattr(sg, key) is not None:
                root(sg.positions.get(key, sg.where), sg.script_users.get(key, (None,))[0])
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            for c in rs.checkers:
                if c.kind == "MISC_CHECK" and c.misc_path:
                    root(c.where, getattr(c, "user", None))
    for life in (g.startup_script, g.shutdown_script):
        if life is not None:
            root(life.where, life.user)
    if first is not None:
        why = "script_user root" if g.script_user == "root" else "no script_user"
        ctx.warning(first, "script-security",
                    f"scripts will run as root ({why}) but enable_script_security is not set in global_defs: "
                    "a script writable by a non-root user would give that user root")


# --------------------------------------------------------------------------- several nodes


def cross_check(configs: Iterable[Config], diags: list[Diagnostic]) -> None:
    """Compare VRRP instances that several nodes share (same VRID and family)."""
    ctx = Ctx(diags)
    by_router: dict[tuple, list[VrrpInstance]] = defaultdict(list)
    for cfg in configs:
        for inst in cfg.instances.values():
            if inst.virtual_router_id is not None:
                by_router[(inst.virtual_router_id, inst.family)].append(inst)
    for (vrid, fam), insts in by_router.items():
        if len(insts) < 2:
            continue
        ref = insts[0]
        for other in insts[1:]:
            for what, get in (
                ("virtual IP addresses", lambda i: sorted(v.address for v in i.virtual_ipaddresses)),
                ("advert_int", lambda i: i.advert_int),
                ("VRRP version", lambda i: i.version),
                ("authentication", lambda i: (i.auth_type, (i.auth_pass or "").encode()[:8]) if i.version == 2 else None),
            ):
                if get(ref) != get(other):
                    ctx.error(other.where, "peer-mismatch",
                              f"vrrp_instance {other.name} (VRID {vrid}) disagrees with {ref.name} at {ref.where} "
                              f"on {what}: {_show(get(other))} vs {_show(get(ref))}")
        by_prio: dict[int, list[VrrpInstance]] = defaultdict(list)
        for inst in insts:
            by_prio[inst.priority].append(inst)
        for prio, same in by_prio.items():
            for other in same[1:]:
                extra = (" (two address owners: both claim the VIPs at once)" if prio == 255
                         else "; the higher primary IP address decides, which is rarely what was meant")
                ctx.warning(_pos(other, "priority"), "peer-same-priority",
                            f"vrrp_instance {other.name} (VRID {vrid}) has priority {prio}, like "
                            f"{same[0].name} at {_pos(same[0], 'priority')}{extra}")
        masters = [i for i in insts if i.state == "MASTER"]
        top = max(i.priority for i in insts)
        if len(masters) != 1:
            ctx.warning(insts[0].where, "peer-master-count",
                        f"VRID {vrid}: {len(masters)} of {len(insts)} nodes say state MASTER; exactly one should")
        elif masters[0].priority < top:
            ctx.warning(_pos(masters[0], "priority"), "peer-master-not-highest",
                        f"VRID {vrid}: {masters[0].name} says state MASTER but priority {masters[0].priority} is "
                        f"not the highest ({top}); the other node takes over as soon as it runs")


def _show(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(v) + "]"
    if isinstance(v, tuple):
        return f"{v[0]} {v[1].decode(errors='replace')!r}" if v[0] else "none"
    return str(v)
