"""Statement tree -> typed model (global, tracking and VRRP parts).

Each ``_*`` builder walks one block, fills a dict of dataclass fields and
reports problems through ``Ctx``.  Known keywords without a typed field are
kept in ``options``; unknown ones are warned about (keepalived ignores them
too).  LVS blocks are in ``build_lvs``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import keywords as K
from .cap_vrrp import ROUTE_ACTS, ROUTE_NO_TRACK, VIP_OPTIONS
from .build_global import Opts, add_option, build_global_defs, freeze_options
from .build_lvs import build_virtual_server, build_virtual_server_group
from .build_rules import RuleNumbering, build_rules
from .rules import RTPROT_KEEPALIVED, route_protocol
from . import build_vmac
from ..vrrp.timing import advert_centiseconds, advert_seconds_v2
from .model import (
    Block,
    Config,
    GlobalDefs,
    Route,
    Rule,
    SyncGroup,
    TrackFile,
    TrackProcess,
    TrackRef,
    UnicastPeer,
    VirtualAddress,
    VrrpInstance,
    VrrpScript,
)
from .parser import Stmt
from .values import Ctx, parse_cidr, valid_ip

def build_config(tree: list[Stmt], ctx: Ctx) -> Config:
    """Build a ``Config`` from the top-level statements."""
    f: dict = {
        "vrrp_scripts": {}, "track_processes": {}, "track_files": {}, "sync_groups": {},
        "instances": {}, "virtual_server_groups": {},
    }
    servers, static_ips, static_routes, static_rules = [], [], [], []
    gdefs: list[Stmt] = []
    blocks: list[Block] = []
    opts: Opts = {}
    named = {
        "vrrp_script": ("vrrp_scripts", _vrrp_script),
        "vrrp_track_process": ("track_processes", _track_process),
        "vrrp_track_file": ("track_files", _track_file),
        "track_file": ("track_files", _track_file),
        "vrrp_sync_group": ("sync_groups", _sync_group),
        "vrrp_instance": ("instances", _instance),
        "virtual_server_group": ("virtual_server_groups", build_virtual_server_group),
    }
    for st in tree:
        if st.name in named:
            key, fn = named[st.name]
            if not ctx.need(st, 1, "a name"):
                continue
            name = st.args[0].text
            if name in f[key]:
                ctx.error(st.where, "duplicate-name",
                          f"{st.name} '{name}' is already defined at {f[key][name].where}")
                continue
            body = ctx.block(st)
            if st.block is None:
                continue
            f[key][name] = fn(st, name, body, ctx)
        elif st.name == "global_defs":
            gdefs.append(st)
        elif st.name == "virtual_server":
            vs = build_virtual_server(st, ctx)
            if vs is not None:
                servers.append(vs)
        elif st.name == "static_ipaddress":
            static_ips.extend(_addresses(ctx.block(st), ctx))
        elif st.name == "static_routes":
            static_routes.extend(_routes(ctx.block(st), ctx))
        elif st.name == "static_rules":
            static_rules.extend(_rules(ctx.block(st), ctx, static=True))
        elif st.name in K.TOP_LEVEL and st.block is not None:
            blocks.append(_generic(st, ctx, K.BLOCKS.get(st.name)))
        elif st.name in K.TOP_LEVEL:
            add_option(opts, st)
        else:
            ctx.unknown(st, K.TOP_LEVEL, "the top level")
    g = build_global_defs(gdefs, ctx)
    f["global_defs"] = g
    # Instances inherit the global VRRP version; re-check advert_int against it.
    f["instances"] = {n: _finish_instance(i, g, ctx) for n, i in f["instances"].items()}
    # VMAC names: after every instance is read (file order, as keepalived names them)
    f["instances"] = build_vmac.resolve(f["instances"], g.vmac_prefix, g.vmac_addr_prefix, ctx)
    build_vmac.check_links(f["instances"], ctx)
    where = tree[0].where if tree else None
    extra = {"where": where} if where else {}
    return Config(
        **f, **extra, virtual_servers=tuple(servers), static_ipaddresses=tuple(static_ips),
        static_routes=tuple(static_routes), static_rules=tuple(static_rules), blocks=tuple(blocks), options=freeze_options(opts),
    )


def _generic(st: Stmt, ctx: Ctx, known: frozenset | None) -> Block:
    """A statement tree as a ``Block``; direct children are checked against ``known``."""
    children = None
    if st.block is not None:
        kids = []
        for c in st.block:
            if known is not None and c.name not in known:
                ctx.unknown(c, known, st.name)
            kids.append(_generic(c, ctx, None))
        children = tuple(kids)
    return Block(st.name, st.where, st.words(), children)


# --------------------------------------------------------------------------- tracked objects


def _weight(st: Stmt, ctx: Ctx, lo: int, hi: int) -> tuple[int | None, bool]:
    w = ctx.int_arg(st, lo, hi, what="weight")
    rev = len(st.args) > 1 and st.args[1].text == "reverse"
    if len(st.args) > 1 and not rev:
        ctx.warning(st.where, "unexpected-argument", f"'weight' takes [reverse], not '{st.args[1].text}' (ignored)")
    return w, rev


def _vrrp_script(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> VrrpScript:
    f: dict = {"name": name, "where": st.where}
    opts: Opts = {}
    positions = {}
    for s in body:
        n = s.name
        positions[n] = s.where
        if n == "script":
            f["script"] = ctx.script_arg(s)
        elif n == "interval":
            f["interval"] = ctx.float_arg(s, 0.000001, what="interval")
        elif n == "timeout":
            f["timeout"] = ctx.float_arg(s, 0.000001, what="timeout")
        elif n == "weight":
            f["weight"], f["weight_reverse"] = _weight(s, ctx, -253, 253)
        elif n in ("rise", "fall"):
            f[n] = ctx.int_arg(s, 1, what=n)
        elif n == "user":
            f["user"] = ctx.word(s)
            if len(s.args) > 1:
                f["group"] = s.args[1].text
        elif n == "init_fail":
            f["init_fail"] = True
        elif n in K.VRRP_SCRIPT:
            add_option(opts, s)
        else:
            ctx.unknown(s, K.VRRP_SCRIPT, f"vrrp_script {name}")
    if not f.get("script"):
        ctx.error(st.where, "missing-script", f"vrrp_script {name} has no 'script' command")
    return VrrpScript(**{k: v for k, v in f.items() if v is not None}, options=freeze_options(opts), positions=positions)


def _track_process(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> TrackProcess:
    """keepalived 2.2.7's reading (vrrp_parser.c): statements apply in order; an invalid one is ignored."""
    f: dict = {"name": name, "where": st.where}
    opts: Opts = {}
    for s in body:
        n = s.name
        if n == "process":
            f["process"] = s.words() if ctx.need(s) else None
        elif n == "param_match":
            if not s.args:
                f["param_match"] = "exact"  # bare: the parameters must be exactly those given (or none)
            elif s.args[0].text in ("initial", "partial"):
                f["param_match"] = s.args[0].text
            else:
                ctx.warning(s.where, "unexpected-argument", f"'param_match' must be initial or partial (or bare, "
                            f"for an exact match), got '{s.args[0].text}'; ignored, as keepalived does")
        elif n == "weight":
            f["weight"], f["weight_reverse"] = _weight(s, ctx, -254, 254)
        elif n == "quorum":
            q = ctx.int_arg(s, 1, 65535, what="quorum", soft=True)
            qmax = f.get("quorum_max")
            if q is not None and qmax is not None and q > qmax:
                ctx.warning(s.where, "out-of-range", f"quorum {q} is greater than quorum_max {qmax}; "
                            "ignored, as keepalived does")
            elif q is not None:
                f["quorum"] = q
        elif n == "quorum_max":
            qmax = ctx.int_arg(s, 0, 65535, what="quorum_max", soft=True)
            q = f.get("quorum", 1)
            if qmax is not None and (qmax or q > 1) and qmax < q:
                ctx.warning(s.where, "out-of-range", f"quorum_max {qmax} is less than quorum {q}; "
                            "ignored, as keepalived does")
            elif qmax is not None:
                f["quorum_max"] = qmax
                f["quorum"] = 0 if qmax == 0 else max(q, 1)  # quorum_max 0: up only while none runs
        elif n in ("delay", "fork_delay", "terminate_delay"):
            v = ctx.float_arg(s, 0.000001, 3600, what=n, soft=True)
            if v is not None:
                f[n] = v
                if n == "delay":  # sets both, until one of them is given again
                    f["fork_delay"] = f["terminate_delay"] = v
        elif n == "full_command":
            f["full_command"] = True
        elif n in K.TRACK_PROCESS:
            add_option(opts, s)
        else:
            ctx.unknown(s, K.TRACK_PROCESS, f"vrrp_track_process {name}")
    if not f.get("process"):
        ctx.error(st.where, "missing-process", f"vrrp_track_process {name} has no 'process'")
    return TrackProcess(**{k: v for k, v in f.items() if v is not None}, options=freeze_options(opts))


def _track_file(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> TrackFile:
    f: dict = {"name": name, "where": st.where}
    opts: Opts = {}
    for s in body:
        n = s.name
        if n == "file":
            f["file"] = ctx.word(s)
        elif n == "weight":
            f["weight"], f["weight_reverse"] = _weight(s, ctx, -2147483647, 2147483647)
        elif n == "init_file":
            f["init_file"] = True
            for a in s.args:
                if a.text == "overwrite":
                    f["init_file_overwrite"] = True
                else:
                    try:
                        f["init_file_value"] = int(a.text)
                    except ValueError:
                        ctx.error(s.where, "invalid-number", f"init_file value must be an integer, got '{a.text}'")
        elif n in K.TRACK_FILE:
            add_option(opts, s)
        else:
            ctx.unknown(s, K.TRACK_FILE, f"track_file {name}")
    if not f.get("file"):
        ctx.error(st.where, "missing-file", f"track_file {name} has no 'file'")
    return TrackFile(**{k: v for k, v in f.items() if v is not None}, options=freeze_options(opts))


def _track_refs(st: Stmt, ctx: Ctx) -> tuple[TrackRef, ...]:
    refs = []
    for s in ctx.block(st):
        weight, reverse = None, False
        rest = list(s.args)
        if rest and rest[0].text == "weight":
            if len(rest) < 2:
                ctx.error(s.where, "missing-parameter", f"'{s.name} weight' is missing the weight")
            else:
                try:
                    weight = int(rest[1].text)
                except ValueError:
                    ctx.error(s.where, "invalid-number", f"weight expects an integer, got '{rest[1].text}'")
                else:
                    if not -254 <= weight <= 254:
                        ctx.error(s.where, "out-of-range", f"weight {weight} is out of range (-254..254)")
                        weight = None
            reverse = any(a.text == "reverse" for a in rest[2:])
        elif rest:
            ctx.warning(s.where, "unexpected-argument", f"'{s.name}': expected 'weight N [reverse]', got '{rest[0].text}'")
        refs.append(TrackRef(s.name, s.where, weight, reverse))
    return tuple(refs)


def _sync_group(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> SyncGroup:
    f: dict = {"name": name, "where": st.where}
    opts: Opts = {}
    users: dict = {}
    positions: dict = {}
    for s in body:
        n = s.name
        positions.setdefault(n, s.where)
        if n == "group":
            f["group"] = tuple(w for c in ctx.block(s) for w in (c.name, *c.words()))
        elif n in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            f[n] = ctx.notify_arg(s, users)
        elif n in ("smtp_alert", "global_tracking", "sync_group_tracking_weight", "notify_priority_changes"):
            f[n] = ctx.bool_arg(s)
        elif n in ("track_script", "track_interface", "track_file", "track_process", "track_bfd"):
            key = {"track_script": "track_scripts", "track_interface": "track_interfaces",
                   "track_file": "track_files", "track_process": "track_processes", "track_bfd": "track_bfds"}[n]
            f[key] = f.get(key, ()) + _track_refs(s, ctx)
        elif n in K.SYNC_GROUP:
            add_option(opts, s)
        else:
            ctx.unknown(s, K.SYNC_GROUP, f"vrrp_sync_group {name}")
    return SyncGroup(**{k: v for k, v in f.items() if v is not None}, options=freeze_options(opts), script_users=users,
                     positions=positions)


# --------------------------------------------------------------------------- addresses


_VIP_FLAGS = {"home", "-nodad", "nodad", "noprefixroute", "autojoin", "no_track", "dadfailed"}
_VIP_VALUED = {"brd": "broadcast", "broadcast": "broadcast", "dev": "dev", "scope": "scope",
               "label": "label", "peer": "peer"}


def _option_word(ctx: Ctx, st: Stmt, word: str, what: str) -> None:
    """Warn about an option word chime-ha reads but does not act on (per ``cap_vrrp``)."""
    cap = VIP_OPTIONS.get(word) if what == "address" else (ROUTE_NO_TRACK if word == "no_track" else None)
    if what == "route" and cap is None and word not in ROUTE_ACTS:
        ctx.warning(st.where, "not-implemented", f"route option '{word}' is not implemented in chime-ha: only "
                    f"{', '.join(sorted(ROUTE_ACTS - {'gw', 'to'}))} are applied")
    elif cap is not None and not cap.acts:
        ctx.warning(st.where, cap.status, f"{what} option '{word}': {cap.status} in chime-ha: {cap.reason}")


def _addresses(body: list[Stmt], ctx: Ctx, report: bool = False) -> list[VirtualAddress]:
    """Address lines; ``report``: warn about option words that do not act (VIPs, not static addresses)."""
    out = []
    for s in body:
        words = [s.name, *s.words()]
        addr = parse_cidr(words[0])
        if addr is None:
            ctx.error(s.where, "invalid-address", f"'{words[0]}' is not an IP address or ADDRESS/PREFIX")
            continue
        f: dict = {"address": str(addr), "where": s.where}
        i = 1
        while i < len(words):
            w = words[i]
            if report:
                _option_word(ctx, s, w, "address")
            if w in _VIP_VALUED and i + 1 < len(words):
                f[_VIP_VALUED[w]] = words[i + 1]
                i += 2
                continue
            if w in ("-nodad", "nodad"):
                f["nodad"] = True
            elif w == "no_track":
                f["no_track"] = True
            elif w == "home":
                f["home"] = True
            elif w == "noprefixroute":
                f["noprefixroute"] = True
            elif w == "use_vmac":  # a flag in keepalived 2.2.7 (vrrp_ipaddress.c), no name
                f["use_vmac"] = ""
            elif w in _VIP_FLAGS:
                pass
            else:
                ctx.warning(s.where, "unknown-keyword", f"unknown address option '{w}' (ignored)")
            i += 1
        if f.get("scope") and f["scope"] not in ("site", "link", "host", "nowhere", "global") and not f["scope"].isdigit():
            ctx.error(s.where, "invalid-value", f"invalid scope '{f['scope']}' (site|link|host|nowhere|global)")
        out.append(VirtualAddress(**f))
    return out


def _routes(body: list[Stmt], ctx: Ctx, report: bool = False) -> list[Route]:
    """Route lines; ``report``: warn about options that are not applied (virtual routes)."""
    out = []
    for s in body:
        words = (s.name, *s.words())
        dest = via = dev = None
        i = 0
        while i < len(words):
            w = words[i]
            if report and (i > 0 or parse_cidr(w) is None) and w != "default" and parse_cidr(w) is None:
                _option_word(ctx, s, w, "route")
            if w == "protocol":
                _route_protocol(ctx, s, words, words[i + 1] if i + 1 < len(words) else "")
            if w in ("src", "table", "metric", "scope", "proto", "protocol", "mtu", "realm", "tos", "advmss",
                     "window", "rtt", "rttvar", "ssthresh", "cwnd", "initcwnd", "initrwnd", "features",
                     "quickack", "pref", "hoplimit", "reordering", "congctl", "rto_min", "nexthop", "lock",
                     "expires", "vrf", "fastopen_no_cookie", "encap", "type"):
                i += 2
                continue
            if w in ("gw", "or"):
                ctx.warning(s.where, "deprecated",
                            f"'{w}' in a route is deprecated; use '{'via' if w == 'gw' else 'nexthop'}'")
            if w in ("via", "gw", "or"):
                via = words[i + 1] if i + 1 < len(words) else None
                i += 2
                continue
            if w == "dev":
                dev = words[i + 1] if i + 1 < len(words) else None
                i += 2
                continue
            if w in ("to", "blackhole", "unreachable", "prohibit", "throw", "onlink", "no_track"):
                i += 1
                continue
            if dest is None and (parse_cidr(w) is not None or w == "default"):
                dest = w
            i += 1
        if dest is None:
            ctx.error(s.where, "invalid-route", f"route '{' '.join(words)}' has no destination")
        out.append(Route(tuple(words), s.where, dest, via, dev))
    return out


def _route_protocol(ctx: Ctx, s: Stmt, words, value: str) -> None:
    """keepalived 2.2.7: an unknown protocol is an error; a tracked route's is reset to 18, which it reports."""
    num = route_protocol(value)
    if num is None:
        ctx.error(s.where, "invalid-route", f"route protocol '{value}' is neither 0-255 nor an rt_protos name")
    elif num != RTPROT_KEEPALIVED and "no_track" not in words:
        ctx.warning(s.where, "route-protocol-reset", f"route protocol {value} is reset to {RTPROT_KEEPALIVED} "
                    "(keepalived): a tracked route always has it (add no_track to keep yours)")


def _rules(body: list[Stmt], ctx: Ctx, static: bool = False) -> list[Rule]:
    if ctx.rule_numbering is None:
        ctx.rule_numbering = RuleNumbering()
    return build_rules(body, ctx, ctx.rule_numbering, static)


# --------------------------------------------------------------------------- vrrp_instance


_SCALAR: dict[str, tuple[str, Callable[[Ctx, Stmt], object]]] = {
    "interface": ("interface", lambda c, s: c.word(s)),
    "virtual_router_id": ("virtual_router_id", lambda c, s: c.int_arg(s, 1, 255, what="virtual_router_id")),
    "priority": ("priority", lambda c, s: c.int_arg(s, 1, 255, what="priority")),
    "advert_int": ("advert_int", lambda c, s: c.float_arg(s, 0.01, 255, what="advert_int")),
    "version": ("version", lambda c, s: c.int_arg(s, 2, 3, what="version")),
    "native_ipv6": ("native_ipv6", lambda c, s: True),
    "nopreempt": ("nopreempt", lambda c, s: True),
    "preempt": ("nopreempt", lambda c, s: False),
    "preempt_delay": ("preempt_delay", lambda c, s: c.float_arg(s, 0, 1000, what="preempt_delay")),
    "unicast_src_ip": ("unicast_src_ip", lambda c, s: c.ip_arg(s)),
    "mcast_src_ip": ("mcast_src_ip", lambda c, s: c.ip_arg(s)),
    "mcast_dst_ip": ("mcast_dst_ip", lambda c, s: c.ip_arg(s)),  # checked in build_vrrpx.finish
    "unicast_ttl": ("unicast_ttl", lambda c, s: c.int_arg(s, 0, 255, what="unicast_ttl", soft=True)),
    "unicast_fault_no_peer": ("unicast_fault_no_peer", lambda c, s: True),
    "notify_priority_changes": ("notify_priority_changes", lambda c, s: c.bool_arg(s)),
    "garp_master_delay": ("garp_master_delay", lambda c, s: c.float_arg(s, 0, 255)),
    "garp_master_repeat": ("garp_master_repeat", lambda c, s: c.int_arg(s, 0)),
    "garp_master_refresh": ("garp_master_refresh", lambda c, s: c.float_arg(s, 0)),
    "garp_master_refresh_repeat": ("garp_master_refresh_repeat", lambda c, s: c.int_arg(s, 0)),
    "garp_lower_prio_delay": ("garp_lower_prio_delay", lambda c, s: c.float_arg(s, 0)),
    "garp_lower_prio_repeat": ("garp_lower_prio_repeat", lambda c, s: c.int_arg(s, 0)),
    "down_timer_adverts": ("down_timer_adverts", lambda c, s: c.int_arg(s, 1, 100, what="down_timer_adverts")),
    "vmac_xmit_base": ("vmac_xmit_base", lambda c, s: True),
    "dont_track_primary": ("dont_track_primary", lambda c, s: True),
    "accept": ("accept", lambda c, s: True),
    "no_accept": ("accept", lambda c, s: False),
    "strict_mode": ("strict_mode", lambda c, s: c.bool_arg(s)),
    "skip_check_adv_addr": ("skip_check_adv_addr", lambda c, s: c.bool_arg(s)),
    "check_unicast_src": ("check_unicast_src", lambda c, s: c.bool_arg(s)),
    "lower_prio_no_advert": ("lower_prio_no_advert", lambda c, s: c.bool_arg(s)),
    "smtp_alert": ("smtp_alert", lambda c, s: c.bool_arg(s)),
    "lvs_sync_daemon_interface": ("lvs_sync_daemon_interface", lambda c, s: c.word(s)),
    "higher_prio_send_advert": ("higher_prio_send_advert", lambda c, s: c.bool_arg(s)),  # garp (issue 10)
}
_NOTIFY = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify", "notify_master_rx_lower_pri")
_TRACKS = {"track_script": "track_scripts", "track_interface": "track_interfaces", "track_file": "track_files",
           "track_process": "track_processes", "track_bfd": "track_bfds"}


def _instance(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> VrrpInstance:
    f: dict = {"name": name, "where": st.where}
    opts: Opts = {}
    users: dict = {}
    seen: dict[str, Stmt] = {}
    for s in body:
        n = s.name
        if n == "native_ipv6" and any(v.family == 4 for v in f.get("virtual_ipaddresses", ())):
            # keepalived 2.2.7 ignores it once an IPv4 VIP has made the instance IPv4.
            ctx.warning(s.where, "native-ipv6-ignored",
                        f"vrrp_instance {name}: native_ipv6 after IPv4 virtual addresses is ignored (as keepalived "
                        "does): the instance is IPv4")
        elif n in _SCALAR:
            ctx.no_block(s)
            key, fn = _SCALAR[n]
            v = fn(ctx, s)
            if v is not None:
                f[key] = v
                seen[n] = s
        elif n == "state":
            v = ctx.choice(s, ("MASTER", "BACKUP"))
            if v:
                f["state"] = v
                seen["state"] = s
        elif n in ("garp_extra_if", "vmac_garp_intvl"):
            v = build_vmac.garp_extra_if(s, ctx)
            if v is not None:
                f["garp_extra_if"] = v
                seen[n] = s
        elif n == "use_vmac_addr":
            ctx.no_block(s)
            f["use_vmac_addr"] = True
            seen[n] = s
        elif n in ("use_vmac", "use_ipvlan"):
            if "vmac" in f:
                ctx.error(s.where, "duplicate-keyword", f"vrrp_instance {name}: {n}: use_vmac or use_ipvlan "
                          f"is already given at {f['vmac'].where}")
                continue
            link = build_vmac.use_vmac(s, ctx) if n == "use_vmac" else build_vmac.use_ipvlan(s, ctx)
            if link is not None:
                f["vmac"] = link
                if n == "use_vmac":
                    f["use_vmac"] = link.name or ""
            seen[n] = s
        elif n == "authentication":
            for a in ctx.block(s):
                if a.name == "auth_type":
                    v = ctx.choice(a, ("PASS", "AH"))
                    if v:
                        f["auth_type"] = v
                        seen["auth_type"] = a
                elif a.name == "auth_pass":
                    v = ctx.word(a)
                    if v is not None:
                        f["auth_pass"] = v
                        seen["auth_pass"] = a
                else:
                    ctx.unknown(a, K.AUTHENTICATION, f"authentication of vrrp_instance {name}")
        elif n in _NOTIFY:
            f[n] = ctx.notify_arg(s, users)
        elif n == "notify_deleted":  # keepalived: bare = report DELETED (not FAULT), with a script = run it too
            f[n] = ctx.notify_arg(s, users) if s.args else ()
        elif n == "virtual_ipaddress":
            f["virtual_ipaddresses"] = f.get("virtual_ipaddresses", ()) + tuple(_addresses(ctx.block(s), ctx, report=True))
        elif n == "virtual_ipaddress_excluded":
            f["virtual_ipaddresses_excluded"] = f.get("virtual_ipaddresses_excluded", ()) + tuple(
                _addresses(ctx.block(s), ctx, report=True))
        elif n == "virtual_routes":
            routes = _routes(ctx.block(s), ctx, report=True)
            for r in routes:
                if r.dev is None and not {"blackhole", "unreachable", "prohibit", "throw", "no_track"} & set(r.words):
                    ctx.warning(r.where, "route-untracked",
                                f"virtual route to {r.destination} has no 'dev': keepalived cannot track it")
            f["virtual_routes"] = f.get("virtual_routes", ()) + tuple(routes)
        elif n == "virtual_rules":
            f["virtual_rules"] = f.get("virtual_rules", ()) + tuple(_rules(ctx.block(s), ctx))
        elif n in _TRACKS:
            f[_TRACKS[n]] = f.get(_TRACKS[n], ()) + _track_refs(s, ctx)
        elif n == "unicast_peer":
            peers = list(f.get("unicast_peers", ()))
            for p in ctx.block(s):
                if valid_ip(p.name) is None:
                    ctx.error(p.where, "invalid-address", f"unicast_peer '{p.name}' is not an IP address")
                    continue
                ttl: dict = {}
                words = p.words()
                for i in range(0, len(words) - 1, 2):
                    if words[i] in ("min_ttl", "max_ttl") and words[i + 1].isdigit() and int(words[i + 1]) <= 255:
                        ttl[words[i]] = int(words[i + 1])
                    else:
                        ctx.error(p.where, "invalid-value", f"unicast_peer {p.name}: expected min_ttl|max_ttl 0-255")
                        break
                if len(words) % 2:
                    ctx.error(p.where, "missing-parameter", f"unicast_peer {p.name}: '{words[-1]}' needs a value")
                peers.append(UnicastPeer(str(valid_ip(p.name)), p.where, **ttl))
            f["unicast_peers"] = tuple(peers)
        elif n in K.VRRP_INSTANCE:
            add_option(opts, s)
        else:
            ctx.unknown(s, K.VRRP_INSTANCE | set(_SCALAR), f"vrrp_instance {name}")
        if n == "lvs_sync_daemon_interface":
            ctx.warning(s.where, "deprecated",
                        "lvs_sync_daemon_interface in a vrrp_instance is deprecated; use global_defs lvs_sync_daemon")
    if "virtual_router_id" not in f:
        ctx.error(st.where, "missing-vrid", f"vrrp_instance {name} has no virtual_router_id")
    if "interface" not in f and not f.get("unicast_peers"):
        ctx.error(st.where, "missing-interface", f"vrrp_instance {name} has no interface")
    if not f.get("virtual_ipaddresses"):
        ctx.warning(st.where, "no-vip", f"vrrp_instance {name} has no virtual_ipaddress")
    vips = f.get("virtual_ipaddresses", ())
    family = 6 if f.get("native_ipv6") or (vips and vips[0].family == 6) else 4
    kept = []
    for v in vips:
        if v.family != family:
            # keepalived drops such an address too: the advert carries one family only.
            ctx.warning(v.where, "mixed-family",
                        f"vrrp_instance {name} is IPv{family} but VIP {v.address} is IPv{v.family}: ignored; "
                        "put it in virtual_ipaddress_excluded")
        else:
            kept.append(v)
    if vips:
        f["virtual_ipaddresses"] = tuple(kept)
    f["family"] = family
    positions = {s.name: s.where for s in reversed(body)}
    positions.update({k: v.where for k, v in seen.items()})
    return VrrpInstance(**{k: v for k, v in f.items() if v is not None}, options=freeze_options(opts), positions=positions,
                        script_users=users)


def _finish_instance(inst: VrrpInstance, g: GlobalDefs, ctx: Ctx) -> VrrpInstance:
    """Apply global defaults (version, garp) and check version-dependent values."""
    seen = inst.positions
    changes: dict = {}
    # keepalived: an IPv6 instance without its own version line is VRRPv3, whatever vrrp_version says.
    version = inst.version if "version" in seen else (3 if inst.family == 6 else g.vrrp_version)
    changes["version"] = version
    for key in ("garp_master_delay", "garp_master_repeat", "garp_master_refresh", "garp_master_refresh_repeat",
                "check_unicast_src", "lower_prio_no_advert"):
        if key not in seen:
            changes[key] = getattr(g, "vrrp_" + key)
    if "priority" not in seen and inst.state == "MASTER":
        # Measured on keepalived 2.2.7: state MASTER without a priority line is an address owner.
        changes["priority"] = 255
        ctx.warning(seen.get("state", inst.where), "implicit-owner",
                    f"vrrp_instance {inst.name}: state MASTER without 'priority' means priority 255 "
                    "(address owner), as in keepalived; write the priority explicitly")
    adv = inst.advert_int
    if "advert_int" in seen:
        where = seen["advert_int"]
        if version == 2 and adv != int(adv):
            rounded = advert_seconds_v2(adv)  # what the wire carries: the one rounding of intervals
            ctx.warning(where, "advert-int-rounded",
                        f"VRRPv2 advertises whole seconds: advert_int {adv:g} is used as {rounded}")
            changes["advert_int"] = float(rounded)
        elif version == 3:
            if adv > 40.95:
                ctx.error(where, "out-of-range", f"advert_int {adv:g} is out of range for VRRPv3 (0.01..40.95)")
                changes["advert_int"] = 1.0
            else:
                cs = advert_centiseconds(adv)
                if abs(cs - adv * 100) > 1e-6:
                    ctx.warning(where, "advert-int-rounded",
                                f"VRRPv3 advertises centiseconds: advert_int {adv:g} is used as {cs / 100:g}")
                changes["advert_int"] = max(cs, 1) / 100.0
    from .build_vrrpx import finish  # mcast_dst_ip, unicast_ttl, unicast without peers (keepalived's checks)
    changes.update(finish(inst, ctx))
    return build_vmac.finish(replace(inst, **changes), ctx)
